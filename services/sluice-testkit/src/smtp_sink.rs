//! Postfix's `smtp-sink` (apt package `postfix`) as a receiver nobody
//! here wrote. It appends every finished transaction to one dump file; the
//! count is the number of `X-Rcpt-Args:` lines in it (one per recipient),
//! read as the file grows. Errors are strings that say what to do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MARK: &[u8] = b"\nX-Rcpt-Args: ";

/// A running `smtp-sink` on 127.0.0.1:`port`; stopped (and its dumps
/// removed) when dropped.
pub struct Sink {
    child: Child,
    pub port: u16,
    dir: PathBuf,
    /// Bytes of the dump already counted, and its last bytes (a mark may
    /// straddle two reads).
    read: u64,
    tail: Vec<u8>,
    counted: u64,
}

impl Sink {
    /// Starts a sink whose dumps go to a fresh directory under `work`
    /// (which the `postfix` user must be able to enter).
    pub async fn start(work: &Path) -> Result<Self, String> {
        let dir = work.join(format!("sink-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        chown_postfix(&dir)?;
        let port = crate::cluster::free_addr().port();
        let child = Command::new("smtp-sink")
            .args(["-u", "postfix", "-D"])
            .arg(dir.join("dump"))
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!("cannot start smtp-sink ({e}): install the apt package postfix (deploy/test.sh does)")
            })?;
        let addr = ([127, 0, 0, 1], port).into();
        crate::cluster::wait_listening(addr, "smtp-sink", Duration::from_secs(30)).await;
        Ok(Self {
            child,
            port,
            dir,
            read: 0,
            tail: Vec::new(),
            counted: 0,
        })
    }

    /// Recipients received so far.
    pub fn count(&mut self) -> Result<u64, String> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.dump();
        let io = |e: std::io::Error| format!("reading {}: {e}", path.display());
        let mut file = match std::fs::File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            other => other.map_err(io)?,
        };
        file.seek(SeekFrom::Start(self.read)).map_err(io)?;
        let mut window = std::mem::take(&mut self.tail);
        let before = window.len();
        file.read_to_end(&mut window).map_err(io)?;
        self.read += (window.len() - before) as u64;
        self.counted += window.windows(MARK.len()).filter(|w| *w == MARK).count() as u64;
        let keep = window.len().min(MARK.len() - 1);
        self.tail = window[window.len() - keep..].to_vec();
        Ok(self.counted)
    }

    /// The file every finished transaction is appended to. smtp-sink
    /// writes a transaction to a file of its own first (the template and
    /// a random suffix) and appends it here once complete: only this file
    /// is read.
    fn dump(&self) -> PathBuf {
        self.dir.join("dump")
    }

    /// Every recipient received so far, as its `RCPT TO` named it, in the
    /// order received (reads the dump whole: for tests, not benchmarks).
    pub fn recipients(&self) -> Result<Vec<String>, String> {
        let path = self.dump();
        let text = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&text);
        let lines = text.lines().filter_map(|l| l.strip_prefix("X-Rcpt-Args: "));
        let addresses = lines.map(|args| args.split_whitespace().next().unwrap_or(""));
        Ok(addresses
            .map(|a| a.trim_matches(['<', '>']).to_owned())
            .collect())
    }

    /// Waits until `want` recipients arrived (or `limit` passed); when the
    /// count reached it.
    pub async fn wait_for(&mut self, want: u64, limit: Duration) -> Result<Instant, String> {
        let deadline = Instant::now() + limit;
        loop {
            if self.count()? >= want {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                let got = self.counted;
                return Err(format!(
                    "smtp-sink received {got} of {want} within {limit:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Gives `path` to the `postfix` user (Postfix's daemons run as it).
pub fn chown_postfix(path: &Path) -> Result<(), String> {
    let status = Command::new("chown").arg("postfix").arg(path).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!(
            "chown postfix {}: {other:?} (is the apt package postfix installed?)",
            path.display()
        )),
    }
}
