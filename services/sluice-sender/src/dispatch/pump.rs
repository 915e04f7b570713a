//! Starting deliveries when limits allow, and settling finished ones.

use std::time::{Duration, Instant};

use sluice_shaping::{Blocked, Connection, Grant, Millis, Verdict};

use super::{Dispatcher, Idle, Queued, Wait, fate_now, fates};
use crate::deliver::{self, Attempt, Done, Job, Live, Ticket};
use crate::fate::AttemptInfo;
use crate::smtp::ConnectOptions;

impl Dispatcher {
    pub(super) fn pump_all(&mut self) {
        let now = fate_now();
        for idx in 0..self.sites.len() {
            let site = &self.sites[idx];
            if site.queue.is_empty() || site.wake_at.is_some_and(|t| t > now) {
                continue;
            }
            self.pump(idx, now);
        }
    }

    /// Starts as many of the site's queued messages as the engine allows now.
    fn pump(&mut self, idx: usize, now: Millis) {
        loop {
            let Some(front) = self.sites[idx].queue.front() else {
                return;
            };
            if fates::is_expired(&front.envelope, now) {
                let q = self.pop(idx);
                self.settle_expired(q.rec, &q.envelope, now);
                continue;
            }
            if self.fence.is_closed(&front.rec.topic, front.rec.partition) {
                // Revoked: the record leaves without a fate and without a
                // delivery; the commit stays below it and the next owner
                // reads it.
                let q = self.pop(idx);
                let mut tracker = self.tracker.lock().expect("offset tracker lock");
                tracker.abandon(&q.rec.topic, q.rec.partition, q.rec.offset);
                continue;
            }
            let tenant = &front.envelope.tenant;
            if self.paused_tenants.contains(tenant) || self.control_paused.contains(tenant) {
                let q = self.pop(idx);
                let fate = fates::tenant_paused(&self.cfg, self.engine.retry(), &q.envelope, now);
                self.count_fate(&fate);
                self.spawn_publish(q.rec, fate);
                continue;
            }
            let prefer: Option<std::net::IpAddr> = self.sites[idx]
                .queue
                .front()
                .and_then(|q| q.envelope.last_source_ip.parse().ok());
            let random = self.next_random();
            let key = self.sites[idx].key;
            let idle = &self.idle;
            let decision =
                self.engine
                    .decide_via_prefer(now, self.pool, key, random, prefer, |path| {
                        idle.get(&path).is_some_and(|v| !v.is_empty())
                    });
            let site = &mut self.sites[idx];
            match decision {
                Ok((grant, new_conn)) => {
                    site.waiting = None;
                    let q = self.pop(idx);
                    self.sites[idx].parking.on_start(now);
                    self.start(idx, q, grant, new_conn);
                }
                Err(Blocked::Until(t)) => {
                    (site.wake_at, site.waiting) = (Some(t), Some(Wait::Rate));
                    return;
                }
                Err(Blocked::Busy) => {
                    // A finished delivery wakes the site again.
                    (site.wake_at, site.waiting) = (None, Some(Wait::Connections));
                    return;
                }
                Err(Blocked::Held) => {
                    let later = now.after(sluice_shaping::Span::secs(1));
                    (site.wake_at, site.waiting) = (Some(later), Some(Wait::Held));
                    return;
                }
            }
        }
    }

    fn pop(&mut self, idx: usize) -> Queued {
        self.queued -= 1;
        self.sites[idx]
            .queue
            .pop_front()
            .expect("pop follows a successful front()")
    }

