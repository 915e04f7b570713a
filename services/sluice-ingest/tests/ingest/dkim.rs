//! DKIM signatures checked by dkimpy, including the bodies that trip
//! mail-auth 0.13.3's relaxed body hash (trailing whitespace-only lines).

use sluice_proto::v1::{Recipient, SendRequest, send_request};

use crate::common::{self, ACME_KEY, Options};
use crate::grpc::{authed, connect};

const BODIES: &[&str] = &[
    "end\r\n  \r\n",
    "end\r\n\t\r\n\r\n",
    "end\r\n \t \r\n\r\n  ",
    "end  \r\n\t\r\n",
    "a\r\n \r\n\r\nb\r\n",
    "plain body\r\n",
    "",
];

fn raw(from: &str, body: &str) -> SendRequest {
    SendRequest {
        recipients: vec![Recipient {
            address: "ann@example.org".into(),
            ..Default::default()
        }],
        content: Some(send_request::Content::Raw(
            format!("From: {from}\r\nTo: ann@example.org\r\nSubject: ws\r\n\r\n{body}")
                .into_bytes(),
        )),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ed25519_signatures_verify_with_dkimpy_even_with_trailing_whitespace() {
    let node = common::start(Options::default()).await;
    let mut client = connect(&node).await;
    let mut sent = 0;
    for from in ["news@acme.example", "news@ed.acme.example"] {
        for body in BODIES {
            client
                .send(authed(raw(from, body), ACME_KEY))
                .await
                .expect("send");
            sent += 1;
        }
    }
    let envelopes = node.envelopes("shared", sent).await;
    let contents: Vec<_> = envelopes.iter().map(|e| e.content.clone()).collect();
    let algorithms: Vec<_> = contents
        .iter()
        .filter_map(|c| common::header(c, "DKIM-Signature"))
        .map(|h| {
            if h.contains("a=ed25519-sha256") {
                "ed25519"
            } else {
                "rsa"
            }
        })
        .collect();
    assert_eq!(
        algorithms.iter().filter(|a| **a == "rsa").count(),
        BODIES.len()
    );
    assert_eq!(
        algorithms.iter().filter(|a| **a == "ed25519").count(),
        BODIES.len()
    );
    common::dkimpy_verify(&node, &contents).expect("dkimpy verifies every signature");
    node.stop().await;
}
