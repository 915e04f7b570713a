//! One delivery attempt on one connection, run as its own task.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_proto::v1::Envelope;
use sluice_shaping::{Connection, Grant};

use sluice_node::trace::TARGET;
use tracing::Instrument;
use tracing::field::Empty;

use crate::route::MxHost;
use crate::smtp::{self, ConnectOptions, Reply, Session, SmtpError, Transport};

/// An open session and the host it talks to.
pub struct Live {
    pub session: Session<Transport>,
    pub host: String,
    pub addr: SocketAddr,
    /// TLS with a certificate verified for `host`.
    pub verified: bool,
}

impl Live {
    fn may_carry(&self, hosts: &[MxHost]) -> bool {
        may_carry(self.verified, &self.host, hosts)
    }
}

/// Whether a session to `host` (`verified`: TLS with its certificate
/// verified for `host`) may carry a message routed to `hosts`: when they
/// must be verified (MTA-STS `enforce`), only a verified session to one of
/// them may.
fn may_carry(verified: bool, host: &str, hosts: &[MxHost]) -> bool {
    let mut needed = hosts.iter().filter(|h| h.verify_tls).peekable();
    needed.peek().is_none() || (verified && needed.any(|h| h.name.eq_ignore_ascii_case(host)))
}

/// What the dispatcher needs back to settle the message.
pub struct Ticket {
    pub rec: crate::dispatch::RecordRef,
    pub site: String,
    /// Time spent in the ready queue.
    pub queued: Duration,
    /// Epoch of the source IP's lease when the delivery started.
    pub lease_epoch: u64,
    /// Held until the fate is published: a revocation of the record's
    /// partition waits for it (docs/fate-index.md).
    pub work: sluice_log::Work,
}

/// A message on its way out.
pub struct Job {
    pub ticket: Ticket,
    pub envelope: Envelope,
    pub grant: Grant,
    pub conn: Connection,
    /// An idle session to reuse, or `None` to connect to `hosts`.
    pub live: Option<Live>,
    pub hosts: Vec<MxHost>,
    pub opts: ConnectOptions,
    pub data_timeout: Duration,
}

/// How the attempt ended.
pub enum Attempt {
    /// The server answered (any stage, success or refusal).
    Replied { reply: Reply },
    /// No usable reply: connection, TLS or protocol failure.
    Failed { error: SmtpError },
}

/// The job handed back with its result; `live` is set when the session can
/// carry another message.
pub struct Done {
    pub ticket: Ticket,
    pub envelope: Envelope,
    pub grant: Grant,
    pub conn: Connection,
    pub live: Option<Live>,
    pub attempt: Attempt,
    pub mx_host: String,
    pub mx_addr: String,
    pub connect_time: Duration,
    pub transaction_time: Duration,
}

/// Makes the attempt; when traces are exported, as a `sender.attempt` span
/// that continues the record's trace and whose context the fate's records
/// carry on (the recorder's write, the next attempt after a re-queue).
pub async fn run(mut job: Job) -> Done {
    if !sluice_node::trace::enabled() {
        return attempt(job).await;
    }
    let envelope = &job.envelope;
    let span = tracing::info_span!(
        target: TARGET, "sender.attempt",
        message_id = %envelope.message_id, tenant = %envelope.tenant,
        attempt = envelope.attempt, site = %job.ticket.site,
        source_ip = %job.opts.source_ip, mx_host = Empty, reply = Empty,
    );
    let record_trace = job.ticket.rec.trace.take();
    sluice_node::trace::with_traceparent(&span, record_trace.as_deref().map(str::as_bytes));
    job.ticket.rec.trace = sluice_node::trace::traceparent(&span).or(record_trace);
    let done = attempt(job).instrument(span.clone()).await;
    span.record("mx_host", done.mx_host.as_str());
    match &done.attempt {
        Attempt::Replied { reply } => {
            span.record("reply", format!("{} {}", reply.code, reply.text))
        }
        Attempt::Failed { error } => span.record("reply", error.to_string()),
    };
    done
}

