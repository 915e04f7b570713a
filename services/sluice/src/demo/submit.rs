//! Submits the demo's messages through the public gRPC API: `Ingest.Send`
//! with many recipients per request, several requests at once, retrying
//! backpressure and unavailability with the same idempotency key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{Recipient, SendRequest, SendResponse, Template, send_request};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::scenario::recipient;

/// Recipients per `Send`.
const PER_REQUEST: u64 = 100;
/// `Send` calls in flight at once.
const CONCURRENCY: usize = 8;
/// Attempts per request before the demo gives up.
const ATTEMPTS: u32 = 30;

/// What ingest answered.
#[derive(Debug, Default)]
pub struct Submitted {
    /// Message ids of accepted recipients (suppressed ones excluded).
    pub ids: Vec<String>,
    pub suppressed: u64,
    /// Calls retried after backpressure or unavailability.
    pub retries: u64,
}

/// Sends `messages` recipients to ingest at `addr` with API key `key`.
pub async fn submit(addr: SocketAddr, key: &str, messages: u64) -> anyhow::Result<Submitted> {
    let client = IngestClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("cannot reach the ingest gRPC endpoint {addr}"))?;
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {key}")
        .parse()
        .context("the API key is not valid in gRPC metadata")?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (mut client, auth, run, next) =
            (client.clone(), auth.clone(), run.clone(), next.clone());
        workers.spawn(async move {
            let mut mine = Submitted::default();
            loop {
                let chunk = next.fetch_add(1, Ordering::Relaxed);
                let first = chunk * PER_REQUEST;
                if first >= messages {
                    return Ok::<_, anyhow::Error>(mine);
                }
                let request = request(first, (first + PER_REQUEST).min(messages), &run, chunk);
                let response = send(&mut client, &auth, request, &mut mine.retries).await?;
                for r in response.recipients {
                    if r.suppressed {
                        mine.suppressed += 1;
                    } else {
                        mine.ids.push(r.message_id);
                    }
                }
            }
        });
    }
    let mut all = Submitted::default();
    while let Some(joined) = workers.join_next().await {
        let mine = joined.context("a submitting task panicked")??;
        all.ids.extend(mine.ids);
        all.suppressed += mine.suppressed;
        all.retries += mine.retries;
    }
    Ok(all)
}

/// The request for recipients `from..to`.
fn request(from: u64, to: u64, run: &str, chunk: u64) -> SendRequest {
    let recipients = (from..to)
        .map(|i| Recipient {
            address: recipient(i).1,
            ..Default::default()
        })
        .collect();
    SendRequest {
        from: "demo@example.com".into(),
        recipients,
        content: Some(send_request::Content::Template(Template {
            subject: "Sluice demo".into(),
            text: "This message was sent by `sluice demo` to a simulated provider.\n".into(),
            html: String::new(),
        })),
        campaign: "demo".into(),
        idempotency_key: format!("demo-{run}-{chunk}"),
        ..Default::default()
    }
}

/// One `Send`, retried with backoff while ingest pushes back, is
/// unavailable, or still works on the same key.
async fn send(
    client: &mut IngestClient<Channel>,
    auth: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    request: SendRequest,
    retries: &mut u64,
) -> anyhow::Result<SendResponse> {
    let mut wait = Duration::from_millis(50);
    for attempt in 1..=ATTEMPTS {
        let mut call = tonic::Request::new(request.clone());
        call.metadata_mut().insert("authorization", auth.clone());
        match client.send(call).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if retryable(status.code()) && attempt < ATTEMPTS => {
                tracing::debug!(code = ?status.code(), message = status.message(), "ingest pushed back; retrying");
                *retries += 1;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(status) => bail!(
                "ingest refused the demo's submission ({:?}): {}",
                status.code(),
                status.message()
            ),
        }
    }
    bail!("ingest kept pushing back after {ATTEMPTS} attempts")
}

fn retryable(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::ResourceExhausted | tonic::Code::Unavailable | tonic::Code::Aborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_cover_the_range_with_a_stable_key() {
        let r = request(200, 250, "run", 2);
        assert_eq!(r.recipients.len(), 50);
        assert_eq!(r.recipients[0].address, recipient(200).1);
        assert_eq!(r.idempotency_key, "demo-run-2");
        assert_eq!(
            request(200, 250, "run", 2),
            r,
            "a retry sends the same request"
        );
    }

    #[test]
    fn only_transient_codes_are_retried() {
        assert!(retryable(tonic::Code::ResourceExhausted));
        assert!(retryable(tonic::Code::Unavailable));
        assert!(!retryable(tonic::Code::InvalidArgument));
        assert!(!retryable(tonic::Code::Unauthenticated));
    }
}
