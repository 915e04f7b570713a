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
    let cli = Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    run_admin_to(endpoint, cli.cmd, cli.json, &mut out).await?;
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
}
