//! Starting and stopping a role: the shutdown token, the drain deadline,
//! signals and listeners.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Span;

/// How long a role may drain after shutdown unless configured otherwise.
pub const DEFAULT_DRAIN: Span = Span::secs(30);

/// [`DEFAULT_DRAIN`], for `#[serde(default = "sluice_node::default_drain")]`.
pub fn default_drain() -> Span {
    DEFAULT_DRAIN
}

/// Runs a role's `work` until it ends. Once `shutdown` is cancelled the work
/// is expected to stop taking new work and finish what it holds; if it has
/// not ended `deadline` later, it is dropped (every task it owns is aborted)
/// and `Ok(())` is returned. Dropping is safe for at-least-once delivery:
/// whatever was not committed is read again by the next owner.
pub async fn drain_within<E>(
    role: &'static str,
    shutdown: &CancellationToken,
    deadline: Duration,
    work: impl Future<Output = Result<(), E>>,
) -> Result<(), E> {
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return out,
        () = shutdown.cancelled() => {}
    }
    tracing::info!(role, deadline = ?deadline, "shutdown requested: draining");
    match tokio::time::timeout(deadline, work).await {
        Ok(out) => out,
        Err(_) => {
            tracing::warn!(
                role,
                deadline = ?deadline,
                "drain deadline passed: abandoning the rest; uncommitted records are read again \
                 by the next owner (raise drain_timeout to wait longer)"
            );
            Ok(())
        }
    }
}

/// A token cancelled on the first SIGINT (Ctrl-C) or SIGTERM. A second
/// signal exits the process at once (exit code 130).
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested (signal): draining; signal again to exit at once");
        cancel.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops this process cleanly");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Binds `address` for the listener configured at `setting`; the error
/// names both and says what to do.
pub async fn bind(setting: &str, address: &str) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(address).await.map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!(
                "{setting}: cannot listen on {address}: {err} (in use, or not an address of this \
                 host? set another one)"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_that_drains_in_time_returns_its_result() {
        let token = CancellationToken::new();
        token.cancel();
        let work = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Err::<(), &str>("finished with an error")
        };
        let out = drain_within("test", &token, Duration::from_secs(30), work).await;
        assert_eq!(out, Err("finished with an error"));
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_deadline_is_dropped() {
        let token = CancellationToken::new();
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct OnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let guard = OnDrop(dropped.clone());
        let work = async move {
            let _guard = guard;
            std::future::pending::<Result<(), ()>>().await
        };
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cancel.cancel();
        });
        let started = tokio::time::Instant::now();
        let out = drain_within("test", &token, Duration::from_secs(30), work).await;
        assert_eq!(out, Ok(()));
        assert_eq!(started.elapsed(), Duration::from_secs(31));
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn bind_errors_name_the_setting() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = bind("listen.grpc", &addr).await.unwrap_err().to_string();
        assert!(err.contains("listen.grpc") && err.contains(&addr), "{err}");
    }
}
