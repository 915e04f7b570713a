//! The signing threads: a fixed set of OS threads taking jobs from one
//! bounded queue. A thread that finishes a job takes the next one at once;
//! nothing is handed from an async task to a thread per message (a
//! semaphore permit handed to a task that must first be polled left
//! signing threads idle), and the queue's bound is the back-pressure: a
//! submission waits to enqueue when every thread is busy and the queue full.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting per signing thread.
const QUEUED_PER_THREAD: usize = 4;

/// The pool was shut down (its threads are gone).
#[derive(Debug)]
pub struct Closed;

/// A handle to the signing threads; the threads end when every handle is
/// dropped.
#[derive(Debug)]
pub struct Pool {
    jobs: mpsc::Sender<Job>,
}

impl Pool {
    /// Starts `threads` signing threads (at least one).
    pub fn new(threads: usize) -> Self {
        Self::named("dkim-sign", threads)
    }

    /// Starts `threads` threads (at least one) named `name-<n>`. Work that
    /// allocates much per job (Argon2's 19 MiB) stays on these few threads,
    /// so the allocator keeps at most that much per thread.
    pub fn named(name: &str, threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>(threads * QUEUED_PER_THREAD);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&queue))
                .expect("the OS starts a signing thread");
        }
        Self { jobs }
    }

    /// Runs `job` on a signing thread and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Closed> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(job());
        });
        self.jobs.send(job).await.map_err(|_| Closed)?;
        answer.await.map_err(|_| Closed)
    }
}

/// One thread: takes a job, runs it, takes the next; ends when the queue
/// closes. The lock is held only while waiting for a job, so an idle
/// thread waits on the queue and the others wait for their turn.
fn work(queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocking_recv();
        match job {
            Some(job) => job(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_spread_over_every_thread_and_threads_end_with_the_pool() {
        let pool = Arc::new(Pool::new(4));
        let started = Instant::now();
        let mut jobs = Vec::new();
        for _ in 0..8 {
            let pool = pool.clone();
            jobs.push(tokio::spawn(async move {
                pool.run(|| {
                    #[allow(clippy::disallowed_methods, reason = "a job that holds its thread")]
                    std::thread::sleep(Duration::from_millis(200));
                    std::thread::current().name().map(str::to_owned)
                })
                .await
            }));
        }
        let mut names = std::collections::BTreeSet::new();
        for job in jobs {
            names.insert(job.await.expect("task").expect("ran").expect("named"));
        }
        // 8 jobs of 200 ms on 4 threads: two rounds, every thread used.
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "{:?}",
            started.elapsed()
        );
    }
}
