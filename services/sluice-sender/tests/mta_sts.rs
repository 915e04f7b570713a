//! MTA-STS end to end, with real parts: the sender on real Kafka, real DNS
//! (a name server on loopback answering MX, A and TXT), a real HTTPS policy
//! server (hyper + rustls, its certificate from a test CA) and the ISP
//! simulator as every domain's MX (`mx.sts.sim`, STARTTLS with its
//! self-signed certificate).
//!
//! One sender trusts the test CA and the simulator's certificate:
//! - `enforced.test` (`enforce`, the MX matches) is delivered; its policy is
//!   fetched once for three messages; an idle opportunistic session of the
//!   same site is not reused for it (a new, verified one is opened), and
//!   the verified one is reused for the next messages;
//! - `stray.test` (`enforce`, the MX is not in the policy) is deferred with
//!   `451 4.7.5` and nothing arrives;
//! - `trial.test` (`testing`, the MX is not in the policy) is delivered;
//! - `down.test` (TXT record, no policy server listening) is delivered.
//!
//! Another sender trusts only the CA: `untrusted.test` (`enforce`, the MX
//! matches) is deferred with `4.7.10` (the certificate does not verify) and
//! nothing arrives.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use hickory_resolver::proto::op::Message;
use hickory_resolver::proto::rr::rdata::{A, MX, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sluice_proto::v1::{Event, EventKind};
use sluice_sender::SenderConfig;
use sluice_sim::SimHandle;
use sluice_testkit::pki::Pki;
use sluice_testkit::sender::*;

const MX: &str = "mx.sts.sim";

const SCENARIO: &str = "seed = 5\n[[provider]]\nname = \"sts\"\nlisten = \"127.0.0.2:0\"\ndomains = [\"enforced.test\", \"stray.test\", \"trial.test\", \"down.test\", \"untrusted.test\"]\nstarttls = true\n";

/// The policy each domain's server serves; `down.test` has none listening.
fn policies() -> HashMap<String, String> {
    let policy = |mode: &str, mx: &str| {
        format!(
            "version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmx: backup.elsewhere.test\r\nmax_age: 86400\r\n"
        )
    };
    HashMap::from([
        (
            "mta-sts.enforced.test".into(),
            policy("enforce", "*.sts.sim"),
        ),
        ("mta-sts.untrusted.test".into(), policy("enforce", MX)),
        (
            "mta-sts.stray.test".into(),
            policy("enforce", "mx.elsewhere.test"),
        ),
        (
            "mta-sts.trial.test".into(),
            policy("testing", "mx.elsewhere.test"),
        ),
    ])
}

/// Requests served, per host name.
type Served = Arc<Mutex<HashMap<String, usize>>>;

/// An HTTPS server on 127.0.0.1 serving `policies` by `Host`.
async fn policy_server(pki: &Pki, policies: HashMap<String, String>) -> (SocketAddr, Served) {
    let names: Vec<&str> = policies.keys().map(String::as_str).collect();
    let issued = pki.issue_for("mta-sts", &names);
    let certs = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key PEM");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Served::default();
    let (policies, counted) = (Arc::new(policies), served.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, policies, counted) =
                (acceptor.clone(), policies.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    std::future::ready(serve(&req, &policies, &counted))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, served)
}

fn serve<B>(
    req: &Request<B>,
    policies: &HashMap<String, String>,
    served: &Served,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split(':').next())
        .unwrap_or_default()
        .to_owned();
    *served.lock().unwrap().entry(host.clone()).or_default() += 1;
    let policy = policies
        .get(&host)
        .filter(|_| req.uri().path() == "/.well-known/mta-sts.txt");
    let (status, body) = match policy {
        Some(policy) => (StatusCode::OK, policy.clone()),
        None => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}

/// DNS: every domain's MX is the simulator; `mta-sts.<domain>` is the
/// policy server (`down.test`'s: an address where nothing listens); every
/// domain publishes `v=STSv1; id=1;`.
fn answer(query: &Message) -> (Message, Duration) {
    let q = &query.queries[0];
    let mut reply = sluice_testkit::dns::reply_to(query);
    let name = q.name().to_ascii().to_lowercase();
    let a = |ip: [u8; 4]| RData::A(A(Ipv4Addr::from(ip)));
    let data = match q.query_type() {
        RecordType::MX if !name.starts_with("mta-sts.") && !name.starts_with(MX) => {
            Some(RData::MX(MX::new(
                10,
                Name::from_ascii(format!("{MX}.")).expect("name"),
            )))
        }
        RecordType::A if name == format!("{MX}.") => Some(a([127, 0, 0, 2])),
        RecordType::A if name == "mta-sts.down.test." => Some(a([127, 0, 0, 3])),
        RecordType::A if name.starts_with("mta-sts.") => Some(a([127, 0, 0, 1])),
        RecordType::TXT if name.starts_with("_mta-sts.") => {
            Some(RData::TXT(TXT::new(vec!["v=STSv1; id=1;".into()])))
        }
        _ => None,
    };
    if let Some(data) = data {
        reply.add_answer(Record::from_rdata(q.name().clone(), 60, data));
    }
    (reply, Duration::ZERO)
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// What a sender under test needs.
struct Setup {
    sim: SimHandle,
    dns: SocketAddr,
    policy_port: u16,
    dir: tempfile::TempDir,
    kafka: sluice_log::KafkaConfig,
}

impl Setup {
    /// A sender config sending from `ip`, trusting `trusted` PEM text, one
    /// connection at a time per site, idle sessions kept 30 s.
    fn config(&self, names: &Names, ip: &str, trusted: &str) -> SenderConfig {
        let trust = self.dir.path().join(format!("trust-{ip}.pem"));
        std::fs::write(&trust, trusted).expect("write the trust file");
        let port = self.sim.addr("sts").expect("bound").port();
        let smtp = format!(
            "[smtp]\nport = {port}\nmta_sts_port = {}\ntls_trust_file = \"{}\"\n",
            self.policy_port,
            trust.display()
        );
        let text = format!(
            "{}\n{}\n[[shaping.ips]]\naddress = \"{ip}\"\npool = \"{}\"\n[shaping.limits.default]\nmessages_per_minute = 6000\nburst = 100\nmax_connections = 1\n",
            with_dns(&base_config(names, &self.kafka.brokers), self.dns)
                .replace("[smtp]\n", &smtp)
                .replace("idle_timeout = \"2s\"", "idle_timeout = \"30s\""),
            site_rules_toml(&self.sim),
            names.pool,
        );
        SenderConfig::from_toml(&text).expect("config")
    }

    /// Connections the simulator accepted from `ip`.
    fn connections(&self, ip: &str) -> u64 {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        let report = self.sim.snapshot();
        report.providers[0]
            .sources
            .iter()
            .filter(|s| s.source_ip == ip)
            .map(|s| s.connections)
            .sum()
    }

    fn arrived(&self, id: &str) -> bool {
        accepted_ids(&self.sim.snapshot()).iter().any(|a| a == id)
    }
}

/// Produces one message to each of `recipients`; waits until each has an
/// event of `kind` (delivered or deferred); returns the first such event
/// of each, in order.
async fn send(
    log: &sluice_log::Log,
    names: &Names,
    recipients: &[(&str, EventKind)],
) -> Vec<Event> {
    let envelopes: Vec<_> = recipients
        .iter()
        .enumerate()
        .map(|(n, (to, _))| envelope(&names.pool, n, to, 512))
        .collect();
    let wanted: Vec<(String, EventKind)> = envelopes
        .iter()
        .zip(recipients)
        .map(|(e, (_, kind))| (e.message_id.clone(), *kind))
        .collect();
    produce(log, &names.outbound, &envelopes).await;
    let first = |events: &HashMap<String, Vec<Event>>, (id, kind): &(String, EventKind)| {
        events
            .get(id)
            .and_then(|evs| evs.iter().find(|e| e.kind() == *kind).cloned())
    };
    // Stop waiting as soon as a message has its event, or a final one
    // (a message delivered where it should have been deferred).
    let settled = |events: &HashMap<String, Vec<Event>>, (id, kind): &(String, EventKind)| {
        events
            .get(id)
            .is_some_and(|evs| evs.iter().any(|e| e.kind() == *kind || is_final(e.kind())))
    };
    let events = collect_events(log, &names.events, Duration::from_secs(60), |events| {
        wanted.iter().all(|w| settled(events, w))
    })
    .await;
    wanted
        .iter()
        .map(|w| {
            first(&events, w)
                .unwrap_or_else(|| panic!("{} got no {:?} event: {:?}", w.0, w.1, events.get(&w.0)))
        })
        .collect()
}

/// The sender that trusts the CA and the simulator's certificate.
async fn trusting_sender(setup: &Setup, trusted: String, served: &Served) {
    const IP: &str = "127.0.0.10";
    let log = kafka_log(&setup.kafka).await;
    let names = Names::new();
    let sender = RunningSender::start(setup.config(&names, IP, &trusted), None, None).await;
    let first = send(
        &log,
        &names,
        &[
            ("u@trial.test", EventKind::Delivered),
            ("u@down.test", EventKind::Delivered),
            ("u@stray.test", EventKind::Deferred),
        ],
    )
    .await;
    let stray = first[2].reply.as_ref().expect("a reply");
    assert_eq!(
        (stray.code, stray.enhanced_code.as_str()),
        (451, "4.7.5"),
        "{stray:?}"
    );
    assert!(
        stray
            .text
            .contains("no MX host of stray.test matches its MTA-STS policy"),
        "{stray:?}"
    );
    let before = setup.connections(IP);
    assert!(before >= 1, "trial.test and down.test went out");

    let enforced = send(&log, &names, &[("a@enforced.test", EventKind::Delivered)]).await;
    assert_eq!(enforced[0].mx_host, MX, "{:?}", enforced[0]);
    assert_eq!(
        setup.connections(IP),
        before + 1,
        "the idle opportunistic session was not reused for enforced.test: a verified one was opened"
    );
    let more = [
        ("b@enforced.test", EventKind::Delivered),
        ("c@enforced.test", EventKind::Delivered),
    ];
    send(&log, &names, &more).await;
    assert_eq!(
        setup.connections(IP),
        before + 1,
        "the verified session carried the next ones"
    );
    sender.stop().await;

    for event in first.iter().take(2).chain(&enforced) {
        assert!(
            setup.arrived(&event.message_id),
            "{} arrived",
            event.message_id
        );
    }
    assert!(
        !setup.arrived(&first[2].message_id),
        "nothing arrived for stray.test"
    );
    let served = served.lock().unwrap().clone();
    assert_eq!(
        served.get("mta-sts.enforced.test"),
        Some(&1),
        "fetched once, then cached: {served:?}"
    );
}

/// The sender that trusts only the CA (the policy server's, not the MX's).
async fn distrusting_sender(setup: &Setup, ca: String) {
    const IP: &str = "127.0.0.11";
    let log = kafka_log(&setup.kafka).await;
    let names = Names::new();
    let sender = RunningSender::start(setup.config(&names, IP, &ca), None, None).await;
    let events = send(&log, &names, &[("u@untrusted.test", EventKind::Deferred)]).await;
    sender.stop().await;
    let reply = events[0].reply.as_ref().expect("a reply");
    assert_eq!(reply.enhanced_code, "4.7.10", "{reply:?}");
    assert!(
        reply.text.to_lowercase().contains("certificate"),
        "{reply:?}"
    );
    assert!(
        !setup.arrived(&events[0].message_id),
        "nothing arrived for untrusted.test"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_policies_are_enforced_tested_and_fail_open() {
    let kafka = kafka().await;
    let sim = start_sim(SCENARIO).await;
    let pki = Pki::new("mta-sts test CA");
    let (policy_addr, served) = policy_server(&pki, policies()).await;
    let dns = sluice_testkit::dns::serve(answer).await;
    let sim_cert = pem(sim
        .tls_certificate_der()
        .expect("the simulator offers STARTTLS"));
    let setup = Setup {
        sim,
        dns,
        policy_port: policy_addr.port(),
        dir: tempfile::tempdir().expect("temp dir"),
        kafka,
    };
    let trusted = format!("{}{sim_cert}", pki.ca_pem);
    tokio::join!(
        trusting_sender(&setup, trusted, &served),
        distrusting_sender(&setup, pki.ca_pem.clone()),
    );
    let served = served.lock().unwrap().clone();
    let asked: HashSet<&str> = served.keys().map(String::as_str).collect();
    for host in [
        "mta-sts.enforced.test",
        "mta-sts.stray.test",
        "mta-sts.trial.test",
        "mta-sts.untrusted.test",
    ] {
        assert!(asked.contains(host), "{host} was asked: {served:?}");
    }
    let report = setup.sim.shutdown().await;
    assert_eq!(report.messages.len(), 5, "{report}");
    assert_eq!(report.total_violations(), 0, "{report}");
}
