//! The session driven in memory against a scripted peer.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::*;
use crate::smtp::SmtpError;

/// Runs a scripted server: for each expected client line prefix, the reply to
/// send. Returns everything the client wrote.
async fn scripted(
    server: DuplexStream,
    banner: &str,
    script: Vec<(&'static str, &'static str)>,
) -> String {
    let (r, mut w) = tokio::io::split(server);
    let mut r = BufReader::new(r);
    w.write_all(banner.as_bytes()).await.unwrap();
    let mut seen = String::new();
    for (expect, answer) in script {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        seen.push_str(&line);
        assert!(
            line.starts_with(expect),
            "expected {expect:?}, client sent {line:?}"
        );
        if expect == "DATA-BODY" {
            unreachable!()
        }
        if answer.is_empty() {
            continue;
        }
        w.write_all(answer.as_bytes()).await.unwrap();
    }
    let mut rest = String::new();
    let _ = r.read_to_string(&mut rest).await;
    seen.push_str(&rest);
    seen
}

const EHLO_PIPE: &str = "250-sim.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n";
const EHLO_PLAIN: &str = "250 sim.test\r\n";
const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn pipelined_delivery_dot_stuffs_the_body() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(scripted(
        server,
        "220 sim ready\r\n",
        vec![
            ("EHLO relay.test", EHLO_PIPE),
            ("MAIL FROM:<b@x.test>", ""),
            ("RCPT TO:<u@y.test>", ""),
            ("DATA", "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
            ("Subject: t", ""),
            ("", ""),
            ("..leading dot", ""),
            (".", "250 2.0.0 queued as 1\r\n"),
            ("QUIT", "221 bye\r\n"),
        ],
    ));
    let mut s = Session::open(client, "relay.test", T)
        .await
        .unwrap()
        .unwrap();
    assert!(s.caps.pipelining);
    let out = s
        .send(
            "b@x.test",
            "u@y.test",
            b"Subject: t\r\n\r\n.leading dot\r\n",
        )
        .await
        .unwrap();
    assert!(out.delivered(), "{out:?}");
    assert_eq!(out.reply.enhanced.as_deref(), Some("2.0.0"));
    s.quit().await;
    let seen = server.await.unwrap();
    assert!(seen.contains("\r\n..leading dot\r\n.\r\n"), "{seen:?}");
}

#[tokio::test]
async fn refused_recipient_without_pipelining_resets() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(scripted(
        server,
        "220 sim ready\r\n",
        vec![
            ("EHLO", EHLO_PLAIN),
            ("MAIL FROM:", "250 ok\r\n"),
            ("RCPT TO:", "550 5.1.1 no such user\r\n"),
            ("RSET", "250 ok\r\n"),
        ],
    ));
    let mut s = Session::open(client, "relay.test", T)
        .await
        .unwrap()
        .unwrap();
    let out = s.send("b@x.test", "nobody@y.test", b"x\r\n").await.unwrap();
    assert_eq!(out.stage, Stage::RcptTo);
    assert_eq!(out.reply.code, 550);
    assert_eq!(out.reply.enhanced.as_deref(), Some("5.1.1"));
    drop(s);
    server.await.unwrap();
}

#[tokio::test]
async fn pipelined_refusal_with_accepted_data_sends_empty_body_then_rset() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(scripted(
        server,
        "220 sim ready\r\n",
        vec![
            ("EHLO", EHLO_PIPE),
            ("MAIL FROM:", ""),
            ("RCPT TO:", ""),
            ("DATA", "250 ok\r\n452 4.2.2 mailbox full\r\n354 go\r\n"),
            (".", "554 5.5.1 no valid recipients\r\n"),
            ("RSET", "250 ok\r\n"),
        ],
    ));
    let mut s = Session::open(client, "relay.test", T)
        .await
        .unwrap()
        .unwrap();
    let out = s.send("b@x.test", "full@y.test", b"x\r\n").await.unwrap();
    assert_eq!(out.stage, Stage::RcptTo);
    assert_eq!(out.reply.code, 452);
    drop(s);
    server.await.unwrap();
}

#[tokio::test]
async fn refusing_banner_is_an_outcome_not_an_error() {
    let (client, server) = tokio::io::duplex(1024);
    let server = tokio::spawn(scripted(server, "554 5.7.1 go away\r\n", vec![]));
    let Err(out) = Session::open(client, "relay.test", T).await.unwrap() else {
        panic!("banner 554 must refuse")
    };
    assert_eq!(out.stage, Stage::Banner);
    assert_eq!(out.reply.code, 554);
    server.await.unwrap();
}

#[tokio::test]
async fn silent_server_times_out() {
    let (client, _server) = tokio::io::duplex(1024);
    let result = Session::open(client, "relay.test", Duration::from_millis(50)).await;
    assert!(matches!(result, Err(SmtpError::Timeout(_, "banner"))));
}
