//! A deadline for gRPC request bodies: a unary call's request message must
//! arrive within a fixed time, so a client that trickles it (an HTTP/2
//! slowloris) cannot hold a request place and its buffer for long. Client
//! streams that legitimately last (named at construction) are left alone;
//! the listener's request limit ([`crate::shed`]) bounds them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::Request;
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// Longest a unary request message may take to arrive, by default.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The layer.
#[derive(Clone)]
pub struct BodyDeadline {
    limit: Duration,
    streaming: &'static [&'static str],
}

impl BodyDeadline {
    /// Request bodies within `limit`, except on the paths in `streaming`
    /// (client-streaming methods, e.g. `/sluice.v1.Ingest/SendBatch`).
    pub fn new(limit: Duration, streaming: &'static [&'static str]) -> Self {
        Self { limit, streaming }
    }
}

impl<S> Layer<S> for BodyDeadline {
    type Service = BodyDeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyDeadlineService {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service behind [`BodyDeadline`].
#[derive(Clone)]
pub struct BodyDeadlineService<S> {
    inner: S,
    layer: BodyDeadline,
}

impl<S> Service<Request<tonic::body::Body>> for BodyDeadlineService<S>
where
    S: Service<Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> S::Future {
        if self.layer.streaming.contains(&request.uri().path()) {
            return self.inner.call(request);
        }
        let limit = self.layer.limit;
        self.inner
            .call(request.map(|body| tonic::body::Body::new(Deadlined::new(body, limit))))
    }
}

/// A request body that fails once its deadline passes.
struct Deadlined<B> {
    inner: B,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Deadlined<B> {
    fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<B> Body for Deadlined<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            let limit = this.limit;
            return Poll::Ready(Some(Err(format!(
                "request message not received within {limit:?}"
            )
            .into())));
        }
        Poll::Pending
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

    /// A body that never yields.
    struct Silent;

    impl Body for Silent {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_at_its_deadline_and_a_prompt_one_passes() {
        let silent = Deadlined::new(Silent, Duration::from_secs(60));
        let Err(err) = silent.collect().await else {
            panic!("a silent body outlived its deadline");
        };
        assert!(err.to_string().contains("within 60s"), "{err}");
        let prompt = Deadlined::new(
            http_body_util::Full::new(Bytes::from_static(b"hello")),
            Duration::from_secs(60),
        );
        let bytes = prompt.collect().await.expect("in time").to_bytes();
        assert_eq!(&bytes[..], b"hello");
    }
}
