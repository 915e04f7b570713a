//! The admin commands against a running control server (embedded store).

use clap::Parser;

use super::{AdminCommand, run_admin_to};

/// A control server on 127.0.0.1:0 over an embedded store in a tempdir.
async fn serve() -> sluice_testkit::control::Server {
    sluice_testkit::control::Server::embedded().await
}

#[derive(Parser)]
struct Cli {
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    cmd: AdminCommand,
}

async fn admin(endpoint: &str, args: &[&str]) -> anyhow::Result<String> {
    admin_as(endpoint, None, args).await
}

async fn admin_as(endpoint: &str, token: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
    let cli = Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    let tls = sluice_node::tls::TlsConfig::default();
    run_admin_to((endpoint, token, &tls), cli.cmd, cli.json, &mut out).await?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

#[tokio::test]
async fn admin_commands_against_a_running_server() {
    let server = serve().await;
    let ep = server.addr.to_string();
    let run = |args: &'static [&'static str]| {
        let ep = ep.clone();
        async move {
            admin(&ep, args)
                .await
                .unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
        }
    };
    run(&["pool", "put", "marketing", "--description", "newsletters"]).await;
    assert!(run(&["pools"]).await.contains("marketing"));
    run(&["plan", "put", "new-ip", "--steps", "50,100,250"]).await;
    assert!(run(&["plans"]).await.contains("50, 100, 250"));
    let out = run(&[
        "ip",
        "put",
        "192.0.2.10",
        "--pool",
        "marketing",
        "--warmup",
        "new-ip",
        "--node",
        "s1",
    ])
    .await;
    assert!(out.contains("192.0.2.10"), "{out}");
    let json = run(&["--json", "ips", "--pool", "marketing"]).await;
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(v[0]["warmup_plan"], "new-ip");
    assert_eq!(v[0]["owner_node"], "s1");
    run(&[
        "suppress",
        "acme",
        "bob@example.com",
        "--reason",
        "complaint",
    ])
    .await;
    let list = run(&["--json", "suppressions", "acme"]).await;
    let v: serde_json::Value = serde_json::from_str(&list).expect("valid JSON");
    assert_eq!(v[0]["address"], "bob@example.com");
    assert!(
        run(&["unsuppress", "acme", "bob@example.com"])
            .await
            .contains("removed")
    );
    assert!(run(&["tenants"]).await.contains("tenant"));
    let watched = run(&["--json", "watch", "--count", "2"]).await;
    let first: serde_json::Value =
        serde_json::from_str(watched.lines().next().expect("a line")).expect("JSON line");
    assert_eq!(first["kind"], "pool");
    assert_eq!(watched.lines().count(), 2);

    // Server errors say what is wrong and what to do next.
    let err = admin(&ep, &["ip", "put", "192.0.2.11", "--pool", "nope"])
        .await
        .expect_err("unknown pool");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("pool") && msg.contains("Create it first"),
        "{msg}"
    );
    let err = admin(&ep, &["ip", "put", "300.1.1.1", "--pool", "marketing"])
        .await
        .expect_err("bad address");
    assert!(format!("{err:#}").contains("invalid address"), "{err:#}");
    server.stop().await;

    let err = admin(&ep, &["pools"]).await.expect_err("server is gone");
    assert!(format!("{err:#}").contains("sluice control"), "{err:#}");
}

