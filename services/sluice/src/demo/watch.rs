//! Watches `sluice.events` on the embedded log with the demo's own consumer
//! group, tallies every event and draws the progress: bars on a terminal,
//! a plain line every few seconds otherwise.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use prost::Message as _;
use sluice_log::Log;
use sluice_log::{Commit, GroupConsumer, MessageLog};
use sluice_proto::v1::Event;
use tokio::sync::watch;

use super::tally::Tally;

/// The events topic `sluice dev` writes to.
pub const EVENTS_TOPIC: &str = "sluice.events";

/// The progress display: two bars, or plain lines when stdout is not a terminal.
pub struct Progress {
    submitted: ProgressBar,
    finished: ProgressBar,
    plain: bool,
    total: u64,
    last_line: Instant,
}

impl Progress {
    pub fn new(total: u64) -> Progress {
        let plain = !std::io::stdout().is_terminal();
        let multi = MultiProgress::with_draw_target(if plain {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stdout()
        });
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:40.cyan/blue}] {pos:>7}/{len:7} {per_sec:>10} {msg}",
        )
        .expect("the progress template is valid")
        .progress_chars("=> ");
        let bar = |prefix: &'static str| {
            let b = multi.add(ProgressBar::new(total));
            b.set_style(style.clone());
            b.set_prefix(prefix);
            b
        };
        Progress {
            submitted: bar("submitted"),
            finished: bar("finished"),
            plain,
            total,
            last_line: Instant::now(),
        }
    }

    /// Shows the tally so far, and what the sender holds right now
    /// (`(in delivery, queued)` from its live counters).
    pub fn update(&mut self, t: &Tally, sender: (usize, usize), elapsed: Duration) {
        let c = t.totals();
        self.submitted.set_position(t.accepted);
        self.finished.set_position(t.finished());
        let state = format!(
            "delivered {} · bounced {} · expired {} · deferred {} · sending {} · queued {}",
            c.delivered, c.bounced, c.expired, c.deferred, sender.0, sender.1
        );
        self.finished.set_message(state.clone());
        if self.plain && self.last_line.elapsed() >= Duration::from_secs(5) {
            self.last_line = Instant::now();
            println!(
                "{:>5}s submitted {}/{} · finished {}/{} · {state}",
                elapsed.as_secs(),
                t.accepted,
                self.total,
                t.finished(),
                self.total,
            );
        }
    }

    /// Leaves the bars on screen as they are.
    pub fn finish(&self) {
        self.submitted.abandon();
        self.finished.abandon();
    }
}

/// Reads every event into `tally` until `drain` turns true and a poll comes
/// back empty (everything written so far has been read).
pub async fn run(
    log: Log,
    tally: Arc<Mutex<Tally>>,
    mut drain: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    log.ensure_topics(&[EVENTS_TOPIC.to_owned()])
        .await
        .context("cannot create the events topic")?;
    let group = format!("sluice-demo-{}", uuid::Uuid::new_v4().simple());
    let mut consumer = log
        .subscribe(&group, &[EVENTS_TOPIC.to_owned()])
        .await
        .context("cannot subscribe to the events")?;
    let mut next: std::collections::BTreeMap<i32, i64> = Default::default();
    loop {
        let draining = *drain.borrow_and_update();
        let records = consumer
            .poll(Duration::from_millis(200))
            .await
            .context("cannot read the events")?;
        // A poll that saw a rebalance returns early, maybe empty: that is
        // not the end of the events.
        let rebalanced = !consumer.rebalances().is_empty();
        if records.is_empty() && draining && !rebalanced {
            break;
        }
        let mut t = tally.lock().expect("the tally lock is never poisoned");
        for r in records {
            next.insert(r.partition, r.offset + 1);
            match Event::decode(r.payload.as_slice()) {
                Ok(event) => t.add(&event),
                Err(err) => {
                    tracing::warn!(offset = r.offset, error = %err, "an event does not decode")
                }
            }
        }
    }
    // Let retention drop what the demo's group has read.
    let commits: Vec<Commit> = next
        .into_iter()
        .map(|(partition, next_offset)| Commit {
            topic: EVENTS_TOPIC.to_owned(),
            partition,
            next_offset,
        })
        .collect();
    consumer
        .commit(&commits)
        .await
        .context("cannot commit the demo's read position")?;
    Ok(())
}
