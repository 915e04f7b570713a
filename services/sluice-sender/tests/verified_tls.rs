//! A site that requires TLS gets the server's certificate verified: the
//! simulator's self-signed certificate is refused (the message is deferred
//! with 4.7.10, nothing arrives) until the sender trusts exactly that
//! certificate through `smtp.tls_trust_file`, and then the message is
//! delivered. Opportunistic TLS to other sites stays unverified (the other
//! tests deliver through the same simulator certificate without trusting it).

use std::time::Duration;

use base64::Engine;
use sluice_proto::v1::EventKind;
use sluice_sender::SenderConfig;
use sluice_testkit::sender::*;

const SCENARIO: &str = "seed = 3\n[[provider]]\nname = \"secure\"\nlisten = \"127.0.0.2:0\"\ndomains = [\"secure.test\"]\nstarttls = true\n";

/// `cert` as a PEM file in `dir`.
fn pem_file(dir: &std::path::Path, cert: &[u8]) -> std::path::PathBuf {
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    let path = dir.join("trust.pem");
    std::fs::write(&path, pem).expect("write the PEM file");
    path
}

/// Sends one message to the site that requires TLS; returns its events.
async fn send_one(sim: &sluice_sim::SimHandle, trust: Option<&std::path::Path>) -> Vec<EventKind> {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let trust_line = trust.map_or(String::new(), |p| {
        format!("tls_trust_file = \"{}\"\n", p.display())
    });
    let config = format!(
        "{}\n{}\n{}\n{}",
        base_config(&names, &kafka.brokers).replace(
            "[smtp]\n",
            &format!("[smtp]\nrequire_tls_sites = [\"secure\"]\n{trust_line}")
        ),
        routes_toml(sim, &[("secure", &["secure.test"])]),
        site_rules_toml(sim),
        ips_toml(&names.pool, 1),
    );
    let config = SenderConfig::from_toml(&config).expect("config");
    let message = envelope(&names.pool, 1, "user@secure.test", 512);
    let id = message.message_id.clone();
    produce(&log, &names.outbound, &[message]).await;
    let sender = RunningSender::start(config, None, None).await;
    let events = collect_events(&log, &names.events, Duration::from_secs(60), |e| {
        e.get(&id).is_some_and(|evs| {
            evs.iter()
                .any(|ev| matches!(ev.kind(), EventKind::Delivered | EventKind::Deferred))
        })
    })
    .await;
    sender.stop().await;
    let mine = events.get(&id).cloned().unwrap_or_default();
    if let Some(deferred) = mine.iter().find(|e| e.kind() == EventKind::Deferred) {
        let reply = deferred.reply.as_ref().expect("a reply");
        assert_eq!(reply.enhanced_code, "4.7.10", "{reply:?}");
        assert!(
            reply.text.to_lowercase().contains("certificate"),
            "the reply says why: {reply:?}"
        );
    }
    mine.iter().map(|e| e.kind()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_requires_tls_gets_a_verified_certificate() {
    let sim = start_sim(SCENARIO).await;
    let cert = sim
        .tls_certificate_der()
        .expect("the simulator offers STARTTLS")
        .to_vec();

    let untrusted = send_one(&sim, None).await;
    assert_eq!(
        untrusted.first(),
        Some(&EventKind::Deferred),
        "{untrusted:?}"
    );
    assert!(!untrusted.contains(&EventKind::Delivered), "{untrusted:?}");
    assert_eq!(sim.snapshot().messages.len(), 0, "nothing arrived");

    let dir = tempfile::tempdir().expect("temp dir");
    let trusted = send_one(&sim, Some(&pem_file(dir.path(), &cert))).await;
    assert_eq!(trusted.first(), Some(&EventKind::Delivered), "{trusted:?}");
    let report = sim.shutdown().await;
    assert_eq!(report.messages.len(), 1, "{report}");
}
