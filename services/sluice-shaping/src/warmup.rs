//! IP warm-up: plans of caps by warm-up day, and the per-IP progress through them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gcra::WindowCount;
use crate::time::Millis;

/// Caps of one warm-up day.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDay {
    /// Messages the IP may send on this day, over all sites (UTC calendar day).
    pub daily: u32,
    /// Messages the IP may send in one UTC clock hour of this day, over all sites.
    #[serde(default)]
    pub hourly: Option<u32>,
    /// Daily caps for single sites on this day, by site name (within `daily`).
    #[serde(default)]
    pub sites: BTreeMap<String, u32>,
}

impl PlanDay {
    /// A day with a daily cap only.
    pub fn daily(daily: u32) -> PlanDay {
        PlanDay {
            daily,
            hourly: None,
            sites: BTreeMap::new(),
        }
    }
}

/// A named warm-up schedule. Day 1 is the first day the IP sends; after the last day the
/// IP is warmed and the plan no longer caps it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupPlan {
    /// Caps by warm-up day, day 1 first.
    pub days: Vec<PlanDay>,
}

/// Daily caps of the built-in `standard` plan (see `docs/shaping.md` for the source).
pub const STANDARD_DAILY: [u32; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 40_000, 70_000, 100_000, 150_000,
    250_000, 400_000, 600_000, 1_000_000,
];

impl WarmupPlan {
    /// The built-in `standard` plan: [`STANDARD_DAILY`], each day's hourly cap a tenth of its
    /// daily cap (at least 5), so a day's volume spreads over ten hours or more.
    pub fn standard() -> WarmupPlan {
        let days = STANDARD_DAILY
            .iter()
            .map(|&d| PlanDay {
                hourly: Some(d.div_ceil(10).max(5)),
                ..PlanDay::daily(d)
            })
            .collect();
        WarmupPlan { days }
    }

    /// Number of days in the plan.
    pub fn len(&self) -> u32 {
        self.days.len() as u32
    }

    /// True when the plan has no days.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// Caps on warm-up day `day` (1-based); `None` once past the last day.
    pub fn day(&self, day: u32) -> Option<&PlanDay> {
        self.days.get(day.checked_sub(1)? as usize)
    }
}

/// Warm-up configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmupConfig {
    /// Named plans. The built-in plan `standard` exists unless a plan of that name is given.
    pub plans: BTreeMap<String, WarmupPlan>,
    /// An IP that did not send for more than this many whole days falls back: its warm-up day
    /// is halved once per full `idle_days` of idleness (never below day 1). Default 30.
    pub idle_days: u32,
    /// While an IP warms, one site may use at most this percent of the IP's daily cap, so a
    /// busy site cannot starve the others. Default 60.
    pub max_site_share_percent: u8,
    /// Prefer warming IPs that still have allowance over warmed IPs, so warming IPs fill
    /// their caps and only the overflow goes to warmed IPs. Default `true`.
    pub prefer_warming: bool,
}

impl Default for WarmupConfig {
    fn default() -> WarmupConfig {
        WarmupConfig {
            plans: BTreeMap::new(),
            idle_days: 30,
            max_site_share_percent: 60,
            prefer_warming: true,
        }
    }
}

impl WarmupConfig {
    /// Configured plans plus the built-in `standard` plan unless overridden.
    pub fn all_plans(&self) -> BTreeMap<String, WarmupPlan> {
        let mut plans = self.plans.clone();
        plans
            .entry("standard".to_owned())
            .or_insert_with(WarmupPlan::standard);
        plans
    }
}

/// A reputation signal for one source IP, computed by the caller (bounce, complaint and
/// deferral rates). It stays in effect until the caller passes another.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Normal.
    #[default]
    Ok,
    /// Halve the rates of every path of the IP; warm-up advances normally.
    Slow,
    /// Keep the IP on its current warm-up day (it still sends within that day's caps).
    HoldDay,
    /// The IP sends nothing.
    Pause,
}

/// Warm-up progress of one IP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmupState {
    day: u32,
    last_sent_day: Option<u32>,
    today: WindowCount,
    hour: WindowCount,
}

