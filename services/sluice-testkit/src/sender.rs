//! The sender's end-to-end harness: a simulated ISP farm on 127.0.0.2–6, a
//! real Kafka (SLUICE_KAFKA_BROKERS) or the embedded log, envelopes in,
//! events out, and a sender node run through `sluice_sender::run`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prost::Message as _;
use sluice_log::{GroupConsumer, MessageLog, NewRecord};
use sluice_log::{KafkaConfig, KafkaLog, Log};
use sluice_proto::v1::{Envelope, Event, EventKind};
use sluice_sim::{Scenario, SimHandle, Simulator};

/// One simulated provider, `inbox`, taking mail for `inbox.test` on a free
/// port of 127.0.0.2: the receiver of the `sluice dev` feedback tests.
pub const INBOX: &str = r#"
[[provider]]
name = "inbox"
listen = "127.0.0.2:0"
domains = ["inbox.test"]
"#;

/// Source IPs of the sender under test.
pub const IPS: [&str; 8] = [
    "127.0.0.10",
    "127.0.0.11",
    "127.0.0.12",
    "127.0.0.13",
    "127.0.0.14",
    "127.0.0.15",
    "127.0.0.16",
    "127.0.0.17",
];

/// The Kafka broker of the tests (see [`crate::servers::kafka`]).
pub async fn kafka() -> KafkaConfig {
    crate::servers::kafka("sluice-sender-test").await
}

/// The message log on the Kafka broker of [`kafka`].
pub async fn kafka_log(kafka: &KafkaConfig) -> Log {
    KafkaLog::connect(kafka.clone())
        .await
        .unwrap_or_else(|err| panic!("this test needs a running Kafka broker. {err}"))
        .into()
}

/// Unique names so tests never see each other's records.
pub struct Names {
    pub pool: String,
    pub outbound: String,
    pub events: String,
    pub group: String,
}

impl Default for Names {
    fn default() -> Self {
        Self::new()
    }
}

impl Names {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let pool = format!("p{}", &id[..8]);
        Self {
            outbound: format!("sluice.test.outbound.{id}"),
            events: format!("sluice.test.events.{id}"),
            group: format!("sluice-test-sender-{id}"),
            pool,
        }
    }
}

pub async fn start_sim(text: &str) -> SimHandle {
    let scenario = Scenario::parse(text).expect("scenario parses");
    Simulator::start(scenario).await.expect("simulator starts")
}

/// `[routes]` TOML lines: every domain of every provider to its address.
pub fn routes_toml(sim: &SimHandle, domains: &[(&str, &[&str])]) -> String {
    let mut out = String::from("[routes]\n");
    for (provider, ds) in domains {
        let addr = sim.addr(provider).expect("provider is bound");
        for d in *ds {
            out.push_str(&format!("\"{d}\" = [\"{addr}\"]\n"));
        }
    }
    out
}

/// `[[shaping.sites.rules]]` naming each provider's site after the provider.
pub fn site_rules_toml(sim: &SimHandle) -> String {
    let mut out = String::new();
    for (name, addr) in sim.addrs() {
        out.push_str(&format!(
            "[[shaping.sites.rules]]\npattern = \"{}\"\nsite = \"{name}\"\nprovider = \"{name}\"\n",
            addr.ip()
        ));
    }
    out
}

pub fn ips_toml(pool: &str, n: usize) -> String {
    IPS[..n]
        .iter()
        .map(|ip| format!("[[shaping.ips]]\naddress = \"{ip}\"\npool = \"{pool}\"\n"))
        .collect()
}

/// The common part of a sender config; callers append limits.
pub fn base_config(names: &Names, brokers: &str) -> String {
    format!(
        r#"
node = "test-sender"
pool = "{pool}"
dns = false

[kafka]
brokers = "{brokers}"
outbound_topic = "{outbound}"
events_topic = "{events}"
group = "{group}"
commit_interval = "200ms"

[smtp]
ehlo_name = "sender.sluice.test"
connect_timeout = "5s"
command_timeout = "10s"
data_timeout = "10s"
idle_timeout = "2s"

[queues]
max_in_flight = 6000
max_per_site = 1500
overflow_delay = "1s"

[shaping.retry]
first_delay = "1s"
multiplier = 2.0
max_delay = "4s"
max_age = "10m"
jitter_percent = 10
tiers = ["1s", "5s"]

# The simulator greylists for seconds, not the minutes of the built-in rule.
[[shaping.replies.rules]]
name = "sim-greylisting"
code = "^4"
text = "(?i)greylist"
action = "retry"
retry_after = "2s"
"#,
        pool = names.pool,
        outbound = names.outbound,
        events = names.events,
        group = names.group,
    )
}

