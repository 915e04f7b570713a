//! Choosing a source IP for one message.

use super::budget::Budget;
use super::connection::Connection;
use super::slots::{IpSlot, PathSlot};
use super::{Blocked, Decision, Engine, Grant, PathId, PoolKey, SiteKey};
use crate::time::Millis;
use crate::warmup::Signal;

/// One IP that can take the message now.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    path: u32,
    weight: u64,
    warming: bool,
    /// Warm-up day to record, when the IP follows a plan.
    day: Option<u32>,
    /// The send needs a new connection.
    open: bool,
}

/// Whether a ready path also has a connection for the message.
pub(super) enum Gate {
    /// Yes; `true` when a new connection must be opened.
    Pass(bool),
    /// Every allowed connection is in use.
    Busy,
    /// A new connection may open at this time.
    Until(Millis),
}

/// What one IP can do for the message.
enum Assessed {
    Ready(Candidate),
    Until(Millis),
    Held,
}

impl Engine {
    /// Chooses the source IP for one message of `pool` to `site`, weighted by each IP's
    /// remaining allowance, and records the send against every limit of the chosen path.
    /// `random` is any caller-supplied random value; the choice is a function of it.
    /// When no IP can send now, returns the earliest time one could.
    pub fn decide(&mut self, now: Millis, pool: PoolKey, site: SiteKey, random: u64) -> Decision {
        self.choose(now, pool, site, (random, None), |_, _, _| Gate::Pass(false))
            .map(|c| self.grant(now, c))
    }

    /// Like [`Engine::decide`], but only paths that also have a connection qualify: one the
    /// caller holds idle (`idle(path)` is true) or a new one the connection limits allow.
    /// Returns the new connection when one was opened (`None`: use an idle one), and
    /// [`Blocked::Busy`] when limits allow a send but every allowed connection is in use.
    pub fn decide_via(
        &mut self,
        now: Millis,
        pool: PoolKey,
        site: SiteKey,
        random: u64,
        idle: impl Fn(PathId) -> bool,
    ) -> Result<(Grant, Option<Connection>), Blocked> {
        self.decide_via_prefer(now, pool, site, random, None, idle)
    }

    /// [`Engine::decide_via`] that picks `prefer` whenever that IP qualifies, and
    /// the weighted choice otherwise. Retries use it to come back from the IP
    /// that tried before, which greylisting (keyed on the client IP) needs.
    pub fn decide_via_prefer(
        &mut self,
        now: Millis,
        pool: PoolKey,
        site: SiteKey,
        random: u64,
        prefer: Option<std::net::IpAddr>,
        idle: impl Fn(PathId) -> bool,
    ) -> Result<(Grant, Option<Connection>), Blocked> {
        let gate = |e: &Engine, now: Millis, path: u32| {
            if idle(PathId(path)) {
                Gate::Pass(false)
            } else {
                e.connect_gate(now, path)
            }
        };
        let c = self.choose(now, pool, site, (random, prefer), gate)?;
        let grant = self.grant(now, c);
        let conn = c.open.then(|| self.commit_connect(now, grant.path));
        Ok((grant, conn))
    }

    fn grant(&mut self, now: Millis, c: Candidate) -> Grant {
        self.commit(now, c);
        let ip = self.ips[self.paths[c.path as usize].ip as usize].addr;
        Grant {
            path: PathId(c.path),
            ip,
        }
    }

    fn choose(
        &mut self,
        now: Millis,
        pool: PoolKey,
        site: SiteKey,
        (random, prefer): (u64, Option<std::net::IpAddr>),
        mut gate: impl FnMut(&Engine, Millis, u32) -> Gate,
    ) -> Result<Candidate, Blocked> {
        let mut cands = std::mem::take(&mut self.scratch);
        cands.clear();
        let mut earliest: Option<Millis> = None;
        let mut busy = false;
        for i in 0..self.pools[pool.0 as usize].len() {
            let ip = self.pools[pool.0 as usize][i];
            let path = self.path_index(ip, site.0);
            let mut until = |t: Millis| earliest = Some(earliest.map_or(t, |e: Millis| e.min(t)));
            match self.assess(now, path) {
                Assessed::Ready(c) => match gate(self, now, path) {
                    Gate::Pass(open) => cands.push(Candidate { open, ..c }),
                    Gate::Busy => busy = true,
                    Gate::Until(t) => until(t),
                },
                Assessed::Until(t) => until(t),
                Assessed::Held => {}
            }
        }
        let preferred = prefer.and_then(|ip| {
            cands
                .iter()
                .find(|c| self.ips[self.paths[c.path as usize].ip as usize].addr == ip)
                .copied()
        });
        let picked = preferred.or_else(|| self.pick(&cands, random));
        self.scratch = cands;
        picked.ok_or(match (busy, earliest) {
            (true, _) => Blocked::Busy,
            (false, Some(t)) => Blocked::Until(t),
            (false, None) => Blocked::Held,
        })
    }

