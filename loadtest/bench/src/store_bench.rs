//! Measures the embedded engines a message log could sit on: durable appends
//! (one record per transaction, and 100 per transaction) of 1 KB and 10 KB
//! records, then a sequential read of everything back.
//!
//! ```text
//! cargo run --release -p sluice-loadtest --features bench-all --bin store-bench -- [DIR] [N]
//! ```
//!
//! `DIR` (default: the system temp dir) must be on the disk being measured, not
//! a tmpfs. `N` (default 2000) is the number of single-record appends per size;
//! batched runs write 10×N. Figures are recorded in `docs/message-log.md`.
//! Without `--features bench-all` only fjall (the chosen engine) is measured.

#[path = "machine.rs"]
mod machine;

use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// One engine under test: a log of (partition, offset) → payload.
trait Engine {
    fn name(&self) -> &'static str;
    /// Appends the records in one durable transaction.
    fn append(&mut self, records: &[(u32, u64, &[u8])]) -> Res<()>;
    /// Reads every record back in key order; returns the bytes read.
    fn read_all(&mut self) -> Res<u64>;
}

#[cfg(feature = "bench-redb")]
struct Redb(redb::Database);
#[cfg(feature = "bench-redb")]
const REDB_LOG: redb::TableDefinition<(u32, u64), &[u8]> = redb::TableDefinition::new("log");

#[cfg(feature = "bench-redb")]
impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb 4.6"
    }
    fn append(&mut self, records: &[(u32, u64, &[u8])]) -> Res<()> {
        let tx = self.0.begin_write()?; // Durability::Immediate is the default
        {
            let mut table = tx.open_table(REDB_LOG)?;
            for (p, o, v) in records {
                table.insert((*p, *o), *v)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
    fn read_all(&mut self) -> Res<u64> {
        use redb::ReadableDatabase;
        let tx = self.0.begin_read()?;
        let table = tx.open_table(REDB_LOG)?;
        let mut bytes = 0;
        for entry in table.range::<(u32, u64)>(..)? {
            bytes += entry?.1.value().len() as u64;
        }
        Ok(bytes)
    }
}

struct Fjall(fjall::Database, fjall::Keyspace);

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall 3.1"
    }
    fn append(&mut self, records: &[(u32, u64, &[u8])]) -> Res<()> {
        let mut batch = self.0.batch().durability(Some(fjall::PersistMode::SyncAll));
        for (p, o, v) in records {
            let mut key = p.to_be_bytes().to_vec();
            key.extend_from_slice(&o.to_be_bytes());
            batch.insert(&self.1, key, *v);
        }
        batch.commit()?;
        Ok(())
    }
    fn read_all(&mut self) -> Res<u64> {
        let mut bytes = 0;
        for guard in self.1.iter() {
            bytes += guard.into_inner()?.1.len() as u64;
        }
        Ok(bytes)
    }
}

#[cfg(feature = "bench-sqlite")]
struct Sqlite(rusqlite::Connection);

#[cfg(feature = "bench-sqlite")]
impl Engine for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite (rusqlite 0.43, WAL, synchronous=FULL)"
    }
    fn append(&mut self, records: &[(u32, u64, &[u8])]) -> Res<()> {
        let tx = self.0.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO log (part, off, payload) VALUES (?1, ?2, ?3)")?;
            for (p, o, v) in records {
                stmt.execute(rusqlite::params![p, *o as i64, v])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
    fn read_all(&mut self) -> Res<u64> {
        let mut stmt = self
            .0
            .prepare("SELECT payload FROM log ORDER BY part, off")?;
        let mut rows = stmt.query([])?;
        let mut bytes = 0;
        while let Some(row) = rows.next()? {
            bytes += row.get_ref(0)?.as_blob()?.len() as u64;
        }
        Ok(bytes)
    }
}

fn engines(dir: &Path) -> Res<Vec<Box<dyn Engine>>> {
    let db = fjall::Database::builder(dir.join("fjall")).open()?;
    let ks = db.keyspace("log", fjall::KeyspaceCreateOptions::default)?;
    #[allow(unused_mut)]
    let mut out: Vec<Box<dyn Engine>> = vec![Box::new(Fjall(db, ks))];
    #[cfg(feature = "bench-redb")]
    out.push(Box::new(Redb(redb::Database::create(dir.join("redb"))?)));
    #[cfg(feature = "bench-sqlite")]
    {
        let conn = rusqlite::Connection::open(dir.join("sqlite.db"))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE log (part INTEGER, off INTEGER, payload BLOB, PRIMARY KEY (part, off));",
        )?;
        out.push(Box::new(Sqlite(conn)));
    }
    Ok(out)
}

/// Appends `count` records of `size` bytes, `per_txn` per durable transaction,
/// spread over 8 partitions; returns the seconds taken.
fn append_run(e: &mut dyn Engine, size: usize, count: u64, per_txn: u64, base: u64) -> Res<f64> {
    // Incompressible bytes (xorshift), so no engine gains from compression.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ base;
    let payload: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let start = Instant::now();
    let mut next = base;
    while next < base + count {
        let end = (next + per_txn).min(base + count);
        let batch: Vec<(u32, u64, &[u8])> = (next..end)
            .map(|i| ((i % 8) as u32, i, payload.as_slice()))
            .collect();
        e.append(&batch)?;
        next = end;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn row(engine: &str, size: usize, what: &str, count: u64, secs: f64) {
    let rate = count as f64 / secs;
    let mbs = rate * size as f64 / 1e6;
    println!(
        "| {engine} | {} KB | {what} | {count} | {secs:.2} s | {rate:.0} rec/s | {mbs:.1} MB/s |",
        size / 1000
    );
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let (cpu, cores) = (machine::cpu_model(), machine::cpus());
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let parent: PathBuf = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let n: u64 = args.next().map_or(Ok(2000), |a| a.parse())?;
    let dir = parent.join(format!("store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!("machine: {}; data dir: {}", machine(), dir.display());
    println!(
        "method: durable appends to 8 partitions (each txn fsync'd), then one sequential read of all records; payloads incompressible"
    );
    println!("| engine | record | operation | records | time | rate | throughput |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for mut e in engines(&dir)? {
        let name = e.name();
        let mut base = 0;
        let mut total = 0;
        for size in [1000, 10_000] {
            let single = if size == 1000 { n } else { n / 2 };
            let secs = append_run(e.as_mut(), size, single, 1, base)?;
            row(name, size, "append, 1 per txn", single, secs);
            base += single;
            let batched = single * 10;
            let secs = append_run(e.as_mut(), size, batched, 100, base)?;
            row(name, size, "append, 100 per txn", batched, secs);
            base += batched;
            total += (single + batched) * size as u64;
        }
        let start = Instant::now();
        let bytes = e.read_all()?;
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(bytes, total, "{name}: read back a different amount");
        println!(
            "| {name} | mixed | read all | {base} | {secs:.2} s | {:.0} rec/s | {:.1} MB/s |",
            base as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
