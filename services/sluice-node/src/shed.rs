//! Load shedding per listener: at most a fixed number of requests in
//! progress (from the request's arrival until its response body ends, so a
//! stream counts for as long as it lasts); the next request is answered at
//! once with the protocol's "try later" — gRPC `UNAVAILABLE`, HTTP `503`
//! with `Retry-After` — instead of queueing behind the others. Health and
//! readiness probes are never shed: a busy node is not a dead one.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

/// What a shed request is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc-status: 14` (UNAVAILABLE): clients retry with backoff.
    Grpc,
    /// `503 Service Unavailable` with `Retry-After: 1`.
    Http,
}

/// The layer: one per listener, shared by all its connections.
#[derive(Clone)]
pub struct Shed {
    permits: Arc<Semaphore>,
    limit: usize,
    protocol: Protocol,
    shed: Counter,
}

impl Shed {
    /// At most `limit` requests in progress (at least one).
    pub fn new(limit: usize, protocol: Protocol) -> Self {
        let limit = limit.max(1);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            protocol,
            shed: Counter::default(),
        }
    }

    /// Counts shed requests in `counter` (a metric the role registered).
    #[must_use]
    pub fn counting(mut self, counter: Counter) -> Self {
        self.shed = counter;
        self
    }

    /// The answer to a request over the limit.
    fn busy<B: Default>(&self) -> Response<B> {
        let n = self.shed.inc();
        if n.is_power_of_two() {
            tracing::warn!(
                limit = self.limit,
                shed = n + 1,
                "requests over the listener's concurrent-request limit are answered \"try later\"; raise the limit or add nodes if this persists"
            );
        }
        let text = format!(
            "busy: {} requests in progress on this listener; retry with backoff",
            self.limit
        );
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        match self.protocol {
            Protocol::Grpc => {
                headers.insert("content-type", HeaderValue::from_static("application/grpc"));
                headers.insert("grpc-status", HeaderValue::from_static("14"));
                if let Ok(value) = HeaderValue::from_str(&text) {
                    headers.insert("grpc-message", value);
                }
            }
            Protocol::Http => {
                headers.insert("retry-after", HeaderValue::from_static("1"));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
        }
        response
    }
}

impl<S> Layer<S> for Shed {
    type Service = ShedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ShedService {
            inner,
            shed: self.clone(),
        }
    }
}

/// A service behind [`Shed`].
#[derive(Clone)]
pub struct ShedService<S> {
    inner: S,
    shed: Shed,
}

/// Paths never shed: load balancers and orchestrators must see the node.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path == "/healthz" || path == "/readyz"
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqB, ResB> Service<Request<ReqB>> for ShedService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>, Error = Infallible>,
    S::Future: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = Response<Permitted<ResB>>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let permit = if exempt(request.uri().path()) {
            None
        } else {
            match self.shed.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let busy = self
                        .shed
                        .busy::<ResB>()
                        .map(|body| Permitted::new(body, None));
                    return Box::pin(std::future::ready(Ok(busy)));
                }
            }
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Permitted::new(body, permit)))
        })
    }
}

/// A response body that holds the request's place until it ends.
pub struct Permitted<B> {
    inner: B,
    permit: Option<OwnedSemaphorePermit>,
}

impl<B> Permitted<B> {
    fn new(inner: B, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self { inner, permit }
    }
}

impl<B> Body for Permitted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) {
            this.permit = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A service that answers only when `release` is notified.
    #[derive(Clone)]
    struct Held(Arc<tokio::sync::Notify>);

    impl Service<Request<()>> for Held {
        type Response = Response<axum::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let release = self.0.clone();
            Box::pin(async move {
                release.notified().await;
                Ok(Response::new(axum::body::Body::from("done")))
            })
        }
    }

    fn request(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).expect("request")
    }

    #[tokio::test]
    async fn the_request_over_the_limit_is_told_to_try_later_and_places_come_back() {
        let release = Arc::new(tokio::sync::Notify::new());
        let shed_counter = Counter::default();
        let shed = Shed::new(2, Protocol::Grpc).counting(shed_counter.clone());
        let mut service = shed.layer(Held(release.clone()));
        let first = tokio::spawn(service.call(request("/sluice.v1.Ingest/Send")));
        let second = tokio::spawn(service.call(request("/sluice.v1.Ingest/Send")));
        tokio::task::yield_now().await;
        let third = service
            .call(request("/sluice.v1.Ingest/Send"))
            .await
            .expect("infallible");
        assert_eq!(third.headers()["grpc-status"], "14");
        assert!(
            third.headers()["grpc-message"]
                .to_str()
                .expect("ascii")
                .contains("retry"),
        );
        assert_eq!(shed_counter.get(), 1);
        release.notify_waiters();
        let (first, second) = (first.await.expect("task"), second.await.expect("task"));
        // A place is held until the body ends.
        let body = first.expect("infallible").into_body();
        assert_eq!(shed.permits.available_permits(), 0);
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"done");
        assert_eq!(shed.permits.available_permits(), 1);
        drop(second);
        assert_eq!(shed.permits.available_permits(), 2);
    }

    #[tokio::test]
    async fn http_is_answered_503_with_retry_after_and_probes_are_exempt() {
        let release = Arc::new(tokio::sync::Notify::new());
        let shed = Shed::new(1, Protocol::Http);
        let mut service = shed.layer(Held(release.clone()));
        let first = tokio::spawn(service.call(request("/v1/send")));
        tokio::task::yield_now().await;
        let busy = service.call(request("/v1/send")).await.expect("infallible");
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()["retry-after"], "1");
        let probe = tokio::spawn(service.call(request("/readyz")));
        tokio::task::yield_now().await;
        release.notify_waiters();
        let probe = probe.await.expect("task").expect("infallible");
        assert_eq!(probe.status(), StatusCode::OK, "the probe was not shed");
        assert_eq!(
            first.await.expect("task").expect("infallible").status(),
            StatusCode::OK
        );
    }
}