pub fn envelope(pool: &str, n: usize, recipient: &str, size: usize) -> Envelope {
    let id = format!(
        "m{n:06}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // Body lines of 76 characters: RFC 5322 caps a line at 998.
    let line = format!("{}\r\n", "x".repeat(76));
    let filler = line.repeat(size.saturating_sub(200).max(78) / 78);
    let content = format!(
        "Message-ID: <{id}@sluice.test>\r\nFrom: sender@origin.test\r\nTo: {recipient}\r\nSubject: test {n}\r\n\r\n{filler}"
    );
    Envelope {
        message_id: id,
        tenant: "acme".into(),
        pool: pool.into(),
        campaign: "e2e".into(),
        return_path: "bounces@origin.test".into(),
        recipient: recipient.into(),
        content: content.into_bytes(),
        accepted_at: Some(sluice_sender::fate::timestamp(sluice_sender::fate::now())),
        ..Default::default()
    }
}

pub async fn produce(log: &Log, topic: &str, envelopes: &[Envelope]) {
    log.ensure_topics(&[topic.to_owned()])
        .await
        .expect("create topic");
    let keyed = envelopes
        .iter()
        .map(|e| (e.message_id.clone(), e.encode_to_vec()));
    append_keyed(log, topic, keyed).await;
}

/// Appends `(key, payload)` records to `topic` in batches of 2,000, each
/// batch durable before the next.
pub async fn append_keyed(
    log: &Log,
    topic: &str,
    records: impl Iterator<Item = (String, Vec<u8>)>,
) {
    let mut records: Vec<NewRecord> = records
        .map(|(key, payload)| NewRecord {
            topic: topic.to_owned(),
            key: key.into_bytes(),
            payload,
            headers: Vec::new(),
        })
        .collect();
    while !records.is_empty() {
        let rest = records.split_off(records.len().min(2000));
        log.append_batch(records).await.expect("append records");
        records = rest;
    }
}

/// Sends one message to `recipient` and waits (up to a minute) for its
/// fate: after that the running sender has joined its group and loaded its
/// fate index, so what a test measures next is not the sender's start.
pub async fn warm_up(log: &Log, names: &Names, recipient: &str) {
    let first = envelope(&names.pool, 999_999, recipient, 512);
    let id = HashSet::from([first.message_id.clone()]);
    produce(log, &names.outbound, &[first]).await;
    let events = collect_fates(log, &names.events, &id, Duration::from_secs(60)).await;
    assert!(
        !events.is_empty(),
        "the warm-up message to {recipient} got no fate"
    );
}

/// `config` (from [`base_config`]) resolving domains over DNS at `server`
/// instead of its static routes alone.
pub fn with_dns(config: &str, server: std::net::SocketAddr) -> String {
    config.replace(
        "dns = false",
        &format!("dns = true\ndns_servers = [\"{server}\"]"),
    )
}

/// Reads the events topic until every id in `expected` has a final event
/// (delivered, bounced or expired) or `timeout` passes. Returns all events
/// per message id.
pub async fn collect_fates(
    log: &Log,
    topic: &str,
    expected: &HashSet<String>,
    timeout: Duration,
) -> HashMap<String, Vec<Event>> {
    collect_events(log, topic, timeout, |events| {
        expected.iter().all(|id| {
            events
                .get(id)
                .is_some_and(|evs| evs.iter().any(|e| is_final(e.kind())))
        })
    })
    .await
}

/// Reads the events topic from the start until `done` holds or `timeout`
/// passes; returns all events per message id.
pub async fn collect_events(
    log: &Log,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&HashMap<String, Vec<Event>>) -> bool,
) -> HashMap<String, Vec<Event>> {
    log.ensure_topics(&[topic.to_owned()])
        .await
        .expect("create events topic");
    let group = format!("sluice-test-events-{}", uuid::Uuid::new_v4().simple());
    let mut consumer = log
        .subscribe(&group, &[topic.to_owned()])
        .await
        .expect("subscribe to the events");
    let deadline = Instant::now() + timeout;
    let mut events: HashMap<String, Vec<Event>> = HashMap::new();
    let mut checked = Instant::now();
    while Instant::now() < deadline {
        if checked.elapsed() >= Duration::from_millis(500) {
            if done(&events) {
                break;
            }
            checked = Instant::now();
        }
        // A broker lost during the test makes reads fail for a while: the
        // log recovers, so keep reading until the deadline.
        let records = match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => records,
            Err(err) => {
                eprintln!("reading events failed ({err}); reading again");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for record in records {
            let event = Event::decode(record.payload.as_slice()).expect("events decode");
            events
                .entry(event.message_id.clone())
                .or_default()
                .push(event);
        }
    }
    events
}

pub fn is_final(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Delivered | EventKind::Bounced | EventKind::Expired
    )
}

