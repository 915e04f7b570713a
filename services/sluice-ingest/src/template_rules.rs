//! What a tenant's template may do, so that rendering it is bounded in
//! time and memory (docs/ingest.md, "Template limits").
//!
//! - Syntax: substitutions (`{{ … }}`), `if`/`elif`/`else` and `for`
//!   blocks, comments. No `set`, macros, calls, includes or other tags, and
//!   no `*`, `~` or `+` operators: without them no value can grow past the
//!   size of the substitutions it came from, so only output grows, and
//!   output is capped.
//! - Filters and tests: a fixed set whose results are at most a small
//!   multiple of their input; no global functions (no `range`).
//! - Fuel: at most [`FUEL`] engine instructions per part and recipient.
//! - Output: each rendered part stops at the message size limit.

use minijinja::{Environment, UndefinedBehavior, filters, tests};

use crate::IngestError;

/// Engine instructions one part of one recipient's copy may take.
pub const FUEL: u64 = 100_000;

/// Block tags a template may use.
const TAGS: &[&str] = &["if", "elif", "else", "endif", "for", "endfor"];

/// Operators that build larger values from smaller ones.
const GROWING: &[char] = &['*', '~', '+'];

/// The environment templates are compiled in: the filters and tests above,
/// strict undefined variables, fuel.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::empty();
    // HTML parts are escaped, as `Environment::new` would.
    env.set_auto_escape_callback(minijinja::default_auto_escape_callback);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.add_filter("upper", filters::upper);
    env.add_filter("lower", filters::lower);
    env.add_filter("title", filters::title);
    env.add_filter("capitalize", filters::capitalize);
    env.add_filter("trim", filters::trim);
    env.add_filter("length", filters::length);
    env.add_filter("default", filters::default);
    env.add_filter("d", filters::default);
    env.add_filter("escape", filters::escape);
    env.add_filter("e", filters::escape);
    env.add_filter("first", filters::first);
    env.add_filter("last", filters::last);
    env.add_filter("round", filters::round);
    env.add_filter("abs", filters::abs);
    env.add_filter("int", filters::int);
    env.add_filter("float", filters::float);
    env.add_filter("join", filters::join);
    env.add_test("defined", tests::is_defined);
    env.add_test("undefined", tests::is_undefined);
    env.add_test("none", tests::is_none);
    env.add_test("number", tests::is_number);
    env.add_test("string", tests::is_string);
    env.add_test("even", tests::is_even);
    env.add_test("odd", tests::is_odd);
    env
}

/// Checks `source` (the template part named `field`) against the syntax
/// rules above; the error names the field, the offset and what is refused.
pub fn check(field: &str, source: &str) -> Result<(), IngestError> {
    let mut rest = source;
    while let Some(open) = rest.find('{') {
        let at = source.len() - rest.len() + open;
        let after = &rest[open + 1..];
        let (close, is_block) = match after.chars().next() {
            Some('{') => ("}}", false),
            Some('%') => ("%}", true),
            Some('#') => {
                let end = after.find("#}").ok_or_else(|| unclosed(field, at))?;
                rest = &after[end + 2..];
                continue;
            }
            _ => {
                rest = after;
                continue;
            }
        };
        let inner = &after[1..];
        let end = expression_end(inner, close).ok_or_else(|| unclosed(field, at))?;
        expression(field, at, &inner[..end], is_block)?;
        rest = &inner[end + 2..];
    }
    Ok(())
}

fn unclosed(field: &str, at: usize) -> IngestError {
    IngestError::invalid(field, format!("at byte {at}: a tag is not closed"))
}

/// Where `close` ends the expression, skipping quoted strings.
fn expression_end(inner: &str, close: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if inner[i..].starts_with(close) => return Some(i),
            None => {}
        }
    }
    None
}

