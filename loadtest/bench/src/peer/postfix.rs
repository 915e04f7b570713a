//! A private Postfix instance relaying everything to the sink: its own
//! configuration and queue under the run's work directory, one SMTP
//! listener on loopback, 50 connections to the sink. Fed by Postfix's own
//! `smtp-source`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use sluice_testkit::cluster::{free_addr, wait_listening};
use sluice_testkit::smtp_sink::chown_postfix;

pub struct Postfix {
    master: Child,
    conf: PathBuf,
    pub port: u16,
}

impl Postfix {
    /// Starts an instance under `work/postfix` (an empty queue each time)
    /// relaying to 127.0.0.1:`sink` with `connections` parallel deliveries.
    pub async fn start(work: &Path, sink: u16, connections: usize) -> anyhow::Result<Self> {
        let root = work.join("postfix");
        let _ = std::fs::remove_dir_all(&root);
        let conf = root.join("etc");
        let data = root.join("data");
        for dir in [&conf, &data, &root.join("spool")] {
            std::fs::create_dir_all(dir)?;
        }
        chown_postfix(&data).map_err(|e| anyhow::anyhow!(e))?;
        let port = free_addr().port();
        std::fs::write(conf.join("main.cf"), main_cf(&root, sink, connections))?;
        let master_cf = std::fs::read_to_string("/etc/postfix/master.cf")
            .context("read /etc/postfix/master.cf (apt package postfix)")?;
        std::fs::write(conf.join("master.cf"), master_cf_on(&master_cf, port)?)?;
        allow_config_directory(&conf)?;
        // In the foreground Postfix logs to its stdout: kept in `maillog`.
        let log = std::fs::File::create(root.join("maillog"))?;
        let master = Command::new("postfix")
            .arg("-c")
            .arg(&conf)
            .arg("start-fg")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start postfix")?;
        let addr = ([127, 0, 0, 1], port).into();
        wait_listening(addr, "postfix", std::time::Duration::from_secs(30)).await;
        Ok(Self { master, conf, port })
    }

    /// The process whose tree is the instance.
    pub fn pid(&self) -> u32 {
        self.master.id()
    }

    /// Submits `messages` of `size` bytes over `sessions` connections with
    /// `smtp-source`, each to a distinct recipient; returns when Postfix
    /// has accepted the last one.
    pub async fn feed(
        &self,
        messages: usize,
        size: usize,
        sessions: usize,
    ) -> anyhow::Result<Instant> {
        let status = tokio::process::Command::new("smtp-source")
            .args(["-s", &sessions.to_string(), "-m", &messages.to_string()])
            .args(["-l", &size.to_string(), "-N"])
            .args(["-f", "bench@origin.test", "-t", "user@sink.test"])
            .arg(format!("127.0.0.1:{}", self.port))
            .status()
            .await
            .context("run smtp-source")?;
        if !status.success() {
            bail!("smtp-source failed: {status}");
        }
        Ok(Instant::now())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let stopped = Command::new("postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // `postfix stop` has told the master to exit; wait for it.
        if !matches!(stopped, Ok(s) if s.success()) {
            let _ = self.master.kill();
        }
        let _ = self.master.wait();
    }
}

fn main_cf(root: &Path, sink: u16, connections: usize) -> String {
    format!(
        "compatibility_level = 3.6\n\
         queue_directory = {root}/spool\n\
         data_directory = {root}/data\n\
         maillog_file = /dev/stdout\n\
         myhostname = relay.bench.test\n\
         mydestination =\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         mynetworks = 127.0.0.0/8\n\
         relayhost = [127.0.0.1]:{sink}\n\
         smtpd_relay_restrictions = permit_mynetworks, reject\n\
         default_destination_concurrency_limit = {connections}\n\
         smtp_destination_concurrency_limit = {connections}\n\
         default_process_limit = {processes}\n\
         alias_maps =\n\
         local_recipient_maps =\n\
         smtp_tls_security_level = none\n\
         smtpd_tls_security_level = none\n",
        root = root.display(),
        processes = connections * 2 + 20,
    )
}

/// Debian's master.cf with its public `smtp inet` listener moved to
/// 127.0.0.1:`port` (and not chrooted: the queue is not where a chroot
/// expects it).
fn master_cf_on(original: &str, port: u16) -> anyhow::Result<String> {
    let mut found = false;
    let lines: Vec<String> = original
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() >= 8 && fields[0] == "smtp" && fields[1] == "inet" {
                found = true;
                format!("127.0.0.1:{port} inet n - n - - smtpd")
            } else {
                line.to_owned()
            }
        })
        .collect();
    if !found {
        bail!("/etc/postfix/master.cf has no `smtp inet` line to move");
    }
    Ok(lines.join("\n") + "\n")
}

/// `postfix -c DIR` needs DIR in the default instance's
/// `alternate_config_directories`.
fn allow_config_directory(conf: &Path) -> anyhow::Result<()> {
    let main = Path::new("/etc/postfix/main.cf");
    let text = std::fs::read_to_string(main).unwrap_or_default();
    let dir = conf.display().to_string();
    if text.contains(&dir) {
        return Ok(());
    }
    let status = Command::new("postconf")
        .arg("-e")
        .arg(format!(
            "alternate_config_directories = {}",
            current_alternates(&text)
                .into_iter()
                .chain([dir])
                .collect::<Vec<_>>()
                .join(" ")
        ))
        .status()?;
    if !status.success() {
        bail!("postconf -e alternate_config_directories: {status}");
    }
    Ok(())
}

fn current_alternates(main_cf: &str) -> Vec<String> {
    main_cf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("alternate_config_directories"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}