/// The final event of each message (the last one, if several).
pub fn finals(events: &HashMap<String, Vec<Event>>) -> BTreeMap<String, Event> {
    events
        .iter()
        .filter_map(|(id, evs)| {
            evs.iter()
                .rev()
                .find(|e| is_final(e.kind()))
                .map(|e| (id.clone(), e.clone()))
        })
        .collect()
}

/// Message ids the simulator accepted, from its `Message-ID` header.
pub fn accepted_ids(report: &sluice_sim::Report) -> Vec<String> {
    report
        .messages
        .iter()
        .map(|m| {
            let id = m.message_id.trim_matches(['<', '>']);
            id.split('@').next().unwrap_or(id).to_owned()
        })
        .collect()
}

/// How many times the simulator accepted each recipient address.
pub fn arrivals(report: &sluice_sim::Report) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for m in &report.messages {
        for r in &m.recipients {
            *seen.entry(r.clone()).or_default() += 1;
        }
    }
    seen
}

/// Waits until the simulator accepted `count` distinct recipients; fails
/// with `what` and the count reached after `within`.
pub async fn wait_for_arrivals(sim: &SimHandle, count: usize, within: Duration, what: &str) {
    let start = Instant::now();
    loop {
        let seen = arrivals(&sim.snapshot()).len();
        if seen >= count {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{what}: {seen} of {count} messages arrived within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn addr_of(sim: &SimHandle, provider: &str) -> SocketAddr {
    sim.addr(provider).expect("provider bound")
}

/// A sender node running in this process through `sluice_sender::run`.
pub struct RunningSender {
    pub telemetry: sluice_sender::Telemetry,
    stop: sluice_node::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), sluice_sender::SenderError>>,
}

impl RunningSender {
    /// Starts a node on `log` (the Kafka cluster of `config` when `None`),
    /// serving `GET /metrics` on `metrics` when given.
    pub async fn start(
        config: sluice_sender::SenderConfig,
        log: Option<Log>,
        metrics: Option<tokio::net::TcpListener>,
    ) -> Self {
        let backends = match log {
            Some(log) => sluice_sender::SenderBackends {
                log,
                telemetry: sluice_sender::Telemetry::default(),
                leases: sluice_sender::open_leases(&config)
                    .await
                    .unwrap_or_else(|err| panic!("opening the lease store: {err}")),
            },
            None => sluice_sender::SenderBackends::open(&config)
                .await
                .unwrap_or_else(|err| panic!("this test needs a running Kafka broker. {err}")),
        };
        let telemetry = backends.telemetry.clone();
        let stop = sluice_node::CancellationToken::new();
        let listeners = sluice_sender::SenderListeners { metrics };
        let task = tokio::spawn(sluice_sender::run(
            listeners,
            config,
            backends,
            stop.clone(),
        ));
        Self {
            telemetry,
            stop,
            task,
        }
    }

    /// Stops the node, waits for its drain, and returns its final counters.
    pub async fn stop(self) -> sluice_sender::Stats {
        self.stop.cancel();
        self.task.await.expect("sender task").expect("sender ran");
        self.telemetry.stats.lock().expect("stats").clone()
    }
}