/// Checks one tag's or substitution's content.
fn expression(field: &str, at: usize, inner: &str, is_block: bool) -> Result<(), IngestError> {
    let refuse = |what: String| IngestError::invalid(field, format!("at byte {at}: {what}"));
    let code = without_strings(inner);
    if let Some(op) = code.chars().find(|c| GROWING.contains(c)) {
        return Err(refuse(format!(
            "the `{op}` operator is not allowed in templates (it builds values of unbounded size); write the parts one after the other instead"
        )));
    }
    if is_block {
        let tag = code
            .trim_matches(|c: char| c == '-' || c.is_whitespace())
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .next()
            .unwrap_or_default();
        if !TAGS.contains(&tag) {
            return Err(refuse(format!(
                "the `{tag}` tag is not allowed in templates (allowed: {})",
                TAGS.join(", ")
            )));
        }
    }
    Ok(())
}

/// `inner` with the contents of quoted strings blanked out.
fn without_strings(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in inner.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => {
                quote = None;
                out.push(c);
            }
            Some(_) => {}
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// An output buffer that refuses to grow past `limit` bytes.
pub struct Capped {
    pub out: Vec<u8>,
    pub limit: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            return Err(std::io::Error::other(format!(
                "the rendered part would pass {} bytes",
                self.limit
            )));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests_ {
    use super::*;

    fn refused(source: &str) -> String {
        check("template.text", source)
            .expect_err(source)
            .to_string()
    }

    #[test]
    fn ordinary_templates_pass() {
        for ok in [
            "Hello {{ first|default('there')|title }}!",
            "{% if vip %}Gold{% elif plain %}Plain{% else %}-{% endif %}",
            "{%- for item in items -%}{{ loop.index }}. {{ item|e }}\n{%- endfor %}",
            "{# a comment with * and ~ #}Price: {{ price|round(2) }}",
            "{{ 'stars: ***' }} {{ \"a ~ b\" }} {{ 'it\\'s + fine' }}",
            "plain text with { braces } and 100% * ~ + outside tags",
        ] {
            assert!(check("template.text", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn growing_operators_and_other_tags_are_refused_naming_the_field() {
        for (source, says) in [
            ("{{ 'x' * 100000000 }}", "`*`"),
            ("{{ a ~ a ~ a }}", "`~`"),
            ("{{ a + a }}", "`+`"),
            ("{% set s = 'x' %}", "`set`"),
            ("{% macro m() %}{% endmacro %}", "`macro`"),
            ("{% include 'other' %}", "`include`"),
            ("{% for i in x %}{% set n = 1 %}{% endfor %}", "`set`"),
        ] {
            let err = refused(source);
            assert!(
                err.contains("template.text") && err.contains(says),
                "{source}: {err}"
            );
        }
        assert!(refused("Hi {{ name").contains("not closed"));
        assert!(refused("Hi {# open").contains("not closed"));
    }

    #[test]
    fn fuel_stops_loops_that_run_too_long() {
        let mut env = environment();
        env.add_template("t", "{% for a in xs %}{% for b in xs %}{% for c in xs %}.{% endfor %}{% endfor %}{% endfor %}")
            .expect("compiles");
        let xs: Vec<u32> = (0..100).collect();
        let err = env
            .get_template("t")
            .expect("t")
            .render(minijinja::context! { xs })
            .expect_err("a million iterations");
        assert!(err.to_string().contains("fuel"), "{err}");
    }

    #[test]
    fn output_stops_at_the_limit() {
        let mut env = environment();
        env.add_template("t", "{% for x in xs %}{{ big }}{% endfor %}")
            .expect("compiles");
        let (big, xs) = ("y".repeat(1_000), vec![0; 100]);
        let mut out = Capped {
            out: Vec::new(),
            limit: 10_000,
        };
        let template = env.get_template("t").expect("t");
        let result = template.render_captured_to(minijinja::context! { big, xs }, &mut out);
        assert!(result.is_err(), "100 KB into a 10 KB cap");
        assert!(out.out.len() <= 10_000);
    }
}
