//! Counter parts in memory: the recorder's copy of the parts its partitions
//! own ([`crate::record::Part`]), and the folding of a batch's counted
//! events into them. Pure apart from the cache's lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::record::{CounterKey, Deltas, Part, Position};

/// Parts kept at most; the cache starts over beyond (parts are read again).
const MAX_CACHED: usize = 200_000;

/// One counter row of one events partition.
pub type PartKey = (CounterKey, i32);

/// The parts this recorder read or wrote, valid while it owns their
/// partitions: [`PartCache::forget`] on every rebalance.
#[derive(Default)]
pub struct PartCache(Mutex<HashMap<PartKey, Part>>);

impl PartCache {
    /// Which of `keys` are not cached.
    pub fn missing<'a>(&self, keys: impl Iterator<Item = &'a PartKey>) -> Vec<PartKey> {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        keys.filter(|k| !cache.contains_key(*k)).cloned().collect()
    }

    /// The cached part of `key` (nothing yet when not cached).
    pub fn get(&self, key: &PartKey) -> Part {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).copied().unwrap_or_default()
    }

    /// Stores parts read or written.
    pub fn put(&self, parts: impl IntoIterator<Item = (PartKey, Part)>) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > MAX_CACHED {
            cache.clear();
        }
        cache.extend(parts);
    }

    /// Drops every part: another recorder may have moved them on.
    pub fn forget(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The counted events of a batch, per part: `(offset, deltas)` in offset
/// order, and how far the batch reached in each partition.
#[derive(Debug, Default)]
pub struct Tally {
    pub events: BTreeMap<PartKey, Vec<(i64, Deltas)>>,
    pub through: HashMap<i32, i64>,
}

impl Tally {
    /// Notes that the batch read the record at `at` (counted or not).
    pub fn read(&mut self, at: Position) {
        let through = self.through.entry(at.partition).or_insert(at.offset);
        *through = (*through).max(at.offset);
    }

    /// Adds a counted event at `at` to the rows of `keys`.
    pub fn count(&mut self, keys: Vec<CounterKey>, at: Position, deltas: Deltas) {
        for key in keys {
            let entry = self.events.entry((key, at.partition)).or_default();
            entry.push((at.offset, deltas));
        }
    }

    /// Each touched part after the batch: `stored` plus the batch's events
    /// it does not hold yet, reaching as far as the batch read.
    pub fn fold(&self, stored: impl Fn(&PartKey) -> Part) -> Vec<(CounterKey, i32, Part)> {
        self.events
            .iter()
            .map(|(key, events)| {
                let mut part = stored(key);
                for (offset, deltas) in events {
                    part.take(*offset, deltas);
                }
                let reached = self.through.get(&key.1).copied().unwrap_or(-1);
                part.through = part.through.max(reached);
                (key.0.clone(), key.1, part)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Granularity;

    fn key(name: &str) -> CounterKey {
        CounterKey {
            granularity: Granularity::Daily,
            scope: "ip",
            key: name.into(),
            day: "2026-12-01".into(),
            hour: String::new(),
            detail: "gmail".into(),
        }
    }

    fn one() -> Deltas {
        Deltas([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    fn at(partition: i32, offset: i64) -> Position {
        Position { partition, offset }
    }

    /// Replaying a batch over a part that holds it changes nothing; a
    /// replay that overlaps it adds only what the part lacks.
    #[test]
    fn replays_add_nothing_twice() {
        let mut first = Tally::default();
        for offset in 0..10 {
            first.read(at(0, offset));
            first.count(vec![key("a")], at(0, offset), one());
        }
        let written = first.fold(|_| Part::default());
        assert_eq!(written[0].2.deltas.get("delivered"), 10);
        assert_eq!(written[0].2.through, 9);
        let stored = written[0].2;

        let mut overlap = Tally::default();
        for offset in 5..15 {
            overlap.read(at(0, offset));
            overlap.count(vec![key("a")], at(0, offset), one());
        }
        let again = overlap.fold(|_| stored);
        assert_eq!(again[0].2.deltas.get("delivered"), 15);
        assert_eq!(again[0].2.through, 14);
        assert_eq!(overlap.fold(|_| again[0].2)[0].2, again[0].2);
    }

    /// A part reaches as far as its partition was read, even past its own
    /// row's last event; other partitions are their own parts.
    #[test]
    fn parts_reach_the_batch_end_per_partition() {
        let mut tally = Tally::default();
        tally.read(at(0, 3));
        tally.count(vec![key("a")], at(0, 3), one());
        tally.read(at(0, 7));
        tally.read(at(1, 2));
        tally.count(vec![key("a"), key("b")], at(1, 2), one());
        let parts = tally.fold(|_| Part::default());
        let find = |name: &str, p: i32| {
            parts
                .iter()
                .find(|(k, q, _)| k.key == name && *q == p)
                .map(|(_, _, part)| *part)
                .expect("part")
        };
        assert_eq!(find("a", 0).through, 7);
        assert_eq!(find("a", 1).through, 2);
        assert_eq!(find("b", 1).deltas.get("delivered"), 1);
        assert_eq!(parts.len(), 3);
    }

    #[test]
    fn the_cache_forgets() {
        let cache = PartCache::default();
        let k = (key("a"), 0);
        assert_eq!(cache.missing([&k].into_iter()).len(), 1);
        cache.put([(k.clone(), Part::default())]);
        assert!(cache.missing([&k].into_iter()).is_empty());
        cache.forget();
        assert_eq!(cache.missing([&k].into_iter()).len(), 1);
    }
}
