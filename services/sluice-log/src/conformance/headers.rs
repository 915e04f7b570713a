//! Checks of record headers: carried from append to `read` and to group
//! members unchanged and in order, and refused beyond the limits.

use std::time::Duration;

use super::{ALL, poll_exactly, read_exactly};
use crate::{
    Headers, LogError, MAX_HEADER_NAME_BYTES, MAX_HEADER_VALUE_BYTES, MAX_HEADERS, MessageLog,
    NewRecord, header,
};

/// A W3C trace context, as services carry it.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Headers of a record appended with `append_record`, a plain `append`, and
/// records of an `append_batch` with and without headers come back through
/// `read` and through a group member's `poll` exactly as appended: same
/// names, values (also empty and non-UTF-8 ones) and order; none where none
/// were appended.
pub async fn headers_round_trip<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    let (topic, group) = (fresh("headers"), fresh("headers.g"));
    log.create_topic(&topic, 1).await.expect("create");
    let traced = NewRecord::new(&topic, b"traced", b"one")
        .with_header("traceparent", TRACEPARENT)
        .with_header("baggage", [0, 0xff, b'x']);
    let batched = NewRecord::new(&topic, b"batched", b"three")
        .with_header("traceparent", TRACEPARENT)
        .with_header("sluice-empty", Vec::new());
    let want: Vec<(&[u8], Headers)> = vec![
        (b"traced", traced.headers.clone()),
        (b"plain", Vec::new()),
        (b"batched", batched.headers.clone()),
        (b"batched-plain", Vec::new()),
    ];
    let at = log.append_record(traced).await.expect("append_record");
    assert_eq!(at.offset, 0);
    log.append(&topic, b"plain", b"two").await.expect("append");
    let plain = NewRecord::new(&topic, b"batched-plain", b"four");
    log.append_batch(vec![batched, plain])
        .await
        .expect("append_batch");

    let read = read_exactly(log, &topic, 0, 0, want.len()).await;
    let read: Vec<(&[u8], &Headers)> = read.iter().map(|r| (&r.key[..], &r.headers)).collect();
    assert_eq!(read, pairs(&want), "headers through read");
    let polled = {
        let mut member = log
            .subscribe(&group, std::slice::from_ref(&topic))
            .await
            .expect("join");
        poll_exactly(&mut member, want.len()).await
    };
    let polled: Vec<(&[u8], &Headers)> = polled.iter().map(|d| (&d.key[..], &d.headers)).collect();
    assert_eq!(
        polled,
        pairs(&want),
        "headers through a group member's poll"
    );
    assert_eq!(
        header(polled[0].1, "traceparent"),
        Some(TRACEPARENT.as_bytes())
    );
    assert_eq!(header(polled[1].1, "traceparent"), None);
}

fn pairs<'a>(want: &'a [(&'a [u8], Headers)]) -> Vec<(&'a [u8], &'a Headers)> {
    want.iter().map(|(key, headers)| (*key, headers)).collect()
}

/// More than [`MAX_HEADERS`] headers, an empty or too long name, or a value
/// above [`MAX_HEADER_VALUE_BYTES`] are refused with
/// [`LogError::InvalidHeader`], alone and in a batch, and nothing is
/// appended; a record right at every limit is taken and read back.
pub async fn bad_headers_are_refused<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    let topic = fresh("headers.bad");
    log.create_topic(&topic, 1).await.expect("create");
    let record = || NewRecord::new(&topic, b"k", b"v");
    let too_many = (0..=MAX_HEADERS).fold(record(), |r, i| r.with_header(format!("h{i}"), "x"));
    let too_long = record().with_header("traceparent", vec![b'x'; 5000]);
    let unnamed = record().with_header("", "x");
    let long_name = record().with_header("n".repeat(MAX_HEADER_NAME_BYTES + 1), "x");
    for bad in [too_many, too_long, unnamed, long_name] {
        let what = format!("{} headers", bad.headers.len());
        let err = log
            .append_record(bad.clone())
            .await
            .expect_err(&format!("{what}: alone"));
        assert!(
            matches!(err, LogError::InvalidHeader { .. }),
            "{what}: {err}"
        );
        assert!(!err.is_retryable(), "{what}: {err}");
        let err = log
            .append_batch(vec![record(), bad])
            .await
            .expect_err(&format!("{what}: in a batch"));
        assert!(
            matches!(err, LogError::InvalidHeader { .. }),
            "{what}: {err}"
        );
    }
    let none = log
        .read(&topic, 0, 0, ALL, Duration::from_millis(300))
        .await
        .expect("read");
    assert!(none.is_empty(), "refused records wrote {}", none.len());

    let widest = (1..MAX_HEADERS).fold(
        record().with_header(
            "n".repeat(MAX_HEADER_NAME_BYTES),
            vec![7; MAX_HEADER_VALUE_BYTES],
        ),
        |r, i| r.with_header(format!("h{i}"), vec![i as u8; MAX_HEADER_VALUE_BYTES]),
    );
    let at = log
        .append_record(widest.clone())
        .await
        .expect("a record at every header limit");
    let got = read_exactly(log, &topic, 0, at.offset, 1).await;
    assert_eq!(got[0].headers, widest.headers);
}
