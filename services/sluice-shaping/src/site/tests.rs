use super::*;

fn builtin() -> SiteResolver {
    SiteResolver::new(&SitesConfig::default()).unwrap()
}

fn site_of(r: &SiteResolver, mx: &[&str]) -> Site {
    r.resolve("example.org", mx)
}

#[test]
fn google_hosts_roll_up() {
    let r = builtin();
    let a = site_of(&r, &["gmail-smtp-in.l.google.com."]);
    let b = site_of(&r, &["ASPMX2.GOOGLEMAIL.COM"]);
    assert_eq!(a, Site::new("google", Some("google")));
    assert_eq!(a, b);
}

#[test]
fn microsoft_has_two_sites_one_provider() {
    let r = builtin();
    let consumer = site_of(&r, &["hotmail-com.olc.protection.outlook.com"]);
    let tenant = site_of(&r, &["contoso-com.mail.protection.outlook.com"]);
    assert_eq!(consumer.name, "outlook");
    assert_eq!(tenant.name, "office365");
    assert_eq!(consumer.provider, tenant.provider);
    assert_eq!(consumer.provider.as_deref(), Some("microsoft"));
}

#[test]
fn each_builtin_provider_resolves() {
    let r = builtin();
    let cases = [
        ("mta5.am0.yahoodns.net", "yahoo"),
        ("mx-aol.mail.gm0.yahoodns.net", "yahoo"),
        ("mx01.mail.icloud.com", "icloud"),
        ("mx1a1.comcast.net", "comcast"),
        ("mx00.emig.gmx.net", "gmx"),
        ("mx-ha03.web.de", "webde"),
        ("mx.yandex.ru", "yandex"),
        ("mxs.mail.ru", "mailru"),
        ("mx3.qq.com", "qq"),
        ("163mx01.mxmail.netease.com", "netease"),
        ("mfsmax.docomo.ne.jp", "docomo"),
        ("lsean.ezweb.ne.jp", "au"),
        ("mx.softbank.ne.jp", "softbank"),
    ];
    for (host, site) in cases {
        assert_eq!(site_of(&r, &[host]).name, site, "{host}");
    }
}

#[test]
fn wildcard_does_not_match_bare_suffix_or_lookalike() {
    let r = builtin();
    assert!(site_of(&r, &["google.com"]).name.starts_with("mx:"));
    assert!(site_of(&r, &["mx.notgoogle.com"]).name.starts_with("mx:"));
}

#[test]
fn identical_unmatched_sets_share_a_site() {
    let r = builtin();
    let a = r.resolve("a.example", &["mx2.host.example", "mx1.host.example"]);
    let b = r.resolve("b.example", &["MX1.host.example.", "mx2.host.example"]);
    assert_eq!(a, b);
    assert_eq!(a.name, "mx:mx1.host.example,mx2.host.example");
    assert_eq!(a.provider, None);
}

#[test]
fn no_mx_falls_back_to_domain() {
    assert_eq!(builtin().resolve("Example.ORG.", &[]).name, "example.org");
}

#[test]
fn most_preferred_matching_host_decides() {
    let r = builtin();
    let s = r.resolve("x.example", &["mx.backup.example", "aspmx.l.google.com"]);
    assert_eq!(s.name, "google");
}

#[test]
fn config_overrides_and_extends() {
    let cfg = SitesConfig {
        builtin_rules: true,
        rules: vec![
            SiteRule {
                pattern: "*.google.com".into(),
                site: "gsuite".into(),
                provider: Some("google".into()),
            },
            SiteRule {
                pattern: "*.mx.example.net".into(),
                site: "example".into(),
                provider: None,
            },
        ],
    };
    let r = SiteResolver::new(&cfg).unwrap();
    assert_eq!(site_of(&r, &["aspmx.l.google.com"]).name, "gsuite");
    assert_eq!(site_of(&r, &["a.mx.example.net"]).name, "example");
    let none = SiteResolver::new(&SitesConfig {
        builtin_rules: false,
        rules: vec![],
    })
    .unwrap();
    assert!(
        site_of(&none, &["aspmx.l.google.com"])
            .name
            .starts_with("mx:")
    );
}

#[test]
fn bad_patterns_are_rejected() {
    for p in ["*google.com", "a.*.com", "*."] {
        let cfg = SitesConfig {
            builtin_rules: false,
            rules: vec![SiteRule {
                pattern: p.into(),
                site: "s".into(),
                provider: None,
            }],
        };
        let err = SiteResolver::new(&cfg).unwrap_err();
        assert!(err.to_string().contains("sites.rules.pattern"), "{err}");
    }
}
