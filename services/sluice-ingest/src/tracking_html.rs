//! Puts the tracking links into one copy's rendered HTML part (lol_html, a
//! streaming rewriter that keeps everything it is not asked to change byte
//! for byte). Runs before the copy is signed, so DKIM covers the links.

use std::cell::Cell;

use lol_html::html_content::{ContentType, Element};
use lol_html::{RewriteStrSettings, element, rewrite_str};

use crate::IngestError;
use crate::tracking::{Copy, Tracking};

/// Links rewritten per copy at most; any after them are left as they are.
pub const MAX_LINKS: usize = 1000;
/// Longest link target (decoded) that is rewritten; longer ones are left.
pub const MAX_LINK: usize = 2048;
/// The attribute that keeps one link out of click tracking (removed from
/// the sent copy).
pub const NO_TRACK: &str = "data-sluice-notrack";

/// What to track in one copy.
pub struct Plan<'a> {
    pub tracking: &'a Tracking,
    pub copy: Copy,
    pub opens: bool,
    pub clicks: bool,
}

/// The copy's HTML with click links and the open pixel in place.
pub fn rewrite(html: &str, plan: &Plan<'_>) -> Result<String, IngestError> {
    let rewritten = Cell::new(0usize);
    let body_seen = Cell::new(false);
    let pixel = format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0;width:1px;height:1px\">",
        plan.tracking.open_url(&plan.copy)
    );
    let link = |el: &mut Element<'_, '_>| {
        if el.has_attribute(NO_TRACK) {
            el.remove_attribute(NO_TRACK);
        } else if plan.clicks && rewritten.get() < MAX_LINKS {
            let target = el.get_attribute("href").and_then(|href| trackable(&href));
            if let Some(target) = target {
                let url = plan.tracking.click_url(&plan.copy, &target);
                el.set_attribute("href", &url)?;
                rewritten.set(rewritten.get() + 1);
            }
        }
        Ok(())
    };
    let body = |el: &mut Element<'_, '_>| {
        if plan.opens && !body_seen.replace(true) {
            el.append(&pixel, ContentType::Html);
        }
        Ok(())
    };
    let settings = RewriteStrSettings::new()
        .append_element_content_handler(element!("a[href], area[href]", link))
        .append_element_content_handler(element!("body", body));
    let mut out = rewrite_str(html, settings).map_err(|err| {
        IngestError::invalid(
            "template.html",
            format!("could not be read to add tracking: {err}"),
        )
    })?;
    if plan.opens && !body_seen.get() {
        out.push_str(&pixel);
    }
    Ok(out)
}

/// The decoded target of an `href` when it is an absolute http(s) URL short
/// enough and free of control characters; `None` leaves the link as it is
/// (relative, `mailto:`, `tel:`, anchors, template leftovers).
fn trackable(href: &str) -> Option<String> {
    let decoded = html_escape::decode_html_entities(href);
    let target = decoded.trim();
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let web = lower.starts_with("http://") || lower.starts_with("https://");
    let clean = !target.chars().any(char::is_control);
    (web && clean && target.len() <= MAX_LINK && target.len() > "https://".len())
        .then(|| target.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::Kind;

    const SECRET: &str = "secret-secret-secret-secret-1234";

    fn plan(tracking: &Tracking, opens: bool, clicks: bool) -> Plan<'_> {
        Plan {
            tracking,
            copy: Copy {
                tenant: "acme".into(),
                campaign: "spring".into(),
                recipient: "bob@example.com".into(),
                message_id: "01ID".into(),
            },
            opens,
            clicks,
        }
    }

    /// The tokens of every tracking URL in `html` of `kind`.
    fn tokens(html: &str, kind: Kind) -> Vec<String> {
        let marker = format!("https://t.example/t/{}/", kind.letter());
        html.split(&marker)
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn web_links_lead_through_signed_redirects_to_their_own_targets() {
        let tracking = Tracking::new("https://t.example/t", SECRET);
        let html = "<html><body><p>Hi</p>\
            <a href=\"https://shop.example/sale?a=1&amp;b=2\">sale</a>\
            <a href=\"HTTP://Shop.Example/\">home</a>\
            <a href=\"mailto:help@shop.example\">mail</a>\
            <a href=\"#top\">top</a><a href=\"/relative\">rel</a>\
            <a href=\"https://shop.example/keep\" data-sluice-notrack>keep</a>\
            </body></html>";
        let out = rewrite(html, &plan(&tracking, false, true)).expect("rewrites");
        let targets: Vec<String> = tokens(&out, Kind::Click)
            .iter()
            .map(|t| tracking.verify(Kind::Click, t).expect("valid").url)
            .collect();
        assert_eq!(
            targets,
            ["https://shop.example/sale?a=1&b=2", "HTTP://Shop.Example/"]
        );
        for kept in [
            "href=\"mailto:help@shop.example\"",
            "href=\"#top\"",
            "href=\"/relative\"",
            "<a href=\"https://shop.example/keep\">keep</a>",
            "<p>Hi</p>",
        ] {
            assert!(out.contains(kept), "{kept} in {out}");
        }
        assert!(!out.contains(NO_TRACK), "{out}");
        assert!(tokens(&out, Kind::Open).is_empty(), "no pixel asked: {out}");
    }

    #[test]
    fn the_pixel_goes_at_the_end_of_the_body_or_of_a_fragment() {
        let tracking = Tracking::new("https://t.example/t", SECRET);
        let out = rewrite(
            "<html><body><p>Hi</p></body></html>",
            &plan(&tracking, true, false),
        )
        .expect("rewrites");
        let pixel_at = out
            .find("<img src=\"https://t.example/t/o/")
            .expect("pixel");
        assert!(pixel_at < out.find("</body>").expect("body end"), "{out}");
        let open = tokens(&out, Kind::Open);
        assert_eq!(open.len(), 1, "{out}");
        assert!(tracking.verify(Kind::Open, &open[0]).is_some());

        let fragment = rewrite(
            "<p>Hi <a href=\"https://x.example/\">x</a></p>",
            &plan(&tracking, true, false),
        )
        .expect("rewrites");
        assert!(fragment.ends_with("height:1px\">"), "{fragment}");
        assert!(
            fragment.contains("href=\"https://x.example/\""),
            "clicks off: {fragment}"
        );
    }

    #[test]
    fn links_past_the_cap_and_overlong_targets_stay_as_they_are() {
        let tracking = Tracking::new("https://t.example/t", SECRET);
        let long = format!("https://x.example/{}", "a".repeat(MAX_LINK));
        let mut html = format!("<a href=\"{long}\">long</a>");
        for i in 0..MAX_LINKS + 5 {
            html.push_str(&format!("<a href=\"https://x.example/{i}\">{i}</a>"));
        }
        let out = rewrite(&html, &plan(&tracking, false, true)).expect("rewrites");
        assert_eq!(tokens(&out, Kind::Click).len(), MAX_LINKS);
        assert!(out.contains(&long));
        assert!(out.contains("href=\"https://x.example/1004\""));
    }
}
