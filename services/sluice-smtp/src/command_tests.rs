use proptest::prelude::*;

use super::*;

fn path(address: &str, params: &[(&str, Option<&str>)]) -> Path {
    Path {
        address: address.into(),
        params: params
            .iter()
            .map(|(key, value)| Param {
                key: (*key).into(),
                value: value.map(str::to_owned),
            })
            .collect(),
    }
}

#[test]
fn parses_the_submission_dialogue() {
    assert_eq!(
        parse(b"EHLO client.example"),
        Ok(Command::Ehlo("client.example".into()))
    );
    assert_eq!(parse(b"helo  x.test "), Ok(Command::Helo("x.test".into())));
    assert_eq!(parse(b"starttls"), Ok(Command::StartTls));
    assert_eq!(
        parse(b"AUTH plain AGFAYg=="),
        Ok(Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some("AGFAYg==".into())
        })
    );
    assert_eq!(
        parse(b"AUTH LOGIN"),
        Ok(Command::Auth {
            mechanism: "LOGIN".into(),
            initial: None
        })
    );
    assert_eq!(parse(b"DATA"), Ok(Command::Data));
    assert_eq!(parse(b"quit"), Ok(Command::Quit));
    assert_eq!(parse(b"QUIT\r\n"), Ok(Command::Quit));
    assert_eq!(parse(b"NOOP whatever"), Ok(Command::Noop));
    assert_eq!(parse(b"VRFY someone"), Ok(Command::Vrfy));
    assert_eq!(parse(b"HELP"), Ok(Command::Help));
    assert_eq!(parse(b"RSET"), Ok(Command::Rset));
}

#[test]
fn mail_and_rcpt_paths_and_params() {
    assert_eq!(
        parse(b"mail from: <a@b.c> SIZE=100 body=8BITMIME SMTPUTF8"),
        Ok(Command::Mail(path(
            "a@b.c",
            &[
                ("SIZE", Some("100")),
                ("BODY", Some("8BITMIME")),
                ("SMTPUTF8", None)
            ]
        )))
    );
    assert_eq!(parse(b"MAIL FROM:<>"), Ok(Command::Mail(path("", &[]))));
    assert_eq!(
        parse("RCPT TO:<josé@bücher.de>".as_bytes()),
        Ok(Command::Rcpt(path("josé@bücher.de", &[])))
    );
    let Ok(Command::Rcpt(to)) = parse(b"RCPT TO:<user@Example.COM>") else {
        panic!("not RCPT");
    };
    assert_eq!(to.split(), Some(("user", "Example.COM")));
    assert_eq!(path("@x", &[]).split(), None);
}

#[test]
fn bad_lines_say_why_and_pick_their_reply() {
    let syntax = |line: &[u8]| matches!(parse(line), Err(ParseError::Syntax(_)));
    for line in [
        &b"MAIL FROM:a@b"[..],
        b"MAIL TO:<a@b>",
        b"MAIL FROM:<a b@c>",
        b"MAIL FROM:<a@b",
        b"RCPT TO:<>",
        b"RCPT TO:a@b",
        b"DATA now",
        b"STARTTLS please",
        b"EHLO",
        b"HELO  ",
        b"AUTH",
        b"AUTH PLAIN a b",
        b"\xff\xfe",
    ] {
        assert!(syntax(line), "{:?}", String::from_utf8_lossy(line));
    }
    assert_eq!(parse(b"FROB x"), Err(ParseError::Unknown("FROB".into())));
    assert_eq!(parse(b""), Err(ParseError::Unknown(String::new())));
    let unknown = parse(b"FROB").expect_err("unknown").reply();
    assert_eq!(
        (unknown.code, unknown.enhanced.as_deref()),
        (500, Some("5.5.2"))
    );
    let bad = parse(b"MAIL FROM:x").expect_err("syntax").reply();
    assert_eq!((bad.code, bad.enhanced.as_deref()), (501, Some("5.5.4")));
    assert!(bad.text.contains("MAIL FROM:<address>"), "{}", bad.text);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Err(err) = parse(&line) {
            let reply = err.reply();
            prop_assert!(reply.code == 500 || reply.code == 501);
        }
    }

    #[test]
    fn arbitrary_command_shaped_lines_never_panic(
        verb in "(MAIL|RCPT|EHLO|HELO|AUTH|DATA|mail|rcpt|Quit)",
        keyword in "(FROM:|TO:|from:<|To: <|)",
        rest in "[ -~\u{80}-\u{10ffff}]{0,80}",
    ) {
        let _ = parse(format!("{verb} {keyword}{rest}").as_bytes());
    }

    #[test]
    fn well_formed_paths_come_back_as_sent(
        local in "[a-zA-Z0-9._+-]{1,20}",
        domain in "[a-z0-9.-]{1,20}",
        size in 0u32..100_000_000,
    ) {
        let line = format!("MAIL FROM:<{local}@{domain}> SIZE={size}");
        let expected = path(&format!("{local}@{domain}"), &[("SIZE", Some(&size.to_string()))]);
        prop_assert_eq!(parse(line.as_bytes()), Ok(Command::Mail(expected)));
    }
}
