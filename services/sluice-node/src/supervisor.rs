//! Several roles in one process (`sluice dev`, tests): one shutdown token for
//! all, a name on every outcome, and the first failure reported.

use std::future::Future;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A role's name and how it ended.
pub type Outcome<E> = (&'static str, Result<(), E>);

/// Runs named roles until one fails or [`Supervisor::stop`] is called.
pub struct Supervisor<E> {
    token: CancellationToken,
    tasks: JoinSet<Outcome<E>>,
}

impl<E: Send + 'static> Supervisor<E> {
    /// A supervisor whose roles stop when `token` is cancelled.
    pub fn new(token: CancellationToken) -> Self {
        Self {
            token,
            tasks: JoinSet::new(),
        }
    }

    /// The token every role run here should stop on.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Spawns the role `name`.
    pub fn spawn<F, T>(&mut self, name: &'static str, role: F)
    where
        F: Future<Output = Result<(), T>> + Send + 'static,
        T: Into<E>,
    {
        self.tasks
            .spawn(async move { (name, role.await.map_err(Into::into)) });
    }

    /// Resolves when a role ends on its own (an error, or a bug: roles run
    /// until shutdown). `None` when no role runs.
    pub async fn ended(&mut self) -> Option<Result<Outcome<E>, tokio::task::JoinError>> {
        self.tasks.join_next().await
    }

    /// Cancels the token and waits for every role; returns every outcome
    /// (a role that panicked is reported by its join error's text).
    pub async fn stop(mut self) -> Vec<Result<Outcome<E>, String>> {
        self.token.cancel();
        let mut outcomes = Vec::new();
        while let Some(joined) = self.tasks.join_next().await {
            outcomes.push(joined.map_err(|join| join.to_string()));
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_cancels_every_role_and_collects_outcomes() {
        let mut supervisor: Supervisor<String> = Supervisor::new(CancellationToken::new());
        for name in ["a", "b"] {
            let token = supervisor.token();
            supervisor.spawn(name, async move {
                token.cancelled().await;
                if name == "b" {
                    Err("b failed".to_owned())
                } else {
                    Ok(())
                }
            });
        }
        let mut outcomes: Vec<_> = supervisor
            .stop()
            .await
            .into_iter()
            .map(|o| o.expect("no panic"))
            .collect();
        outcomes.sort_by_key(|(name, _)| *name);
        assert_eq!(
            outcomes,
            vec![("a", Ok(())), ("b", Err("b failed".to_owned()))]
        );
    }

    #[tokio::test]
    async fn a_role_that_ends_early_is_reported() {
        let mut supervisor: Supervisor<String> = Supervisor::new(CancellationToken::new());
        supervisor.spawn("early", async { Err::<(), _>("boom".to_owned()) });
        let (name, result) = supervisor
            .ended()
            .await
            .expect("one role")
            .expect("no panic");
        assert_eq!((name, result), ("early", Err("boom".to_owned())));
    }
}
