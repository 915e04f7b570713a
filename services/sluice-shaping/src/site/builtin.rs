//! Built-in MX rollup rules: `(MX host pattern, site, provider)`.
//!
//! Patterns are the MX host names these mailbox providers publish for their own and their
//! hosted domains. `docs/shaping.md` lists the example MX hosts each one was taken from.

/// The built-in rules, most specific patterns are preferred regardless of order here.
pub const BUILTIN_SITE_RULES: &[(&str, &str, &str)] = &[
    // Google: gmail-smtp-in.l.google.com, aspmx.l.google.com, smtp.google.com,
    // aspmx2.googlemail.com (older Workspace setups).
    ("*.google.com", "google", "google"),
    ("*.googlemail.com", "google", "google"),
    // Microsoft: consumer mailboxes (hotmail, outlook.com, live, msn) sit behind
    // <domain>.olc.protection.outlook.com; Microsoft 365 tenants behind
    // <tenant>.mail.protection.outlook.com. Two sites, one provider.
    ("*.olc.protection.outlook.com", "outlook", "microsoft"),
    ("*.protection.outlook.com", "office365", "microsoft"),
    ("*.outlook.com", "outlook", "microsoft"),
    // Yahoo and AOL: mta5.am0.yahoodns.net, mx-aol.mail.gm0.yahoodns.net.
    ("*.yahoodns.net", "yahoo", "yahoo"),
    // Apple iCloud: mx01.mail.icloud.com ... mx06.mail.icloud.com.
    ("*.mail.icloud.com", "icloud", "apple"),
    // Comcast: mx1a1.comcast.net, mx2c1.comcast.net.
    ("*.comcast.net", "comcast", "comcast"),
    // GMX and WEB.DE (United Internet): mx00.emig.gmx.net, mx-ha03.web.de.
    ("*.gmx.net", "gmx", "united-internet"),
    ("*.gmx.com", "gmx", "united-internet"),
    ("*.web.de", "webde", "united-internet"),
    // Yandex: mx.yandex.ru, mx.yandex.net.
    ("*.yandex.ru", "yandex", "yandex"),
    ("*.yandex.net", "yandex", "yandex"),
    // Mail.ru: mxs.mail.ru.
    ("*.mail.ru", "mailru", "mailru"),
    // Tencent QQ: mx1.qq.com, mx3.qq.com.
    ("*.qq.com", "qq", "tencent"),
    // NetEase 163.com / 126.com: 163mx01.mxmail.netease.com, 126mx00.mxmail.netease.com.
    ("*.netease.com", "netease", "netease"),
    // NTT docomo: mfsmax.docomo.ne.jp.
    ("*.docomo.ne.jp", "docomo", "docomo"),
    // au (KDDI): lsean.ezweb.ne.jp for ezweb.ne.jp and au.com.
    ("*.ezweb.ne.jp", "au", "kddi"),
    ("*.au.com", "au", "kddi"),
    // SoftBank: softbank.ne.jp and i.softbank.jp mail hosts.
    ("*.softbank.ne.jp", "softbank", "softbank"),
    ("*.softbank.jp", "softbank", "softbank"),
];
