//! The consumer lag of a Kafka group member
//! ([`crate::GroupConsumer::lag`]): per partition of its assignment, the
//! high watermark minus the group's committed offset (or the member's
//! position, or the low watermark, where there is none yet). Every call
//! blocks (the committed offsets and the watermarks are broker requests), so
//! it runs on tokio's blocking pool.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{LogError, PartitionLag};

/// Longest wait for one broker request of a measurement. Short: the
/// measurement holds a blocking thread while it waits.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest one measurement goes on asking; partitions not reached by then
/// are left out of it (and from the gauge until a later measurement
/// reaches them).
const BUDGET: Duration = Duration::from_secs(4);

/// The lag of every partition `consumer` is assigned, sorted. Blocking, for
/// at most about [`BUDGET`] plus one [`ASK_TIMEOUT`].
/// `owned` is the member's assignment and `position` its read positions;
/// `watcher` (a client of the group that never joins it) asks the brokers.
pub(super) fn member_lag(
    watcher: &BaseConsumer,
    owned: TopicPartitionList,
    position: &TopicPartitionList,
    brokers: &str,
) -> Result<Vec<PartitionLag>, LogError> {
    let fail = |err| LogError::from_kafka(err, brokers, None);
    if owned.count() == 0 {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let committed = watcher
        .committed_offsets(owned.clone(), ASK_TIMEOUT)
        .map_err(fail)?;
    let mut lags = Vec::with_capacity(owned.count());
    for elem in owned.elements() {
        if started.elapsed() > BUDGET {
            break;
        }
        let (topic, partition) = (elem.topic(), elem.partition());
        let (low, high) = watcher
            .fetch_watermarks(topic, partition, ASK_TIMEOUT)
            .map_err(|err| LogError::from_kafka(err, brokers, Some(topic)))?;
        let done = offset_of(&committed, topic, partition)
            .or_else(|| offset_of(position, topic, partition))
            .unwrap_or(low);
        lags.push(PartitionLag::new(topic, partition, high, done));
    }
    lags.sort();
    Ok(lags)
}

/// The offset `tpl` holds for `topic`/`partition`, if it is a real one
/// (not "none yet", "end" and the like).
fn offset_of(tpl: &TopicPartitionList, topic: &str, partition: i32) -> Option<i64> {
    match tpl.find_partition(topic, partition)?.offset() {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_offsets_count() {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Offset(7))
            .expect("offset");
        tpl.add_partition_offset("t", 1, Offset::Invalid)
            .expect("invalid");
        assert_eq!(offset_of(&tpl, "t", 0), Some(7));
        assert_eq!(offset_of(&tpl, "t", 1), None);
        assert_eq!(offset_of(&tpl, "t", 2), None);
        assert_eq!(offset_of(&tpl, "u", 0), None);
    }
}
