//! Shared helpers: reachable servers, a fresh keyspace/topic/group per test,
//! event builders, a running recorder, committed offsets, a cuttable proxy.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use prost::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use scylla::client::session::Session;
use sluice_cql::CqlConfig;
use sluice_log::KafkaConfig;
use sluice_node::Span;
use sluice_proto::v1::{BounceClass, Event, EventKind, SmtpReply};
use sluice_recorder::{Metrics, RecorderConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const PARTITIONS: i32 = 3;

pub async fn kafka() -> KafkaConfig {
    let config = KafkaConfig::from_env("sluice-recorder-test");
    if let Err(err) = sluice_log::probe(&config, Duration::from_secs(10)).await {
        panic!("this test needs a running Kafka broker. {err}");
    }
    config
}

pub async fn cassandra() -> Session {
    match sluice_cql::connect(&CqlConfig::from_env()).await {
        Ok(session) => session,
        Err(err) => panic!("this test needs a running Cassandra node. {err}"),
    }
}

/// A recorder configuration with its own keyspace (migrated), topic
/// (created) and group, pointed at the servers named by the environment.
pub async fn fresh_config() -> (RecorderConfig, Session) {
    let kafka = kafka().await;
    let session = cassandra().await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let config = RecorderConfig {
        brokers: kafka.brokers.clone(),
        cassandra: CqlConfig::from_env().contact_points,
        keyspace: format!("rec_{}", &id[..20]),
        topic: format!("sluice.test.events.{id}"),
        group: format!("sluice-recorder-test-{id}"),
        batch_max_events: 200,
        batch_max_wait: Span(50),
        retry_initial: Span(50),
        retry_max: Span(500),
        reputation: sluice_recorder::ReputationConfig {
            interval: Span::secs(1),
            ..Default::default()
        },
        credentials: sluice_testkit::query::credentials(),
        ..RecorderConfig::default()
    };
    sluice_cql::migrate(&session, &config.keyspace, &config.replication)
        .await
        .expect("migrate fresh keyspace");
    sluice_log::create_topic(&kafka, &config.topic, PARTITIONS)
        .await
        .expect("create topic");
    (config, session)
}

pub async fn drop_keyspace(session: &Session, ks: &str) {
    sluice_testkit::cql::drop_keyspace(session, ks).await;
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// An event of `kind` for `message_id`, sent now from `ip` to `site`.
pub fn event(kind: EventKind, message_id: &str, ip: &str, site: &str) -> Event {
    Event {
        event_id: uuid::Uuid::new_v4().to_string(),
        kind: kind.into(),
        message_id: message_id.into(),
        tenant: "acme".into(),
        pool: "shared".into(),
        campaign: "spring".into(),
        recipient: format!("{message_id}@example.com"),
        at: Some(prost_types::Timestamp {
            seconds: now_secs(),
            nanos: 0,
        }),
        source_ip: ip.into(),
        site: site.into(),
        reply: Some(SmtpReply {
            code: 250,
            text: "ok".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn bounce(message_id: &str, ip: &str, site: &str, class: BounceClass) -> Event {
    Event {
        bounce_class: class.into(),
        ..event(EventKind::Bounced, message_id, ip, site)
    }
}

/// Produces raw payloads keyed by index, all acknowledged.
pub async fn produce_raw(config: &RecorderConfig, payloads: Vec<Vec<u8>>) {
    let kafka = KafkaConfig::from_env("sluice-recorder-test");
    let producer: FutureProducer = kafka.producer().create().expect("producer");
    let sends = payloads.iter().enumerate().map(|(i, payload)| {
        let key = format!("k{i}");
        let producer = &producer;
        let topic = config.topic.as_str();
        async move {
            let record = FutureRecord::to(topic).key(&key).payload(payload);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(err, _)| err)
        }
    });
    try_join_all(sends).await.expect("every event acknowledged");
}

pub async fn produce(config: &RecorderConfig, events: &[Event]) {
    produce_raw(config, events.iter().map(Message::encode_to_vec).collect()).await;
}

/// A recorder running in this process.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    stop: sluice_node::CancellationToken,
    task: JoinHandle<Result<(), sluice_recorder::RecorderError>>,
}

pub async fn start(config: &RecorderConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let metrics = Arc::new(Metrics::default());
    let stop = sluice_node::CancellationToken::new();
    // Opening waits for Cassandra (with retries) like `sluice recorder` does.
    let (config, token, node_metrics) = (config.clone(), stop.clone(), metrics.clone());
    let task = tokio::spawn(async move {
        let mut backends = sluice_recorder::RecorderBackends::open(&config, &token).await?;
        backends.metrics = node_metrics;
        let listeners = sluice_recorder::RecorderListeners {
            query: listener,
            metrics: None,
        };
        sluice_recorder::run(listeners, config, backends, token).await
    });
    Running {
        addr,
        metrics,
        stop,
        task,
    }
}

impl Running {
    /// Asks for shutdown and waits for a clean exit.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("recorder stops within 30 s")
            .expect("recorder task")
            .expect("recorder exits cleanly");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sum over the topic's partitions of the group's committed offsets.
pub async fn committed(config: &RecorderConfig) -> i64 {
    let kafka = KafkaConfig::from_env("sluice-recorder-test-offsets");
    let (topic, group) = (config.topic.clone(), config.group.clone());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka.consumer(&group).create().expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&topic, p);
        }
        let offsets = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        offsets
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => n,
                _ => 0,
            })
            .sum()
    })
    .await
    .expect("offset task")
}

