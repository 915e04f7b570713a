//! Builds each recipient's RFC 5322 message: renders templates with
//! minijinja, or prepares a raw message, and adds the headers ingest owns.

use std::collections::BTreeMap;

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use minijinja::{Environment, Value};

use crate::IngestError;
use crate::model::RecipientInput;

/// Headers added to one recipient's copy (name, value).
pub type ExtraHeaders = Vec<(&'static str, String)>;

/// What identifies one recipient's copy.
pub struct Copy<'a> {
    pub index: usize,
    pub recipient: &'a RecipientInput,
    pub message_id: &'a str,
    pub from_domain: &'a str,
    pub now_unix: i64,
    pub extra: ExtraHeaders,
    /// Open and click tracking of the HTML part, when asked for.
    pub tracking: Option<crate::tracking_html::Plan<'a>>,
}

/// A compiled template (subject, text and HTML parts).
pub struct Templates {
    env: Environment<'static>,
    has_text: bool,
    has_html: bool,
    /// Most bytes one rendered part may have.
    limit: usize,
}

const SUBJECT: &str = "subject.txt";
const TEXT: &str = "text.txt";
const HTML: &str = "html.html";

impl Templates {
    /// Compiles the parts, each rendered part at most `limit` bytes; a
    /// syntax error or a refused construct names the part
    /// ([`crate::template_rules`]).
    pub fn compile(
        subject: &str,
        text: &str,
        html: &str,
        limit: usize,
    ) -> Result<Self, IngestError> {
        if text.is_empty() && html.is_empty() {
            return Err(IngestError::invalid(
                "template",
                "needs a text or an html part",
            ));
        }
        let mut env = crate::template_rules::environment();
        for (name, field, source) in [
            (SUBJECT, "template.subject", subject),
            (TEXT, "template.text", text),
            (HTML, "template.html", html),
        ] {
            crate::template_rules::check(field, source)?;
            env.add_template_owned(name, source.to_owned())
                .map_err(|err| IngestError::invalid(field, err.to_string()))?;
        }
        Ok(Self {
            env,
            has_text: !text.is_empty(),
            has_html: !html.is_empty(),
            limit,
        })
    }

    fn render(&self, name: &str, index: usize, ctx: &Value) -> Result<String, IngestError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|err| IngestError::Internal(err.to_string()))?;
        let mut out = crate::template_rules::Capped {
            out: Vec::new(),
            limit: self.limit,
        };
        let rendered = template.render_captured_to(ctx, &mut out);
        let part = name.split('.').next().unwrap_or(name);
        let field = format!("recipients[{index}].substitutions");
        rendered.map_err(|err| {
            let reason = match err.kind() {
                minijinja::ErrorKind::WriteFailure => format!(
                    "template.{part} renders to more than {} bytes (the message size limit)",
                    self.limit
                ),
                minijinja::ErrorKind::OutOfFuel => format!(
                    "template.{part} takes more than {} steps to render (loops too large)",
                    crate::template_rules::FUEL
                ),
                _ => format!("template.{part}: {err}"),
            };
            IngestError::invalid(field, reason)
        })?;
        String::from_utf8(out.out)
            .map_err(|_| IngestError::Internal(format!("template.{part} rendered invalid UTF-8")))
    }

    /// Renders the message of one recipient.
    pub fn message(
        &self,
        from: &str,
        headers: &BTreeMap<String, String>,
        copy: Copy<'_>,
    ) -> Result<Vec<u8>, IngestError> {
        let ctx = context(copy.recipient);
        let subject = self.render(SUBJECT, copy.index, &ctx)?;
        crate::validate::no_line_breaks("template.subject (rendered)", &subject).map_err(|_| {
            IngestError::invalid(
                format!("recipients[{}].substitutions", copy.index),
                "rendered subject contains CR or LF (header injection)",
            )
        })?;
        let (name, address) = split_from(from);
        let to_name = copy.recipient.name.clone();
        let mut builder = MessageBuilder::new()
            .from((name.to_owned(), address.to_owned()))
            .to((to_name, copy.recipient.address.clone()))
            .subject(subject)
            .date(copy.now_unix)
            .message_id(format!("{}@{}", copy.message_id, copy.from_domain));
        if self.has_text {
            builder = builder.text_body(self.render(TEXT, copy.index, &ctx)?);
        }
        if self.has_html {
            let mut html = self.render(HTML, copy.index, &ctx)?;
            if let Some(plan) = &copy.tracking {
                html = crate::tracking_html::rewrite(&html, plan)?;
            }
            builder = builder.html_body(html);
        }
        for (name, value) in headers {
            builder = builder.header(name.clone(), Raw::new(value.clone()));
        }
        for (name, value) in copy.extra {
            builder = builder.header(name, Raw::new(value));
        }
        builder
            .write_to_vec()
            .map_err(|err| IngestError::Internal(format!("building message: {err}")))
    }
}

