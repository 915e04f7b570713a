use proptest::prelude::*;

use super::*;

async fn parse(input: &str) -> Result<Reply, ReplyError> {
    read_reply(&mut input.as_bytes(), 4098).await
}

#[tokio::test]
async fn single_line_with_enhanced_code() {
    let r = parse("421 4.7.28 Our system has detected an unusual rate\r\n")
        .await
        .expect("reply");
    assert_eq!(r.code, 421);
    assert_eq!(r.enhanced.as_deref(), Some("4.7.28"));
    assert_eq!(r.text, "Our system has detected an unusual rate");
    assert!(r.is_transient() && r.closes() && !r.is_positive());
    assert_eq!(
        r.line(),
        "421 4.7.28 Our system has detected an unusual rate"
    );
}

#[tokio::test]
async fn multi_line_reply_joins_text_and_strips_every_enhanced_code() {
    let r = parse("550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n")
        .await
        .expect("reply");
    assert_eq!(r.text, "first\nsecond\nthird");
    assert!(r.is_permanent());
    let bare = parse("250\r\n").await.expect("reply");
    assert_eq!((bare.code, bare.text.as_str()), (250, ""));
    let lf = parse("354 go ahead\n").await.expect("reply");
    assert_eq!(lf.text, "go ahead");
}

#[tokio::test]
async fn garbage_is_a_protocol_error_quoting_the_line() {
    let text = parse("HTTP/1.1 400 Bad Request\r\n")
        .await
        .expect_err("garbage")
        .to_string();
    assert!(text.contains("not an SMTP reply"), "{text}");
    assert!(text.contains("HTTP/1.1"), "{text}");
    for bad in [
        "199 low\r\n",
        "600 high\r\n",
        "25\r\n",
        "250x\r\n",
        "2é0 x\r\n",
    ] {
        assert!(
            matches!(parse(bad).await, Err(ReplyError::Protocol { .. })),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn enhanced_code_class_must_match() {
    let r = parse("550 4.1.1 odd\r\n").await.expect("reply");
    assert_eq!(r.enhanced, None);
    assert_eq!(r.text, "4.1.1 odd");
    let r = parse("451 4.7.500 Server busy\r\n").await.expect("reply");
    assert_eq!(r.enhanced.as_deref(), Some("4.7.500"));
    assert_eq!(
        parse("451 4.7.5000 x\r\n").await.expect("reply").enhanced,
        None
    );
}

#[tokio::test]
async fn the_end_of_the_stream_and_bad_shapes() {
    assert!(matches!(
        parse("250-first\r\n").await,
        Err(ReplyError::Closed)
    ));
    assert!(matches!(parse("").await, Err(ReplyError::Closed)));
    assert!(matches!(
        parse("250 cut").await,
        Err(ReplyError::Protocol { .. })
    ));
    assert!(parse("250-a\r\n251 b\r\n").await.is_err());
    let long = format!("250 {}\r\n", "x".repeat(5000));
    assert!(matches!(
        parse(&long).await,
        Err(ReplyError::Protocol { .. })
    ));
    let many = "250-x\r\n".repeat(200);
    assert!(matches!(
        parse(&many).await,
        Err(ReplyError::Protocol { .. })
    ));
}

#[test]
fn replies_go_on_the_wire_with_dashes_until_the_last_line() {
    let ehlo = Reply::new(250, "mx.test\nPIPELINING\nSIZE 10");
    assert_eq!(ehlo.enhanced, None);
    assert_eq!(
        ehlo.to_wire(),
        b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
    );
    let refusal = Reply::new(550, "5.1.1 no such user\n5.1.1 really");
    assert_eq!(refusal.text, "no such user\nreally");
    assert_eq!(
        refusal.to_wire(),
        b"550-5.1.1 no such user\r\n550 5.1.1 really\r\n"
    );
    assert_eq!(Reply::new(500, "5.5.2").to_wire(), b"500 5.5.2\r\n");
    assert_eq!(Reply::new(334, "").to_wire(), b"334 \r\n");
    assert_eq!(
        Reply::new(421, "RP-001 x\ry").to_wire(),
        b"421 RP-001 x y\r\n"
    );
}

proptest! {
    #[test]
    fn what_is_written_reads_back(
        code in 200u16..600,
        enhanced in proptest::option::of((0u16..1000, 0u16..1000)),
        lines in proptest::collection::vec("[a-zA-Z0-9 .,:;-]{0,60}", 1..5),
    ) {
        let prefix = enhanced.map(|(s, d)| format!("{}.{s}.{d} ", code / 100)).unwrap_or_default();
        let reply = Reply::new(code, format!("{prefix}{}", lines.join("\n")));
        let wire = String::from_utf8(reply.to_wire()).expect("ASCII");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let read = runtime.block_on(read_reply(&mut wire.as_bytes(), 4098)).expect("reads back");
        prop_assert_eq!(read, reply);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let _ = runtime.block_on(read_reply(&mut input.as_slice(), 100));
    }
}
