//! The accept loop of one provider's listener.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::conn::serve_connection;
use crate::provider::Provider;

/// Accepts connections on `listener` for `provider` until `shutdown`
/// completes, then tells every open session to close (`421 4.3.2`) and
/// waits until they have.
pub async fn run(
    listener: TcpListener,
    provider: Arc<Provider>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopped) = watch::channel(false);
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let provider = Arc::clone(&provider);
                    let stopped = stopped.clone();
                    sessions.spawn(async move {
                        if let Err(err) = serve_connection(stream, provider, peer.ip(), stopped).await {
                            tracing::debug!(%peer, %err, "connection ended with an error");
                        }
                    });
                }
                Err(err) => tracing::warn!(%err, "accept failed"),
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while sessions.join_next().await.is_some() {}
}