    fn pick(&self, cands: &[Candidate], random: u64) -> Option<Candidate> {
        let warming_only = self.cfg.warmup.prefer_warming && cands.iter().any(|c| c.warming);
        let eligible = || cands.iter().filter(move |c| !warming_only || c.warming);
        let total: u64 = eligible().map(|c| c.weight).sum();
        if total == 0 {
            return None;
        }
        let mut r = random % total;
        for c in eligible() {
            if r < c.weight {
                return Some(*c);
            }
            r -= c.weight;
        }
        None
    }

    fn assess(&self, now: Millis, path: u32) -> Assessed {
        let p = &self.paths[path as usize];
        let ip = &self.ips[p.ip as usize];
        if ip.state.signal == Signal::Pause || p.signal == Signal::Pause {
            return Assessed::Held;
        }
        let mut b = Budget::new();
        b_suspended(&mut b, ip.state.suspended_until, now);
        b_suspended(&mut b, p.state.suspended_until, now);
        p.shape
            .check_send(&p.state.counters, now, self.permille(p), &mut b);
        if let Some(v) = p.provider {
            let v = &self.providers[v as usize];
            v.shape.check_send(&v.counters, now, 1000, &mut b);
        }
        let (day, warming) = self.check_warmup(ip, p, now, &mut b);
        match b.until {
            Some(t) => Assessed::Until(t),
            None => Assessed::Ready(Candidate {
                path,
                weight: b.remaining.max(1),
                warming,
                day,
                open: false,
            }),
        }
    }

    /// Effective rate of a path in permille: its AIMD share, halved while the IP is `Slow`.
    pub(super) fn permille(&self, p: &PathSlot) -> u16 {
        let base = p.state.aimd.permille();
        if self.ips[p.ip as usize].state.signal == Signal::Slow || p.signal == Signal::Slow {
            (base / 2).max(1)
        } else {
            base
        }
    }

    /// Applies the IP's warm-up caps; returns the warm-up day a send would count on and
    /// whether the IP is still warming.
    fn check_warmup(
        &self,
        ip: &IpSlot,
        p: &PathSlot,
        now: Millis,
        b: &mut Budget,
    ) -> (Option<u32>, bool) {
        let Some(plan) = ip.plan.map(|i| &self.plans[i as usize]) else {
            return (None, false);
        };
        let w = &ip.state.warmup;
        let hold = ip.state.signal == Signal::HoldDay;
        let day = w.day_on(now.day(), plan.len(), self.cfg.warmup.idle_days, hold);
        let Some(caps) = plan.day(day) else {
            return (Some(day), false);
        };
        let next_day = now.next_day_start();
        b.cap(caps.daily.saturating_sub(w.sent_on(now.day())), next_day);
        if let Some(h) = caps.hourly {
            b.cap(
                h.saturating_sub(w.sent_in_hour(now.hour())),
                now.next_hour_start(),
            );
        }
        let site_sent = p.state.counters.sent_on_day(now.day());
        if !caps.sites.is_empty()
            && let Some(&cap) = caps.sites.get(&self.sites[p.site as usize].name)
        {
            b.cap(cap.saturating_sub(site_sent), next_day);
        }
        let share = u32::from(self.cfg.warmup.max_site_share_percent.min(100));
        if share < 100 {
            let cap = (u64::from(caps.daily) * u64::from(share) / 100).max(1) as u32;
            b.cap(cap.saturating_sub(site_sent), next_day);
        }
        (Some(day), true)
    }

    fn commit(&mut self, now: Millis, c: Candidate) {
        let permille = self.permille(&self.paths[c.path as usize]);
        let p = &mut self.paths[c.path as usize];
        p.shape.commit_send(&mut p.state.counters, now, permille);
        if let Some(v) = p.provider {
            let v = &mut self.providers[v as usize];
            v.shape.commit_send(&mut v.counters, now, 1000);
        }
        if let Some(day) = c.day {
            self.ips[p.ip as usize].state.warmup.record(now, day);
        }
    }
}

fn b_suspended(b: &mut Budget, until: Millis, now: Millis) {
    if until > now {
        b.block(until);
    }
}
