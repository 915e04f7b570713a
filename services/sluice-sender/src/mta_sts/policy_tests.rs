use proptest::prelude::*;

use super::*;

const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET.\r\nmax_age: 86400\r\n";

#[test]
fn a_policy_with_crlf_parses() {
    let policy = parse_policy(GOOD.as_bytes()).expect("valid");
    assert_eq!(policy.mode, Mode::Enforce);
    assert_eq!(policy.max_age, 86_400);
    assert_eq!(policy.mx, vec!["mail.example.com", "*.example.net"]);
}

#[test]
fn lf_unknown_keys_and_repeats_are_accepted() {
    let body = "version: STSv1\nmode: testing\nfoo_bar: anything: at all\nmx:mx1.example.org\nmode: enforce\nmax_age:\t604800\n";
    let policy = parse_policy(body.as_bytes()).expect("valid");
    assert_eq!(policy.mode, Mode::Testing, "the first mode counts");
    assert_eq!(policy.mx, vec!["mx1.example.org"]);
    assert_eq!(policy.max_age, 604_800);
}

#[test]
fn errors_name_the_field_and_the_reason() {
    let cases: [(&str, &str, &str); 9] = [
        ("mode: enforce\nmx: a.b\nmax_age: 1\n", "version", "missing"),
        (
            "version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",
            "version",
            "STSv2",
        ),
        (
            "version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n",
            "mode",
            "strict",
        ),
        ("version: STSv1\nmx: a.b\nmax_age: 1\n", "mode", "missing"),
        (
            "version: STSv1\nmode: enforce\nmx: a.b\n",
            "max_age",
            "missing",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557601\n",
            "max_age",
            "limit",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -5\n",
            "max_age",
            "-5",
        ),
        (
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "mx",
            "missing",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n",
            "mx",
            "a..b",
        ),
    ];
    for (body, field, says) in cases {
        let err = parse_policy(body.as_bytes()).expect_err(body);
        assert_eq!(err.field, field, "{body:?}: {err}");
        assert!(err.to_string().contains(says), "{body:?}: {err}");
    }
}

#[test]
fn a_line_without_a_colon_and_an_oversized_body_are_refused() {
    let err = parse_policy(b"version: STSv1\ngarbage\n").unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    let big = format!("{GOOD}{}", "x: y\n".repeat(MAX_BODY / 5));
    let err = parse_policy(big.as_bytes()).unwrap_err();
    assert_eq!(err.field, "body", "{err}");
}

#[test]
fn mode_none_needs_no_mx() {
    let policy = parse_policy(b"version: STSv1\nmode: none\nmax_age: 0\n").expect("valid");
    assert_eq!(policy.mode, Mode::None);
    assert!(policy.mx.is_empty());
}

#[test]
fn matching_is_case_insensitive_and_a_wildcard_is_one_label() {
    assert!(mx_matches("mail.example.com", "MAIL.example.COM"));
    assert!(mx_matches("mail.example.com.", "mail.example.com"));
    assert!(mx_matches("*.example.com", "mx1.Example.com"));
    assert!(!mx_matches("*.example.com", "example.com"));
    assert!(!mx_matches("*.example.com", "a.b.example.com"));
    assert!(!mx_matches("*.example.com", ".example.com"));
    assert!(!mx_matches("mail.example.com", "mail.example.com.evil"));
    assert!(!mx_matches("example.com", "mail.example.com"));
}

#[test]
fn the_txt_record_gives_the_id() {
    let one = |s: &str| vec![s.to_owned()];
    assert_eq!(
        txt_policy_id(&one("v=STSv1; id=20160831085700Z;")),
        Ok(Some("20160831085700Z".into()))
    );
    assert_eq!(
        txt_policy_id(&one("v=STSv1;id=abc;ext=1")),
        Ok(Some("abc".into()))
    );
    let others = vec!["v=spf1 -all".to_owned(), "v=STSv1; id=7".to_owned()];
    assert_eq!(txt_policy_id(&others), Ok(Some("7".into())));
    assert_eq!(txt_policy_id(&one("v=spf1 -all")), Ok(None));
    assert_eq!(txt_policy_id(&[]), Ok(None));
}

#[test]
fn bad_txt_records_are_errors() {
    let one = |s: &str| vec![s.to_owned()];
    for bad in [
        one("v=STSv1;"),
        one("v=STSv1; id=has-dash"),
        one(&format!("v=STSv1; id={}", "a".repeat(33))),
        vec!["v=STSv1; id=1".into(), "v=STSv1; id=2".into()],
    ] {
        let err = txt_policy_id(&bad).expect_err(&format!("{bad:?}"));
        assert_eq!(err.field, "TXT record");
    }
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn host() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 2..5).prop_map(|labels| labels.join("."))
}

proptest! {
    #[test]
    fn a_parsed_policy_matches_its_own_names(
        hosts in prop::collection::vec(host(), 1..5),
        upper in any::<bool>(),
    ) {
        let mut body = String::from("version: STSv1\nmode: enforce\nmax_age: 60\n");
        for h in &hosts {
            body.push_str(&format!("mx: {h}\n"));
        }
        let policy = parse_policy(body.as_bytes()).expect("valid");
        for h in &hosts {
            let asked = if upper { h.to_ascii_uppercase() } else { h.clone() };
            prop_assert!(policy.matches(&asked), "{} in {:?}", asked, policy.mx);
        }
    }

    #[test]
    fn a_wildcard_matches_one_label_only(parent in host(), a in label(), b in label()) {
        let pattern = format!("*.{parent}");
        let one = format!("{a}.{parent}");
        let two = format!("{a}.{b}.{parent}");
        prop_assert!(mx_matches(&pattern, &one), "{} {}", pattern, one);
        prop_assert!(!mx_matches(&pattern, &parent), "{} {}", pattern, parent);
        prop_assert!(!mx_matches(&pattern, &two), "{} {}", pattern, two);
    }

    #[test]
    fn any_body_parses_or_names_a_field(body in ".{0,200}") {
        if let Err(err) = parse_policy(body.as_bytes()) {
            prop_assert!(!err.field.is_empty());
        }
    }
}

#[test]
fn the_version_may_come_after_the_other_fields() {
    let policy =
        parse_policy(b"mode: testing\r\nmx: mx.a.test\r\nmax_age: 60\r\nversion: STSv1\r\n")
            .expect("the policy's fields are in any order");
    assert_eq!(policy.mode, Mode::Testing);
}