impl WarmupState {
    /// Warm-up day of the last day the IP sent (0 before it ever sent).
    pub fn day(&self) -> u32 {
        self.day
    }

    /// Calendar day (days since epoch) the IP last sent.
    pub fn last_sent_day(&self) -> Option<u32> {
        self.last_sent_day
    }

    /// Warm-up day that applies to a send on calendar day `today`: unchanged on a day the IP
    /// already sent; on a new sending day one more (unless held, and never beyond
    /// `plan_len + 1`); after more than `idle_days` idle days, halved per full period instead.
    pub fn day_on(&self, today: u32, plan_len: u32, idle_days: u32, hold: bool) -> u32 {
        let Some(last) = self.last_sent_day else {
            return 1;
        };
        let day = self.day.max(1);
        if last >= today {
            return day;
        }
        let idle = today - last - 1;
        if idle_days > 0 && idle > idle_days {
            let halvings = (idle / idle_days).min(31);
            return (day >> halvings).max(1);
        }
        if hold {
            day
        } else {
            (day + 1).min(plan_len + 1)
        }
    }

    /// Messages sent on calendar day `today`.
    pub fn sent_on(&self, today: u32) -> u32 {
        self.today.get(today)
    }

    /// Messages sent in clock hour `hour`.
    pub fn sent_in_hour(&self, hour: u32) -> u32 {
        self.hour.get(hour)
    }

    /// Records one send at `now` on warm-up day `day` (from [`WarmupState::day_on`]).
    pub fn record(&mut self, now: Millis, day: u32) {
        let today = now.day();
        if self.last_sent_day != Some(today) {
            self.day = day;
            self.last_sent_day = Some(today);
        }
        self.today.add(today);
        self.hour.add(now.hour());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DAY;

    fn send_on(s: &mut WarmupState, cal_day: u32, hold: bool) -> u32 {
        let d = s.day_on(cal_day, 17, 30, hold);
        s.record(Millis(u64::from(cal_day) * DAY), d);
        d
    }

    #[test]
    fn day_advances_only_on_sending_days() {
        let mut s = WarmupState::default();
        assert_eq!(send_on(&mut s, 100, false), 1);
        assert_eq!(send_on(&mut s, 100, false), 1);
        assert_eq!(send_on(&mut s, 101, false), 2);
        // Days 102..=110 idle: still only one step.
        assert_eq!(send_on(&mut s, 111, false), 3);
    }

    #[test]
    fn hold_keeps_the_day() {
        let mut s = WarmupState::default();
        send_on(&mut s, 0, false);
        assert_eq!(send_on(&mut s, 1, true), 1);
        assert_eq!(send_on(&mut s, 2, false), 2);
    }

    #[test]
    fn idle_fallback_halves_per_period() {
        let mut s = WarmupState::default();
        for d in 0..12 {
            send_on(&mut s, d, false);
        }
        assert_eq!(s.day(), 12);
        // Last sent day 11; day 42 has 30 idle days in between: no fallback, advance.
        assert_eq!(s.day_on(42, 17, 30, false), 13);
        // 31 idle days: halved once.
        assert_eq!(s.day_on(43, 17, 30, false), 6);
        // 60 idle days: halved twice.
        assert_eq!(s.day_on(72, 17, 30, false), 3);
        assert_eq!(s.day_on(10_000, 17, 30, false), 1);
    }

    #[test]
    fn warmed_ip_stops_at_plan_end_and_can_fall_back() {
        let mut s = WarmupState::default();
        for d in 0..40 {
            send_on(&mut s, d, false);
        }
        assert_eq!(s.day(), 18);
        assert_eq!(s.day_on(40 + 31, 17, 30, false), 9);
    }

    #[test]
    fn standard_plan_shape() {
        let p = WarmupPlan::standard();
        assert_eq!(p.day(1).unwrap().daily, 50);
        assert_eq!(p.day(1).unwrap().hourly, Some(5));
        assert!(p.day(18).is_none());
        assert!(p.day(0).is_none());
        assert!(p.days.windows(2).all(|w| w[0].daily <= w[1].daily));
    }
}