async fn attempt(job: Job) -> Done {
    let Job {
        ticket,
        envelope,
        grant,
        conn,
        live,
        hosts,
        opts,
        data_timeout,
    } = job;
    let started = Instant::now();
    let live = match live {
        Some(live) if live.may_carry(&hosts) => Ok(live),
        Some(live) => {
            // Idle sessions are pooled per (source IP, site): this one was
            // not verified to a host this message's MTA-STS policy allows.
            // It is closed and a fresh one opened in the engine's slot
            // (the same `Connection`, so the engine's count is unchanged).
            live.session.quit().await;
            open(&hosts, &opts).instrument(connect_span()).await
        }
        None => open(&hosts, &opts).instrument(connect_span()).await,
    };
    let connect_time = started.elapsed();
    let mut live = match live {
        Ok(live) => live,
        Err((attempt, host, addr)) => {
            return Done {
                ticket,
                envelope,
                grant,
                conn,
                live: None,
                attempt,
                mx_host: host,
                mx_addr: addr,
                connect_time,
                transaction_time: Duration::ZERO,
            };
        }
    };
    live.session.data_timeout = data_timeout;
    let tx_start = Instant::now();
    let transaction =
        tracing::info_span!(target: TARGET, "smtp.transaction", bytes = envelope.content.len());
    let result = live
        .session
        .send(
            &envelope.return_path,
            &envelope.recipient,
            &envelope.content,
        )
        .instrument(transaction)
        .await;
    let transaction_time = tx_start.elapsed();
    let (mx_host, mx_addr) = (live.host.clone(), live.addr.to_string());
    let (attempt, live) = match result {
        Ok(outcome) => (
            Attempt::Replied {
                reply: outcome.reply,
            },
            Some(live),
        ),
        Err(error) => (Attempt::Failed { error }, None),
    };
    Done {
        ticket,
        envelope,
        grant,
        conn,
        live,
        attempt,
        mx_host,
        mx_addr,
        connect_time,
        transaction_time,
    }
}

fn connect_span() -> tracing::Span {
    tracing::info_span!(target: TARGET, "smtp.connect")
}

/// Tries the hosts in order until one greets us. A host that refuses in its
/// banner or EHLO ends the attempt with that reply (it spoke for the domain).
/// A host marked `verify_tls` is connected to as a site that requires TLS:
/// no STARTTLS or a certificate that does not verify for its name fails it
/// (and the next host is tried).
async fn open(hosts: &[MxHost], opts: &ConnectOptions) -> Result<Live, (Attempt, String, String)> {
    let mut last = None;
    for host in hosts {
        let verifying;
        let opts = if host.verify_tls && !opts.require_tls {
            verifying = ConnectOptions {
                require_tls: true,
                ..opts.clone()
            };
            &verifying
        } else {
            opts
        };
        for addr in &host.addrs {
            match smtp::connect(*addr, &host.name, opts).await {
                Ok(Ok(session)) => {
                    // With `require_tls`, `connect` returns a session only
                    // after STARTTLS with a verified certificate.
                    return Ok(Live {
                        verified: opts.require_tls,
                        session,
                        host: host.name.clone(),
                        addr: *addr,
                    });
                }
                Ok(Err(refused)) => {
                    let reply = refused.reply;
                    return Err((
                        Attempt::Replied { reply },
                        host.name.clone(),
                        addr.to_string(),
                    ));
                }
                Err(error) => {
                    tracing::debug!(host = %host.name, %addr, %error, "connection attempt failed; trying the next address");
                    last = Some((
                        Attempt::Failed { error },
                        host.name.clone(),
                        addr.to_string(),
                    ));
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        (
            Attempt::Failed {
                error: SmtpError::Io(std::io::Error::other("no address to connect to")),
            },
            String::new(),
            String::new(),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, verify_tls: bool) -> MxHost {
        MxHost {
            name: name.into(),
            preference: 0,
            addrs: Vec::new(),
            verify_tls,
        }
    }

    #[test]
    fn only_a_verified_session_to_an_allowed_host_carries_mta_sts_mail() {
        let enforced = [host("mx1.a.test", true), host("mx2.a.test", true)];
        assert!(may_carry(true, "MX2.a.test", &enforced));
        assert!(!may_carry(false, "mx2.a.test", &enforced), "not verified");
        assert!(
            !may_carry(true, "mx.b.test", &enforced),
            "verified to another host"
        );
        let plain = [host("mx1.a.test", false)];
        assert!(
            may_carry(false, "mx.b.test", &plain),
            "no policy: any session"
        );
    }
}
