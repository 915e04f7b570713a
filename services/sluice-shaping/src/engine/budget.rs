//! Collects the verdicts of every limit that applies to one send or one connection.

use crate::gcra::{Gcra, GcraParams, WindowCount};
use crate::limits::Limits;
use crate::time::{MINUTE, Millis, SECOND};

/// Widths of the recent-send windows: messages per second, messages per minute, new
/// connections per minute (the windows of `Limits::rate_params` and
/// `Limits::connect_params`).
const WIDTHS: [u64; 3] = [SECOND, MINUTE, MINUTE];
/// Index of the new-connection window in [`WIDTHS`].
const CONNECT: usize = 2;

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

/// Sends in the current and the previous fixed window (of one width, aligned to the
/// epoch). Their sum bounds the sends in the sliding window that ends now from above;
/// engine limits use it after a reconfiguration, when the rate state of the old limits
/// says nothing about the new ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Recent {
    window: u64,
    count: u32,
    prev: u32,
}

impl Recent {
    fn add(&mut self, window: u64) {
        if window <= self.window {
            self.count += 1;
        } else {
            self.prev = if window == self.window + 1 {
                self.count
            } else {
                0
            };
            self.window = window;
            self.count = 1;
        }
    }

    /// At least the number of adds in the sliding window (of the counter's width) that
    /// ends in fixed window `window`.
    fn bound(&self, window: u64) -> u32 {
        if window <= self.window {
            self.count + self.prev
        } else if window == self.window + 1 {
            self.count
        } else {
            0
        }
    }

    /// (current, previous) counts seen from fixed window `window` (not before this one's).
    fn at(&self, window: u64) -> (u32, u32) {
        if window == self.window {
            (self.count, self.prev)
        } else if window == self.window + 1 {
            (0, self.count)
        } else {
            (0, 0)
        }
    }

    fn merge(&mut self, other: Recent) {
        let window = self.window.max(other.window);
        let (a, b) = (self.at(window), other.at(window));
        *self = Recent {
            window,
            count: a.0 + b.0,
            prev: a.1 + b.1,
        };
    }
}

/// Counters of one limited thing (a path or a provider on one IP). Serializable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    rate: [Gcra; 2],
    hour: WindowCount,
    day: WindowCount,
    connect: Gcra,
    /// Recent sends per window of [`WIDTHS`].
    #[serde(default)]
    recent: [Recent; 3],
    /// Until when each window's limit is also checked against `recent` (see
    /// [`Shape::reshape`]).
    #[serde(default)]
    guard_until: [Millis; 3],
}

impl Counters {
    /// Messages sent in calendar day `day`.
    pub fn sent_on_day(&self, day: u32) -> u32 {
        self.day.get(day)
    }

    /// Takes over the counts of `other`, sends that were not counted here (a path joining
    /// a provider slot after a reconfiguration). Its rates are unknown to this counter's
    /// rate state, so every window limit is checked against the counts until the merged
    /// sends have left the window.
    pub(crate) fn absorb(&mut self, other: &Counters) {
        self.hour.merge(other.hour);
        self.day.merge(other.day);
        for (i, r) in other.recent.iter().enumerate() {
            self.recent[i].merge(*r);
            self.guard(i);
        }
    }

    /// Checks window `i`'s limit against the recent counts until every send counted so
    /// far has left the sliding window.
    fn guard(&mut self, i: usize) {
        let r = &self.recent[i];
        if r.count + r.prev > 0 {
            let until = Millis((r.window + 2) * WIDTHS[i]);
            self.guard_until[i] = self.guard_until[i].max(until);
        }
    }

    fn record(&mut self, i: usize, now: Millis) {
        self.recent[i].add(now.0 / WIDTHS[i]);
    }

    /// While window `i` is guarded, caps by the recent counts against `limit`.
    fn check_guard(&self, i: usize, limit: Option<u32>, now: Millis, b: &mut Budget) {
        let Some(n) = limit else { return };
        if now >= self.guard_until[i] {
            return;
        }
        let width = WIDTHS[i];
        let next = Millis((now.0 / width + 1) * width).min(self.guard_until[i]);
        b.cap(n.saturating_sub(self.recent[i].bound(now.0 / width)), next);
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

    /// The same counters under `new` limits instead of these: a rate limit that is new
    /// or allows less than before (a longer emission interval) is also checked against
    /// the recent counts until the sends made under the old limits left its window. The
    /// rate state alone keeps the window bound only when the interval did not grow.
    pub fn reshape(&self, new: Shape, c: &mut Counters) {
        let grew = |old: Option<GcraParams>, new: Option<GcraParams>| match (old, new) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(o), Some(n)) => n.interval_us() > o.interval_us(),
        };
        for i in 0..2 {
            if grew(self.rates[i], new.rates[i]) {
                c.guard(i);
            }
        }
        if grew(self.connect, new.connect) {
            c.guard(CONNECT);
        }
    }

    /// Checks one message at `now` with the rate scaled to `permille`.
    pub fn check_send(&self, c: &Counters, now: Millis, permille: u16, b: &mut Budget) {
        for (p, g) in self.rates.iter().zip(&c.rate) {
            if let Some(p) = scaled(*p, permille) {
                b.gcra(g, p, now);
            }
        }
        c.check_guard(0, self.limits.messages_per_second, now, b);
        c.check_guard(1, self.limits.messages_per_minute, now, b);
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
        c.record(0, now);
        c.record(1, now);
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
        c.check_guard(CONNECT, self.limits.new_connections_per_minute, now, b);
    }

    /// Records one new connection.
    pub fn commit_connect(&self, c: &mut Counters, now: Millis) {
        if let Some(p) = self.connect {
            c.connect.commit(now.0 * 1_000, p);
        }
        c.record(CONNECT, now);
    }
}
