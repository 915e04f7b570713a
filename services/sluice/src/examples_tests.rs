//! Every configuration example in `deploy/examples` loads with its role's
//! loader, and every role has one.

use std::path::Path;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/examples")
        .join(name)
}

#[test]
fn every_role_example_loads() {
    let ingest =
        sluice_ingest::IngestConfig::load(Some(&example("ingest.toml"))).expect("ingest.toml");
    assert_eq!(ingest.tenants[0].name, "shop");
    let sender =
        sluice_sender::SenderConfig::load(Some(&example("sender.toml"))).expect("sender.toml");
    assert!(!sender.source_ips().is_empty());
    let recorder = sluice_recorder::RecorderConfig::load(Some(&example("recorder.toml")))
        .expect("recorder.toml");
    assert_eq!(recorder.ledger, sluice_recorder::LedgerKind::Cassandra);
    let control: sluice_control::ControlConfig =
        sluice_node::config::load(Some(&example("control.toml"))).expect("control.toml");
    assert_eq!(control.store, sluice_control::StoreKind::Cassandra);
    assert_eq!(control.credentials.len(), 3, "one credential per role");
    crate::dev::DevConfig::load(Some(&example("dev.toml"))).expect("dev.toml");
    let webhooks = sluice_webhooks::WebhooksConfig::load(Some(&example("webhooks.toml")))
        .expect("webhooks.toml");
    assert!(!webhooks.allow_private_addresses);
    let inbound =
        sluice_inbound::InboundConfig::load(Some(&example("inbound.toml"))).expect("inbound.toml");
    assert!(
        !inbound.http.listen.is_empty(),
        "the example serves the links"
    );
}

#[test]
fn no_example_without_a_role() {
    let known = [
        "ingest.toml",
        "sender.toml",
        "recorder.toml",
        "control.toml",
        "dev.toml",
        "webhooks.toml",
        "inbound.toml",
    ];
    for entry in std::fs::read_dir(example("")).expect("deploy/examples") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            known.contains(&name.as_str()),
            "deploy/examples/{name} is not loaded by any test"
        );
    }
}
