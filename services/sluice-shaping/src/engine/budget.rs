//! Collects the verdicts of every limit that applies to one send or one connection.

use crate::gcra::{Gcra, GcraParams, WindowCount};
use crate::limits::Limits;
use crate::time::Millis;

/// Upper bound of a candidate's weight; an unlimited budget counts as this much.
pub(crate) const WEIGHT_CAP: u64 = 1 << 20;

/// The combined verdict of several limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// Latest "ready at" of the limits that block now; `None` when nothing blocks.
    pub until: Option<Millis>,
    /// A connection limit is full (no time known: wait for a close).
    pub busy: bool,
    /// Smallest remaining calendar allowance (hour/day caps), capped at [`WEIGHT_CAP`].
    pub remaining: u64,
}

impl Budget {
    pub fn new() -> Budget {
        Budget {
            until: None,
            busy: false,
            remaining: WEIGHT_CAP,
        }
    }

    pub fn block(&mut self, until: Millis) {
        self.until = Some(self.until.map_or(until, |u| u.max(until)));
    }

    /// A calendar cap with `left` sends remaining that resets at `reset`.
    pub fn cap(&mut self, left: u32, reset: Millis) {
        if left == 0 {
            self.block(reset);
        }
        self.remaining = self.remaining.min(u64::from(left));
    }

    fn gcra(&mut self, g: &Gcra, p: GcraParams, now: Millis) {
        if g.available(now.0 * 1_000, p) == 0 {
            self.block(Millis(g.ready_at_us(p).div_ceil(1_000)));
        }
    }

    pub fn is_ready(&self) -> bool {
        self.until.is_none() && !self.busy
    }
}

/// Counters of one limited thing (a path or a provider on one IP). Serializable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    rate: [Gcra; 2],
    hour: WindowCount,
    day: WindowCount,
    connect: Gcra,
}

impl Counters {
    /// Messages sent in calendar day `day`.
    pub fn sent_on_day(&self, day: u32) -> u32 {
        self.day.get(day)
    }
}

/// Limits compiled for fast checks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub limits: Limits,
    rates: [Option<GcraParams>; 2],
    connect: Option<GcraParams>,
}

fn scaled(p: Option<GcraParams>, permille: u16) -> Option<GcraParams> {
    p.map(|p| p.slowed(permille))
}

impl Shape {
    pub fn new(limits: Limits) -> Shape {
        Shape {
            limits,
            rates: limits.rate_params(),
            connect: limits.connect_params(),
        }
    }

    /// Checks one message at `now` with the rate scaled to `permille`.
    pub fn check_send(&self, c: &Counters, now: Millis, permille: u16, b: &mut Budget) {
        for (p, g) in self.rates.iter().zip(&c.rate) {
            if let Some(p) = scaled(*p, permille) {
                b.gcra(g, p, now);
            }
        }
        if let Some(n) = self.limits.messages_per_hour {
            b.cap(
                n.saturating_sub(c.hour.get(now.hour())),
                now.next_hour_start(),
            );
        }
        if let Some(n) = self.limits.messages_per_day {
            b.cap(n.saturating_sub(c.day.get(now.day())), now.next_day_start());
        }
    }

    /// Records one message.
    pub fn commit_send(&self, c: &mut Counters, now: Millis, permille: u16) {
        for (p, g) in self.rates.iter().zip(&mut c.rate) {
            if let Some(p) = scaled(*p, permille) {
                g.commit(now.0 * 1_000, p);
            }
        }
        c.hour.add(now.hour());
        c.day.add(now.day());
    }

    /// Connection ceiling at `permille` of the rate (at least one).
    pub fn max_connections(&self, permille: u16) -> Option<u32> {
        self.limits
            .max_connections
            .map(|n| (u64::from(n) * u64::from(permille)).div_ceil(1000).max(1) as u32)
    }

    /// Checks opening one connection while `open` are open.
    pub fn check_connect(
        &self,
        c: &Counters,
        open: u32,
        now: Millis,
        permille: u16,
        b: &mut Budget,
    ) {
        if self
            .max_connections(permille)
            .is_some_and(|max| open >= max)
        {
            b.busy = true;
        }
        if let Some(p) = self.connect {
            b.gcra(&c.connect, p, now);
        }
    }

    /// Records one new connection.
    pub fn commit_connect(&self, c: &mut Counters, now: Millis) {
        if let Some(p) = self.connect {
            c.connect.commit(now.0 * 1_000, p);
        }
    }
}
