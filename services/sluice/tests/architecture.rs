//! docs/architecture.md names every workspace crate and every CQL table,
//! and nothing that is gone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The first backticked cell of every table row between `<!-- name -->`
/// and `<!-- /name -->`.
fn listed(doc: &str, name: &str) -> BTreeSet<String> {
    let (start, end) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
    let from = doc
        .find(&start)
        .unwrap_or_else(|| panic!("no {start} in architecture.md"));
    let to = doc[from..]
        .find(&end)
        .unwrap_or_else(|| panic!("no {end} after {start}"));
    doc[from..from + to]
        .lines()
        .filter_map(|line| line.trim().strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(first, _)| first.to_owned()))
        .collect()
}

fn workspace_crates() -> BTreeSet<String> {
    let manifest: toml::Table = read(&root().join("Cargo.toml"))
        .parse()
        .expect("Cargo.toml");
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("members");
    members
        .iter()
        .map(|member| {
            let dir = root().join(member.as_str().expect("member path"));
            let crate_toml: toml::Table = read(&dir.join("Cargo.toml")).parse().expect("parse");
            crate_toml["package"]["name"]
                .as_str()
                .expect("name")
                .to_owned()
        })
        .collect()
}

fn doc() -> String {
    read(&root().join("docs/architecture.md"))
}

#[test]
fn the_crate_table_names_every_workspace_crate_and_no_other() {
    let (in_code, in_doc) = (workspace_crates(), listed(&doc(), "crates"));
    let missing: Vec<_> = in_code.difference(&in_doc).collect();
    let stale: Vec<_> = in_doc.difference(&in_code).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md crate table: missing {missing:?}, names crates that are gone {stale:?}"
    );
}

#[test]
fn the_table_list_names_every_migrated_table_and_no_other() {
    let in_code = sluice_cql::migrated_tables();
    let in_doc = listed(&doc(), "tables");
    let missing: Vec<_> = in_code.difference(&in_doc).collect();
    let stale: Vec<_> = in_doc.difference(&in_code).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md CQL tables: missing {missing:?}, names tables that are gone {stale:?}"
    );
}
