//! The configuration reference in `docs/` checked against the code.
//!
//! A role's configuration derives `schemars::JsonSchema`, so its keys and
//! their doc comments are known at run time. [`keys`] lists every leaf key
//! (dotted; `tenants[].name` for a field of an array of tables, `x.*.y` for
//! a field of a map of tables). [`check`] compares them with the reference
//! table of a Markdown file: the rows between
//! `<!-- config-reference -->` and `<!-- /config-reference -->` whose first
//! cell is a key in backticks.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde_json::{Map, Value};

/// Opens the reference table in a Markdown file.
pub const START: &str = "<!-- config-reference -->";
/// Closes it.
pub const END: &str = "<!-- /config-reference -->";

/// A leaf key and its doc comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub path: String,
    pub doc: String,
}

/// Every leaf key of `C`, sorted within each table.
pub fn keys<C: JsonSchema>() -> Vec<Key> {
    let schema = schemars::schema_for!(C);
    let root = schema.as_value();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    walk(root, &defs, "", "", &mut out);
    out
}

fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix("#/$defs/")
            .and_then(|name| defs.get(name))
            .map_or(schema, |target| resolve(target, defs)),
        None => schema,
    }
}

/// The table behind `schema` (through references and `Option`), if any.
fn table<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> Option<&'a Value> {
    let schema = resolve(schema, defs);
    if schema.get("properties").is_some() {
        return Some(schema);
    }
    for alternatives in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = schema.get(alternatives).and_then(Value::as_array)
            && let Some(found) = list.iter().find_map(|s| table(s, defs))
        {
            return Some(found);
        }
    }
    None
}

fn walk(schema: &Value, defs: &Map<String, Value>, path: &str, doc: &str, out: &mut Vec<Key>) {
    let resolved = resolve(schema, defs);
    // The field's own doc comment; a type's comment does not document a key.
    let doc = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or(doc);
    if let Some(table) = table(schema, defs)
        && let Some(properties) = table.get("properties").and_then(Value::as_object)
    {
        for (name, field) in properties {
            walk(field, defs, &join(path, name), "", out);
        }
        return;
    }
    if let Some(items) = resolved.get("items")
        && table(items, defs).is_some()
    {
        return walk(items, defs, &format!("{path}[]"), doc, out);
    }
    if let Some(values) = resolved.get("additionalProperties")
        && values.is_object()
        && table(values, defs).is_some()
    {
        return walk(values, defs, &join(path, "*"), doc, out);
    }
    out.push(Key {
        path: path.to_owned(),
        doc: doc.trim().to_owned(),
    });
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The keys documented in the reference table of `markdown`.
pub fn documented(markdown: &str) -> Result<BTreeSet<String>, String> {
    let start = markdown
        .find(START)
        .ok_or_else(|| format!("no `{START}` marker"))?;
    let end = markdown[start..]
        .find(END)
        .ok_or_else(|| format!("no `{END}` marker after `{START}`"))?;
    let table = &markdown[start + START.len()..start + end];
    Ok(table
        .lines()
        .filter_map(|line| line.trim().strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(key, _)| key.to_owned()))
        .collect())
}

/// Checks that every key of `C` has a doc comment and a row in the
/// reference table of `markdown`, and that the table names no other key.
pub fn check<C: JsonSchema>(markdown: &str) -> Result<(), String> {
    let keys = keys::<C>();
    let mut problems = Vec::new();
    for key in keys.iter().filter(|k| k.doc.is_empty()) {
        problems.push(format!("`{}` has no doc comment in the code", key.path));
    }
    let in_code: BTreeSet<String> = keys.into_iter().map(|k| k.path).collect();
    let in_docs = documented(markdown)?;
    for key in in_code.difference(&in_docs) {
        problems.push(format!("`{key}` is missing from the reference table"));
    }
    for key in in_docs.difference(&in_code) {
        problems.push(format!(
            "`{key}` is documented but is not a key in the code"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use schemars::JsonSchema;

    use super::*;

    /// A node.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Node {
        /// Its name.
        name: String,
        /// Where it listens.
        listen: Option<Listen>,
        /// Its tenants.
        tenants: Vec<Tenant>,
        /// Routes by domain.
        routes: BTreeMap<String, Vec<String>>,
        undocumented: u32,
    }

    /// Listen addresses.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Listen {
        /// gRPC.
        grpc: String,
    }

    /// A tenant.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Tenant {
        /// Its name.
        name: String,
    }

    #[test]
    fn keys_walk_tables_options_and_arrays_of_tables() {
        let paths: Vec<String> = keys::<Node>().into_iter().map(|k| k.path).collect();
        assert_eq!(
            paths,
            [
                "listen.grpc",
                "name",
                "routes",
                "tenants[].name",
                "undocumented"
            ]
        );
    }

    #[test]
    fn check_reports_undocumented_missing_and_stale_keys() {
        let doc = format!(
            "text\n{START}\n| key | meaning |\n| --- | --- |\n| `name` | x |\n| `listen.grpc` | x |\n\
             | `tenants[].name` | x |\n| `routes` | x |\n| `gone` | x |\n{END}\n"
        );
        let err = check::<Node>(&doc).unwrap_err();
        assert!(err.contains("`undocumented` has no doc comment"), "{err}");
        assert!(err.contains("`undocumented` is missing"), "{err}");
        assert!(err.contains("`gone` is documented but"), "{err}");
        assert_eq!(err.lines().count(), 3, "{err}");
    }
}