fn context(recipient: &RecipientInput) -> Value {
    let mut vars: BTreeMap<String, Value> = BTreeMap::new();
    let mut who = BTreeMap::new();
    who.insert("address", recipient.address.clone());
    who.insert("name", recipient.name.clone());
    vars.insert("recipient".into(), Value::from_serialize(&who));
    for (key, value) in &recipient.substitutions {
        vars.insert(key.clone(), Value::from(value.clone()));
    }
    Value::from_serialize(&vars)
}

/// `Name <a@b>` → (`Name`, `a@b`); a bare address has an empty name.
/// `from` passed the submission check, which parsed it the same way.
fn split_from(from: &str) -> (String, String) {
    match crate::mailbox::one("from", from) {
        Ok(m) => (m.name, m.address),
        Err(_) => (String::new(), from.trim().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1024 * 1024;

    fn recipient(vars: &[(&str, &str)]) -> RecipientInput {
        RecipientInput {
            address: "bob@example.com".into(),
            name: "Bob".into(),
            substitutions: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn copy(r: &RecipientInput) -> Copy<'_> {
        Copy {
            index: 3,
            recipient: r,
            message_id: "01ID",
            from_domain: "acme.example",
            now_unix: 1_700_000_000,
            extra: vec![("Feedback-ID", "a:b:c:sluice".into())],
            tracking: None,
        }
    }

    #[test]
    fn renders_per_recipient_and_escapes_html() {
        let t = Templates::compile(
            "Hi {{ first }}",
            "Hello {{ first }}",
            "<p>{{ first }}</p>",
            LIMIT,
        )
        .expect("compiles");
        let r = recipient(&[("first", "<Bob>")]);
        let msg = t
            .message("Acme <news@acme.example>", &BTreeMap::new(), copy(&r))
            .expect("renders");
        let text = String::from_utf8(msg).expect("utf8");
        assert!(text.contains("Subject: Hi <Bob>"), "{text}");
        assert!(text.contains("&lt;Bob&gt;"), "{text}");
        assert!(text.contains("Message-ID: <01ID@acme.example>"), "{text}");
        assert!(text.contains("Feedback-ID: a:b:c:sluice"), "{text}");
        assert!(text.contains("Date: "), "{text}");
    }

    #[test]
    fn missing_variable_names_the_recipient_and_part() {
        let t = Templates::compile("Hi", "Hello {{ first }}", "", LIMIT).expect("compiles");
        let r = recipient(&[]);
        let err = t
            .message("news@acme.example", &BTreeMap::new(), copy(&r))
            .expect_err("undefined");
        let text = err.to_string();
        assert!(text.contains("recipients[3].substitutions"), "{text}");
        assert!(text.contains("template.text"), "{text}");
    }

    #[test]
    fn syntax_errors_name_the_part() {
        let err = Templates::compile("{{ oops", "x", "", LIMIT)
            .err()
            .expect("syntax error");
        assert!(err.to_string().contains("template.subject"), "{err}");
    }

    #[test]
    fn substitutions_cannot_inject_headers_through_the_subject() {
        let t = Templates::compile("Hi {{ first }}", "x", "", LIMIT).expect("compiles");
        let r = recipient(&[("first", "x\r\nBcc: eve@evil.example")]);
        let err = t
            .message("news@acme.example", &BTreeMap::new(), copy(&r))
            .expect_err("injection");
        assert!(err.to_string().contains("header injection"), "{err}");
    }
}
