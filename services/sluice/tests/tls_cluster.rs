//! TLS between real processes: a `sluice control` that requires mutual TLS
//! and credentials, an `sluice ingest` that follows it over `https://` with
//! its own certificate and serves gRPC and HTTP over TLS, the admin CLI,
//! `curl` as a client nobody here wrote, and a certificate replaced on disk
//! while ingest runs. Also: listeners off loopback without TLS or without
//! credentials are refused at start, naming what to configure.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use sluice_node::tls::TlsConfig;
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_testkit::cluster::{
    API_KEY, Tokens, cluster_names, free_addr, numbered_send, spawn_role, tenant, wait_listening,
    write,
};
use sluice_testkit::pki::Pki;
use sluice_testkit::sender::kafka;

const BINARY: &str = env!("CARGO_BIN_EXE_sluice");

fn control_toml(listen: &str, data: &Path, tokens: &Tokens, tls: &str) -> String {
    let admin = sluice_node::secret::hash_secret(&tokens.admin);
    let node = sluice_node::secret::hash_secret(&tokens.node);
    format!(
        "listen = \"{listen}\"\nstore = \"embedded\"\ndata_dir = \"{}\"\ndrain_timeout = \"2s\"\n\n\
         [[credentials]]\nname = \"admin\"\nrole = \"admin\"\ntoken_hash = \"{admin}\"\n\n\
         [[credentials]]\nname = \"nodes\"\nrole = \"node\"\ntoken_hash = \"{node}\"\n\n{tls}",
        data.display()
    )
}

fn tls_toml(dir: &Path, stem: &str, mutual: bool) -> String {
    let ca = dir.join("ca.pem");
    let mut text = format!(
        "[tls]\ncert_file = \"{d}/{stem}.pem\"\nkey_file = \"{d}/{stem}.key\"\nca_file = \"{ca}\"\n",
        d = dir.display(),
        ca = ca.display()
    );
    if mutual {
        text.push_str(&format!("client_ca_file = \"{}\"\n", ca.display()));
    }
    text
}

/// Runs `sluice` with `args` to the end.
async fn sluice(args: &[&str]) -> Output {
    tokio::process::Command::new(BINARY)
        .args(args)
        .env("SLUICE_LOG", "warn")
        .output()
        .await
        .expect("run sluice")
}

/// Starts `sluice <role>` with `config`; it must exit within 30 s, failing,
/// and its standard error is returned.
async fn refused_at_start(role: &str, config: &Path) -> String {
    let args = [role, "--config", config.to_str().expect("utf-8 path")];
    let out = tokio::time::timeout(Duration::from_secs(30), sluice(&args))
        .await
        .unwrap_or_else(|_| panic!("`sluice {role}` kept running instead of refusing"));
    assert!(!out.status.success(), "`sluice {role}` started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `curl` posting one message over HTTPS, trusting `ca`; its output.
async fn curl_send(url: &str, ca: &Path) -> Output {
    let body = r#"{"from":"news@origin.test","recipients":[{"address":"user1@gmail.test"}],
                   "template":{"subject":"over TLS","text":"hello"}}"#;
    tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["-H", &format!("authorization: Bearer {API_KEY}")])
        .args(["-H", "content-type: application/json", "--data", body])
        .arg(format!("{url}/v1/messages"))
        .output()
        .await
        .expect("curl is installed (apt: curl)")
}

