//! Per-source-IP limit bookkeeping and greylisting. Pure logic: the caller
//! passes the time in, so tests need no clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::reply::LimitKind;
use crate::scenario::Limits;

const WINDOW: Duration = Duration::from_secs(60);

/// Names one counted message in a source IP's sliding window, so that an
/// aborted transaction can be taken back out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

#[derive(Debug, Default)]
struct IpState {
    connections: u32,
    window: VecDeque<(Instant, Ticket)>,
}

/// Counts connections and messages per source IP against the limits.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    per_ip: HashMap<IpAddr, IpState>,
    next_ticket: u64,
}

impl Limiter {
    /// A limiter with nothing counted yet.
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            per_ip: HashMap::new(),
            next_ticket: 0,
        }
    }

    /// Takes a connection slot for `ip`, or says which limit refuses it.
    pub fn open_connection(&mut self, ip: IpAddr) -> Result<(), LimitKind> {
        let state = self.per_ip.entry(ip).or_default();
        if self
            .limits
            .connections_per_ip
            .is_some_and(|max| state.connections >= max)
        {
            return Err(LimitKind::Connections);
        }
        state.connections += 1;
        Ok(())
    }

    /// Gives back a slot taken by `open_connection`.
    pub fn close_connection(&mut self, ip: IpAddr) {
        if let Some(state) = self.per_ip.get_mut(&ip) {
            state.connections = state.connections.saturating_sub(1);
        }
    }

    /// Counts a new message from `ip` at `now` in its 60-second window.
    /// On success returns the ticket and the window's count including it.
    pub fn start_message(&mut self, ip: IpAddr, now: Instant) -> Result<(Ticket, u32), LimitKind> {
        let ticket = Ticket(self.next_ticket);
        let state = self.per_ip.entry(ip).or_default();
        while state
            .window
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= WINDOW)
        {
            state.window.pop_front();
        }
        let count = state.window.len() as u32;
        if self
            .limits
            .messages_per_minute
            .is_some_and(|max| count >= max)
        {
            return Err(LimitKind::MessagesPerMinute);
        }
        state.window.push_back((now, ticket));
        self.next_ticket += 1;
        Ok((ticket, count + 1))
    }

    /// Takes an aborted message back out of the window.
    pub fn abort_message(&mut self, ip: IpAddr, ticket: Ticket) {
        if let Some(state) = self.per_ip.get_mut(&ip) {
            state.window.retain(|(_, t)| *t != ticket);
        }
    }
}

/// Remembers when each (source IP, sender, recipient) triplet was first seen.
#[derive(Debug)]
pub struct Greylist {
    delay: Duration,
    first_seen: HashMap<(IpAddr, String, String), Instant>,
}

impl Greylist {
    /// A greylist that holds triplets back for `delay` (zero: never).
    pub fn new(delay: Duration) -> Self {
        Greylist {
            delay,
            first_seen: HashMap::new(),
        }
    }

    /// True if the triplet may pass at `now`; the first call starts its clock.
    pub fn pass(&mut self, ip: IpAddr, from: &str, to: &str, now: Instant) -> bool {
        if self.delay.is_zero() {
            return true;
        }
        let key = (ip, from.to_ascii_lowercase(), to.to_ascii_lowercase());
        let first = *self.first_seen.entry(key).or_insert(now);
        now.saturating_duration_since(first) >= self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    fn limits(per_minute: u32, conns: u32) -> Limits {
        Limits {
            messages_per_minute: Some(per_minute),
            connections_per_ip: Some(conns),
            ..Limits::default()
        }
    }

    #[test]
    fn connection_limit_is_per_ip_and_slots_come_back() {
        let mut l = Limiter::new(limits(10, 2));
        assert!(l.open_connection(ip(2)).is_ok());
        assert!(l.open_connection(ip(2)).is_ok());
        assert_eq!(l.open_connection(ip(2)), Err(LimitKind::Connections));
        assert!(l.open_connection(ip(3)).is_ok());
        l.close_connection(ip(2));
        assert!(l.open_connection(ip(2)).is_ok());
    }

    #[test]
    fn per_minute_window_slides_and_aborts_are_taken_back() {
        let mut l = Limiter::new(limits(2, 5));
        let t0 = Instant::now();
        let (first, n1) = l.start_message(ip(2), t0).unwrap();
        let (_, n2) = l
            .start_message(ip(2), t0 + Duration::from_secs(30))
            .unwrap();
        assert_eq!((n1, n2), (1, 2));
        let at_40 = t0 + Duration::from_secs(40);
        assert_eq!(
            l.start_message(ip(2), at_40),
            Err(LimitKind::MessagesPerMinute)
        );
        assert!(
            l.start_message(ip(3), at_40).is_ok(),
            "other IPs have their own window"
        );
        l.abort_message(ip(2), first);
        assert!(l.start_message(ip(2), at_40).is_ok());
        let later = t0 + Duration::from_secs(95);
        assert_eq!(
            l.start_message(ip(2), later).unwrap().1,
            2,
            "t=30 slid out, t=40 stays"
        );
    }

    #[test]
    fn greylist_defers_until_the_delay_has_passed() {
        let mut g = Greylist::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(!g.pass(ip(2), "a@x", "b@y", t0));
        assert!(!g.pass(ip(2), "A@X", "b@y", t0 + Duration::from_secs(4)));
        assert!(g.pass(ip(2), "a@x", "b@y", t0 + Duration::from_secs(5)));
        assert!(!g.pass(ip(3), "a@x", "b@y", t0 + Duration::from_secs(5)));
        assert!(Greylist::new(Duration::ZERO).pass(ip(2), "a", "b", t0));
    }
}