#[tokio::test]
async fn tenants_providers_sites_and_deletes() {
    let server = serve().await;
    let ep = server.addr.to_string();
    let run = |args: Vec<String>| {
        let ep = ep.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            admin(&ep, &args)
                .await
                .unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    run(args(&["pool", "put", "main"])).await;
    let key = sluice_node::secret::hash_secret("api-key");
    let password = sluice_node::secret::hash_password("pw");
    let out = run(args(&[
        "tenant",
        "put",
        "acme",
        "--domain",
        "acme.example",
        "--pool",
        "main",
        "--rate",
        "10",
        "--api-key-hash",
        &key,
        "--smtp-user",
        &format!("news@acme.example:{password}"),
        "--dkim",
        "acme.example:s1:/keys/acme.pem:ed25519-sha256",
        "--bounce-domain",
        "bounces.acme.example",
    ]))
    .await;
    assert!(out.contains("s1._domainkey.acme.example"), "{out}");
    let json = run(args(&["--json", "tenants"])).await;
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v[0]["api_key_hashes"][0], key.as_str());
    assert_eq!(v[0]["smtp_users"][0]["username"], "news@acme.example");
    assert_eq!(v[0]["dkim_keys"][0]["algorithm"], "ed25519-sha256");
    assert_eq!(v[0]["bounce_domain"], "bounces.acme.example");
    let out = run(args(&[
        "provider",
        "put",
        "microsoft",
        "--per-minute",
        "300",
        "--connections",
        "10",
    ]))
    .await;
    assert!(out.contains("microsoft") && out.contains("300"), "{out}");
    assert!(run(args(&["providers"])).await.contains("microsoft"));
    run(args(&[
        "site",
        "put",
        "gmail",
        "--per-minute",
        "600",
        "--require-tls",
    ]))
    .await;
    assert!(run(args(&["sites"])).await.contains("required"));
    run(args(&["ip", "put", "192.0.2.10", "--pool", "main"])).await;
    let ips = run(args(&["ips"])).await;
    assert!(ips.contains("lease owner"), "{ips}");

    // A pool in use is not deleted; the answer says who uses it.
    let err = admin(&ep, &["delete", "pool", "main"])
        .await
        .expect_err("in use");
    let msg = format!("{err:#}");
    assert!(msg.contains("192.0.2.10") && msg.contains("acme"), "{msg}");
    assert!(msg.contains("Move or delete those"), "{msg}");
    assert!(
        run(args(&["delete", "ip", "192.0.2.10"]))
            .await
            .contains("deleted ip")
    );
    assert!(
        run(args(&["delete", "ip", "192.0.2.10"]))
            .await
            .contains("nothing changed")
    );
    run(args(&["delete", "tenant", "acme"])).await;
    let json = run(args(&["--json", "delete", "pool", "main"])).await;
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["deleted"], true);
    let watched = run(args(&["--json", "watch", "--after", "5", "--count", "1"])).await;
    let v: serde_json::Value = serde_json::from_str(watched.trim()).expect("JSON");
    assert_eq!(v["kind"], "deleted");
    assert_eq!(v["record"]["kind"], "ip");
    server.stop().await;
}

#[tokio::test]
async fn the_token_is_sent_and_missing_tokens_are_explained() {
    let config = sluice_control::ControlConfig {
        credentials: vec![sluice_control::Credential {
            name: "root".into(),
            role: sluice_control::Role::Admin,
            token_hash: sluice_node::secret::hash_secret("s3cret"),
        }],
        ..Default::default()
    };
    let server = sluice_testkit::control::Server::embedded_with(config).await;
    let ep = server.addr.to_string();
    let err = admin(&ep, &["pools"]).await.expect_err("no token");
    let msg = format!("{err:#}");
    assert!(msg.contains("a valid control token is required"), "{msg}");
    assert!(msg.contains("SLUICE_CONTROL_TOKEN"), "{msg}");
    admin_as(&ep, Some("s3cret"), &["pool", "put", "main"])
        .await
        .expect("admin token");
    let pools = admin_as(&ep, Some("s3cret"), &["pools"])
        .await
        .expect("list");
    assert!(pools.contains("main"), "{pools}");
    server.stop().await;
}

#[test]
fn help_texts_teach_with_examples() {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let help = cmd
        .find_subcommand_mut("ip")
        .and_then(|ip| ip.find_subcommand_mut("put"))
        .expect("ip put")
        .render_long_help()
        .to_string();
    assert!(help.contains("sluice admin ip put 192.0.2.10"), "{help}");
    let help = cmd
        .find_subcommand_mut("tenant")
        .and_then(|t| t.find_subcommand_mut("put"))
        .expect("tenant put")
        .render_long_help()
        .to_string();
    assert!(
        help.contains("sluice hash-secret") && help.contains("--dkim"),
        "{help}"
    );
}