    fn start(&mut self, idx: usize, q: Queued, grant: Grant, new_conn: Option<Connection>) {
        let new_conn_opened = new_conn.is_some();
        let (conn, live) = match new_conn {
            Some(mut conn) => {
                conn.take_message();
                (conn, None)
            }
            None => {
                let idle = self
                    .idle
                    .get_mut(&grant.path)
                    .and_then(Vec::pop)
                    .expect("the engine granted an idle connection");
                (idle.conn, Some(idle.live))
            }
        };
        let ip = grant.ip;
        let site = &self.sites[idx];
        if new_conn_opened {
            self.metrics
                .connections_opened
                .get_or_create(&crate::metrics::PathLabels {
                    source_ip: ip.to_string(),
                    site: crate::metrics::site_label(&site.name),
                })
                .inc();
        }
        let smtp = &self.cfg.smtp;
        let opts = ConnectOptions {
            source_ip: grant.ip,
            ehlo_name: self.cfg.ehlo_name(grant.ip).to_owned(),
            connect_timeout: Duration::from_millis(smtp.connect_timeout.0),
            command_timeout: Duration::from_millis(smtp.command_timeout.0),
            require_tls: site.require_tls,
            opportunistic_tls: smtp.opportunistic_tls,
            tls: self.tls.clone(),
        };
        let job = Job {
            ticket: Ticket {
                work: self.fence.begin(&q.rec.topic, q.rec.partition),
                rec: q.rec,
                site: site.name.clone(),
                queued: q.arrived.elapsed(),
                lease_epoch: self.lease_epoch(grant.ip),
            },
            envelope: q.envelope,
            grant,
            conn,
            live,
            hosts: q.hosts,
            opts,
            data_timeout: Duration::from_millis(smtp.data_timeout.0),
        };
        let task = self.deliveries.spawn(deliver::run(job));
        self.busy.insert(task.id(), ip);
    }

    /// Settles a finished attempt: tells the engine, decides the fate, and
    /// keeps or closes the connection.
    pub(super) fn finish(&mut self, done: Done) {
        let now = fate_now();
        let (reply, wire_reply) = fates::replies(&done.attempt);
        let action = self.engine.on_reply(now, done.grant.path, &reply);
        let info = AttemptInfo {
            source_ip: done.grant.ip.to_string(),
            site: done.ticket.site.clone(),
            mx_host: done.mx_host.clone(),
            mx_address: done.mx_addr.clone(),
            queued: done.ticket.queued,
            connect: done.connect_time,
            transaction: done.transaction_time,
            node: self.cfg.node.clone(),
            lease_epoch: done.ticket.lease_epoch,
        };
        let fate = match action.verdict {
            Verdict::Delivered => fates::delivered(&done.envelope, wire_reply, &info, now),
            Verdict::Bounce => {
                let class = action
                    .classification
                    .map(|c| crate::fate::wire_class(c.class));
                fates::bounced(&done.envelope, wire_reply, class, &info, now)
            }
            Verdict::Retry { at_least } => {
                let mut envelope = done.envelope.clone();
                envelope.site = done.ticket.site.clone();
                self.retry_fate(&envelope, wire_reply, info, at_least)
            }
        };
        let fate = self.noticed(&done.envelope, fate);
        self.count_fate(&fate);
        if !done.transaction_time.is_zero() {
            self.metrics
                .transaction_seconds
                .get_or_create(&crate::metrics::PathLabels {
                    source_ip: done.grant.ip.to_string(),
                    site: crate::metrics::site_label(&done.ticket.site),
                })
                .observe(done.transaction_time.as_secs_f64());
        }
        let keep = matches!(&done.attempt, Attempt::Replied { reply } if reply.code != 421);
        self.settle_connection(now, done.conn, done.live.filter(|_| keep));
        self.spawn_publish(done.ticket.rec, fate);
        // Only now: the publish holds its own token for the record.
        drop(done.ticket.work);
    }

    fn settle_connection(&mut self, now: Millis, mut conn: Connection, live: Option<Live>) {
        match live {
            Some(live) if conn.take_message() => {
                let path = conn.path();
                self.idle.entry(path).or_default().push(Idle {
                    conn,
                    live,
                    since: Instant::now(),
                });
            }
            Some(live) => self.close(conn, live),
            None => self.engine.on_connection_close(now, conn),
        }
    }

    /// Says QUIT in the background; the engine learns of the close after it.
    pub(super) fn close(&mut self, conn: Connection, live: Live) {
        self.closing.spawn(async move {
            live.session.quit().await;
            conn
        });
    }

    /// Closes connections idle for longer than `smtp.idle_timeout`.
    pub(super) fn close_stale_idle(&mut self) {
        let limit = Duration::from_millis(self.cfg.smtp.idle_timeout.0);
        let mut stale = Vec::new();
        for list in self.idle.values_mut() {
            let (old, fresh): (Vec<Idle>, Vec<Idle>) =
                list.drain(..).partition(|i| i.since.elapsed() >= limit);
            *list = fresh;
            stale.extend(old);
        }
        for idle in stale {
            self.close(idle.conn, idle.live);
        }
    }
}
