//! Every box stands alone as a publishable crate: metadata, a README whose example is the
//! crate's (doc-tested) example, `no_std`, and `missing_docs` warned.

use box_graph_test::json::{self, Value};
use box_graph_test::{workspace_metadata, BOXES};
use std::path::{Path, PathBuf};

fn packages() -> Vec<Value> {
    let v = json::parse(&workspace_metadata().unwrap()).unwrap();
    v.get("packages")
        .and_then(Value::as_array)
        .unwrap()
        .to_vec()
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The ```rust blocks of a Markdown file, each as its lines.
fn rust_blocks(md: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut cur: Option<Vec<&str>> = None;
    for line in md.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```rust") => cur = Some(Vec::new()),
            (Some(_), "```") => blocks.push(cur.take().unwrap()),
            (Some(b), l) => b.push(l),
            _ => {}
        }
    }
    blocks
}

/// The doc-comment lines (`//!` and `///`) of every source file under `src`, prefix removed.
fn doc_lines(src: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let t = line.trim_start();
            for prefix in ["//!", "///"] {
                if let Some(rest) = t.strip_prefix(prefix) {
                    out.push(
                        rest.strip_prefix(' ')
                            .unwrap_or(rest)
                            .trim_end()
                            .to_string(),
                    );
                }
            }
        }
    }
    out
}

#[test]
fn every_box_is_a_documented_publishable_crate() {
    let packages = packages();
    let mut problems = Vec::new();
    for name in BOXES {
        let Some(p) = packages
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        else {
            problems.push(format!("{name}: not a workspace package"));
            continue;
        };
        let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
        for k in ["description", "license", "repository"] {
            if field(k).is_empty() {
                problems.push(format!("{name}: no `{k}` in Cargo.toml"));
            }
        }
        if field("readme") != "README.md" {
            problems.push(format!("{name}: `readme` is not README.md"));
        }
        let cats = strings(p.get("categories"));
        for c in ["memory-management", "no-std"] {
            if !cats.contains(&c) {
                problems.push(format!("{name}: category `{c}` missing"));
            }
        }
        if strings(p.get("keywords")).is_empty() {
            problems.push(format!("{name}: no keywords"));
        }

        let dir = Path::new(field("manifest_path"))
            .parent()
            .unwrap()
            .to_path_buf();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default();
        for attr in ["#![no_std]", "#![warn(missing_docs)]"] {
            if !lib.contains(attr) {
                problems.push(format!("{name}: src/lib.rs lacks {attr}"));
            }
        }
        let Ok(readme) = std::fs::read_to_string(dir.join("README.md")) else {
            problems.push(format!("{name}: no README.md"));
            continue;
        };
        for section in ["## Purpose", "## Contract", "## Invariants", "## Example"] {
            if !readme.contains(section) {
                problems.push(format!("{name}: README.md has no `{section}` section"));
            }
        }
        let blocks = rust_blocks(&readme);
        if blocks.is_empty() {
            problems.push(format!("{name}: README.md has no ```rust example"));
        }
        // Each README example must be a doc test of the crate, so it is compiled and run.
        let docs = doc_lines(&dir.join("src"));
        for b in blocks {
            let found = docs
                .windows(b.len())
                .any(|w| w.iter().zip(&b).all(|(d, r)| d == r));
            if !found {
                problems.push(format!(
                    "{name}: the README example starting `{}` is not a doc comment example \
                     in src/ (copy it there so it is tested)",
                    b.first().copied().unwrap_or("")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}