/// Reads one daily counter column summed over the details of a partition
/// and the parts of every events partition (the recorder writes nothing
/// else since schema version 12).
pub async fn daily(session: &Session, ks: &str, scope: &str, key: &str, column: &str) -> i64 {
    let day = sluice_recorder::time::day_of(now_secs());
    let cql = format!(
        "SELECT {column} FROM {ks}.daily_counter_parts WHERE scope = ? AND key = ? AND day = ?"
    );
    let rows = session
        .query_unpaged(cql, (scope, key, day))
        .await
        .expect("select counter parts")
        .into_rows_result()
        .expect("rows");
    rows.rows::<(Option<i64>,)>()
        .expect("typed")
        .map(|r| r.expect("row").0.unwrap_or(0))
        .sum()
}

/// A TCP proxy to a real server that a test can cut (closing every
/// connection and refusing new ones) and re-open.
pub struct Proxy {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: String, open: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (tx, rx) = watch::channel(open);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*rx.borrow() {
                    drop(client);
                    continue;
                }
                tokio::spawn(pipe(client, upstream.clone(), rx.clone()));
            }
        });
        Proxy { addr, open: tx }
    }

    pub fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }
}

async fn pipe(mut client: TcpStream, upstream: String, mut open: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = open.wait_for(|o| !*o) => {}
    }
}

/// The record position `(partition, offset)`.
pub fn pos(partition: i32, offset: i64) -> sluice_recorder::record::Position {
    sluice_recorder::record::Position { partition, offset }
}

/// Writes one event's rows.
pub async fn rows<L: sluice_recorder::Ledger>(l: &L, e: &Event, now: i64) {
    l.write_rows(&[e], now).await.expect("write rows");
}

/// Claims one event for the record at `at`.
pub async fn claim_one<L: sluice_recorder::Ledger>(
    l: &L,
    e: &Event,
    at: sluice_recorder::record::Position,
) -> sluice_recorder::Claim {
    l.claim(&[(e, at)]).await.expect("claim")[0]
}

/// Adds `deltas` to a counter row through its part of events partition 0,
/// as the next offset of that partition.
pub async fn add<L: sluice_recorder::Ledger>(
    l: &L,
    key: &sluice_recorder::record::CounterKey,
    deltas: &sluice_recorder::record::Deltas,
) {
    let keys = [(key.clone(), 0)];
    let mut part = l.parts(&keys).await.expect("parts")[0];
    part.deltas.add(deltas);
    part.through += 1;
    l.put_parts(&[(key.clone(), 0, part)])
        .await
        .expect("put parts");
}