/// `curl` getting `url` over HTTPS, trusting `ca`, with `extra` arguments
/// (a token header, a client certificate); its stdout.
async fn curl_get(url: &str, ca: &Path, extra: &[String]) -> String {
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(extra)
        .arg(url)
        .output()
        .await
        .expect("curl is installed (apt: curl)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `[metrics]` on `addr`, scraped with the token in `token_file`.
fn metrics_toml(addr: std::net::SocketAddr, token_file: &Path) -> String {
    format!(
        "\n[metrics]\nlisten = \"{addr}\"\ntoken_file = \"{}\"\n",
        token_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_talk_over_mutual_tls_and_certificates_rotate_without_restart() {
    let kafka = kafka().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let tokens = Tokens::new(d);
    let names = cluster_names();
    let pki = Pki::new("cluster CA");
    let ca = pki.write_ca(d);
    pki.issue("control").write(d, "control");
    pki.issue("ingest").write(d, "ingest");
    let (admin_cert, admin_key) = pki.issue("operator").write(d, "admin");

    let control = free_addr();
    let control_metrics = free_addr();
    let tls = tls_toml(d, "control", true) + &metrics_toml(control_metrics, &tokens.node_file);
    let config = control_toml(&control.to_string(), &d.join("control-data"), &tokens, &tls);
    let path = write(d, "control.toml", &config);
    let _control = spawn_role(BINARY, "control", &path, &[], "warn");
    wait_listening(control, "sluice control", Duration::from_secs(60)).await;
    let control_url = format!("https://127.0.0.1:{}", control.port());

    // The admin client: with the operator's certificate, it is served.
    let admin_tls = TlsConfig {
        ca_file: Some(ca.clone()),
        cert_file: Some(admin_cert.clone()),
        key_file: Some(admin_key.clone()),
        ..TlsConfig::default()
    };
    let mut admin =
        sluice_control_client::client_over(&control_url, Some(&tokens.admin), &admin_tls)
            .await
            .expect("admin over mutual TLS");
    let pool = sluice_proto::v1::Pool {
        name: names.pool.clone(),
        description: "tls test".into(),
    };
    admin.put_pool(pool).await.expect("put pool");
    admin
        .put_tenant(tenant(&names.pool, false))
        .await
        .expect("put tenant");

    // The CLI, with and without a client certificate.
    let (ca_s, cert_s, key_s) = (
        ca.to_str().unwrap(),
        admin_cert.to_str().unwrap(),
        admin_key.to_str().unwrap(),
    );
    let base = [
        "admin",
        "--endpoint",
        &control_url,
        "--token",
        &tokens.admin,
    ];
    let mut with_cert = base.to_vec();
    with_cert.extend([
        "--ca-file",
        ca_s,
        "--client-cert",
        cert_s,
        "--client-key",
        key_s,
    ]);
    with_cert.push("pools");
    let out = sluice(&with_cert).await;
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listed.contains(&names.pool), "{listed}");
    let mut without_cert = base.to_vec();
    without_cert.extend(["--ca-file", ca_s, "pools"]);
    let out = sluice(&without_cert).await;
    assert!(!out.status.success(), "served without a client certificate");
    let plain_url = format!("http://{control}");
    let out = sluice(&[
        "admin",
        "--endpoint",
        &plain_url,
        "--token",
        &tokens.admin,
        "pools",
    ])
    .await;
    assert!(!out.status.success(), "a TLS control answered plaintext");

    // Ingest follows control over https with its own certificate.
    let (grpc, http, ingest_metrics) = (free_addr(), free_addr(), free_addr());
    let prefix = names.outbound.strip_suffix(&names.pool).expect("prefix");
    let ingest = format!(
        "pools = []\n\n[listen]\ngrpc = \"{grpc}\"\nhttp = \"{http}\"\nsmtp_submission = \"\"\nsmtp_implicit_tls = \"\"\n\n\
         [kafka]\nbrokers = \"{brokers}\"\noutbound_topic_prefix = \"{prefix}\"\nevents_topic = \"{events}\"\n\n\
         [unsubscribe]\nbase_url = \"https://u.sluice.test/u\"\nsecret = \"tls-test-secret-tls-test-secret-0123\"\n\n\
         [control]\naddr = \"{control_url}\"\ntoken_file = \"{token}\"\nstartup_timeout = \"60s\"\n\n{tls}",
        brokers = kafka.brokers,
        events = names.events,
        token = tokens.node_file.display(),
        tls = tls_toml(d, "ingest", false) + &metrics_toml(ingest_metrics, &tokens.node_file),
    );
    let path = write(d, "ingest.toml", &ingest);
    let _ingest = spawn_role(BINARY, "ingest", &path, &[], "warn");
    wait_listening(grpc, "sluice ingest gRPC", Duration::from_secs(60)).await;
    wait_listening(http, "sluice ingest HTTP", Duration::from_secs(60)).await;

    // gRPC over TLS: accepted (ingest had the tenant from control over mTLS).
    let client_tls = TlsConfig {
        ca_file: Some(ca.clone()),
        ..TlsConfig::default()
    };
    let grpc_url = format!("https://127.0.0.1:{}", grpc.port());
    let endpoint = sluice_node::tls::endpoint(&grpc_url, &client_tls).expect("endpoint");
    let mut client = IngestClient::new(endpoint.connect().await.expect("gRPC over TLS"));
    let accepted = client
        .send(numbered_send(1))
        .await
        .expect("accepted over TLS");
    assert_eq!(accepted.into_inner().recipients.len(), 1);
    let plain = IngestClient::connect(format!("http://{grpc}")).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c.send(numbered_send(2)).await.is_err(),
    };
    assert!(refused, "ingest's TLS listener answered plaintext gRPC");

    // Each role's metrics endpoint, over TLS with its token (and control's
    // with a client certificate: its listeners require one).
    let bearer = vec![
        "-H".to_owned(),
        format!("authorization: Bearer {}", tokens.node),
    ];
    let ingest_url = format!("https://127.0.0.1:{}", ingest_metrics.port());
    let scraped = curl_get(&format!("{ingest_url}/metrics"), &ca, &bearer).await;
    assert!(
        scraped.contains("sluice_ingest_submissions_total{door=\"grpc\",outcome=\"accepted\"} 1"),
        "{scraped}"
    );
    assert!(
        scraped.contains("# UNIT sluice_ingest_signing_seconds seconds"),
        "{scraped}"
    );
    let anonymous = curl_get(&format!("{ingest_url}/metrics"), &ca, &[]).await;
    assert!(
        anonymous.contains("bearer token is required"),
        "{anonymous}"
    );
    let mut certified = bearer.clone();
    for (flag, file) in [("--cert", &admin_cert), ("--key", &admin_key)] {
        certified.push(flag.to_owned());
        certified.push(file.display().to_string());
    }
    let control_url = format!("https://127.0.0.1:{}", control_metrics.port());
    let scraped = curl_get(&format!("{control_url}/metrics"), &ca, &certified).await;
    assert!(
        scraped.contains("sluice_control_watchers 1"),
        "ingest watches: {scraped}"
    );
    assert!(
        scraped.contains("# HELP sluice_control_revision "),
        "{scraped}"
    );
    // Readiness asks the role's back end (control: its store); no token.
    let certificate_only = certified[2..].to_vec();
    let ready = curl_get(&format!("{control_url}/readyz"), &ca, &certificate_only).await;
    assert_eq!(ready, "ready\n");
    let ready = curl_get(&format!("{ingest_url}/readyz"), &ca, &[]).await;
    assert_eq!(ready, "ready\n");

    // HTTP over TLS, with curl.
    let http_url = format!("https://127.0.0.1:{}", http.port());
    let out = curl_send(&http_url, &ca).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("message_id"), "{said}");

    // A new certificate from another CA replaces ingest's on disk: within
    // seconds, curl trusting only the new CA is served, without a restart.
    let renewed = Pki::new("renewed CA");
    let new_ca = d.join("new-ca.pem");
    std::fs::write(&new_ca, &renewed.ca_pem).expect("write");
    let before = curl_send(&http_url, &new_ca).await;
    assert!(!before.status.success(), "the new CA was trusted too early");
    renewed.issue("ingest").write(d, "ingest");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = curl_send(&http_url, &new_ca).await;
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains("message_id"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn listeners_off_loopback_without_tls_or_credentials_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let tokens = Tokens::new(d);
    let pki = Pki::new("cluster CA");
    pki.write_ca(d);
    pki.issue("control").write(d, "control");
    let data = d.join("data");

    let open = control_toml("0.0.0.0:0", &data, &tokens, "");
    let err = refused_at_start("control", &write(d, "plain.toml", &open)).await;
    assert!(err.contains("listen (0.0.0.0:"), "{err}");
    assert!(err.contains("set tls.cert_file and tls.key_file"), "{err}");

    let tls = tls_toml(d, "control", false);
    let anonymous = format!(
        "listen = \"0.0.0.0:0\"\nstore = \"embedded\"\ndata_dir = \"{}\"\nallow_unauthenticated = true\n\n{tls}",
        data.display()
    );
    let err = refused_at_start("control", &write(d, "anon.toml", &anonymous)).await;
    assert!(err.contains("without credentials"), "{err}");

    let http = "[listen]\ngrpc = \"\"\nhttp = \"0.0.0.0:0\"\nsmtp_submission = \"\"\nsmtp_implicit_tls = \"\"\n\n\
                [unsubscribe]\nbase_url = \"https://u.sluice.test/u\"\nsecret = \"tls-test-secret-tls-test-secret-0123\"\n";
    let err = refused_at_start("ingest", &write(d, "ingest.toml", http)).await;
    assert!(err.contains("listen.http (0.0.0.0:"), "{err}");
}
