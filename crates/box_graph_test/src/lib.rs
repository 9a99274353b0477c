//! # box_graph_test: the crate dependency graph, enforced
//!
//! hakmem's boxes reach each other only through their contracts, and which box may use
//! which is a decision recorded in `docs/architecture.md`. This crate holds that decision
//! as data ([`ALLOWED`]) and checks the real graph against it: its integration test runs
//! `cargo metadata --format-version 1 --no-deps`, extracts every path dependency between
//! workspace crates (normal, dev and build dependencies alike) and fails on any edge not
//! in [`ALLOWED`], on a workspace crate [`ALLOWED`] does not know, and on a path
//! dependency that leaves the workspace. A second test reads the drawing in
//! `docs/architecture.md` ([`drawn_graph`]) and fails unless it has exactly the real edges.
//! Both tests get the metadata from [`workspace_metadata`]; the box crates are [`BOXES`].
//!
//! Adding an edge is a design change: update the drawing in `docs/architecture.md` and
//! [`ALLOWED`] together, in the same commit.
//!
//! The JSON is parsed by the small [`json`] module (no JSON crate needed); it implements
//! all of RFC 8259 that `cargo metadata` can produce (strings with every escape,
//! numbers, nested arrays and objects).
//!
//! ```
//! use box_graph_test::{check, Edge};
//! let edges = [Edge::new("tls_sll", "ptr_conversion"), Edge::new("refill", "superslab")];
//! let errors = check(&["tls_sll", "ptr_conversion", "refill", "superslab"], &edges);
//! assert_eq!(errors.len(), 1);
//! assert!(errors[0].contains("refill -> superslab"));
//! ```
#![warn(missing_docs)]

pub mod json;

use json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec::Vec;

/// The reusable boxes: every workspace crate but the facade, its preload library, the
/// second allocator and the tools. Each must stand
/// alone as a publishable, documented `no_std` crate (checked by `tests/box_crates.rs`).
pub const BOXES: &[&str] = &[
    "os_pages",
    "tiny_layout",
    "ptr_conversion",
    "tls_sll",
    "refill",
    "superslab",
    "large",
    "front_api",
];

/// Every workspace crate and the workspace crates it may depend on (an edge means "uses
/// the contract of"). Mirrors the drawing in `docs/architecture.md`.
pub const ALLOWED: &[(&str, &[&str])] = &[
    // Boxes: each reaches only boxes above it in this list.
    ("os_pages", &[]),
    ("tiny_layout", &[]),
    ("ptr_conversion", &["tiny_layout"]),
    ("tls_sll", &["tiny_layout", "ptr_conversion"]),
    ("refill", &["tiny_layout"]),
    (
        "superslab",
        &["os_pages", "tiny_layout", "ptr_conversion", "tls_sll"],
    ),
    ("large", &["os_pages", "superslab"]),
    ("front_api", &[]),
    // The facade composes every box.
    ("hakmem", BOXES),
    // `libhakmem.so`: the facade's C symbols, exported.
    ("hakmem_preload", &["hakmem"]),
    // The second allocator built from the boxes (never from the facade).
    (
        "pool_alloc",
        &[
            "os_pages",
            "tiny_layout",
            "ptr_conversion",
            "tls_sll",
            "refill",
            "superslab",
        ],
    ),
    // Tools.
    ("box_graph_test", &[]),
    ("xtask", &[]),
];

/// One dependency edge between workspace crates: `from` uses `to`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The depending crate.
    pub from: String,
    /// The crate depended on (a package name, or the path of a path dependency that is
    /// not a workspace crate).
    pub to: String,
    /// `normal`, `dev` or `build`.
    pub kind: String,
}

impl Edge {
    /// A normal dependency edge.
    pub fn new(from: &str, to: &str) -> Edge {
        Edge {
            from: from.to_string(),
            to: to.to_string(),
            kind: "normal".to_string(),
        }
    }
}

/// The output of `cargo metadata --format-version 1 --no-deps` for this workspace, run
/// with the cargo that builds this crate (for the tests, which read the real graph).
pub fn workspace_metadata() -> Result<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(&root)
        .output()
        .map_err(|e| std::format!("running cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(std::format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| "cargo metadata output is not UTF-8".to_string())
}

/// The workspace's crates (package names) and its path-dependency edges, read from the
/// output of `cargo metadata --format-version 1 --no-deps`.
pub fn graph_from_metadata(text: &str) -> Result<(Vec<String>, Vec<Edge>), String> {
    let root = json::parse(text)?;
    let packages = root
        .get("packages")
        .and_then(Value::as_array)
        .ok_or("metadata has no `packages` array")?;
    // Package directory -> name, to resolve path dependencies by where they point.
    let mut by_dir: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut names = Vec::new();
    for p in packages {
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .ok_or("package without name")?;
        let manifest = p
            .get("manifest_path")
            .and_then(Value::as_str)
            .ok_or("package without manifest_path")?;
        let dir = Path::new(manifest)
            .parent()
            .ok_or("manifest_path without parent")?;
        by_dir.insert(normalize(dir), name.to_string());
        names.push(name.to_string());
    }
    let mut edges = Vec::new();
    for p in packages {
        let from = p.get("name").and_then(Value::as_str).unwrap_or_default();
        let deps = p
            .get("dependencies")
            .and_then(Value::as_array)
            .ok_or("package without dependencies array")?;
        for d in deps {
            // Only path dependencies can be workspace crates; registry ones have no `path`.
            let Some(path) = d.get("path").and_then(Value::as_str) else {
                continue;
            };
            let to = by_dir
                .get(&normalize(Path::new(path)))
                .cloned()
                .unwrap_or_else(|| std::format!("<path outside the workspace: {path}>"));
            let kind = d.get("kind").and_then(Value::as_str).unwrap_or("normal");
            edges.push(Edge {
                from: from.to_string(),
                to,
                kind: kind.to_string(),
            });
        }
    }
    edges.sort();
    edges.dedup();
    Ok((names, edges))
}

/// Removes `.` and `..` components (paths in metadata are absolute; no symlinks are
/// resolved, both sides come from the same `cargo metadata` run).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// The violations of [`ALLOWED`]: one message per crate it does not know and per edge it
/// does not allow. Empty when the graph is as designed.
pub fn check(crates: &[&str], edges: &[Edge]) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut errors = Vec::new();
    for c in crates {
        if !allowed.contains_key(c) {
            errors.push(std::format!(
                "workspace crate `{c}` is not in box_graph_test::ALLOWED: add it with the \
                 crates it may use (and draw it in docs/architecture.md)"
            ));
        }
    }
    for e in edges {
        let ok = allowed
            .get(e.from.as_str())
            .is_some_and(|to| to.contains(&e.to.as_str()));
        if !ok {
            errors.push(std::format!(
                "edge {} -> {} ({} dependency) is not in the allowed graph of \
                 docs/architecture.md: reach that box through its contract, or change the \
                 design (docs and box_graph_test::ALLOWED) first",
                e.from,
                e.to,
                e.kind
            ));
        }
    }
    errors
}

/// Crate names and sorted `(from, to)` dependency edges.
pub type Graph = (Vec<String>, Vec<(String, String)>);

/// The graph drawn in `docs/architecture.md`: the lines `from ──► to, to, …` of the first
/// ```` ```text ```` block after the line starting `Dependency graph`, as crate names and
/// sorted `(from, to)` pairs (a target in parentheses, like `(none)`, is no edge).
pub fn drawn_graph(md: &str) -> Result<Graph, String> {
    let mut lines = md
        .lines()
        .skip_while(|l| !l.starts_with("Dependency graph"))
        .skip_while(|l| l.trim_end() != "```text");
    if lines.next().is_none() {
        return Err("no ```text block after `Dependency graph`".to_string());
    }
    let mut crates = Vec::new();
    let mut edges = Vec::new();
    for line in lines.take_while(|l| l.trim_end() != "```") {
        let (from, tos) = line
            .split_once("──►")
            .ok_or_else(|| std::format!("not `from ──► to, …`: {line:?}"))?;
        let from = from.trim().to_string();
        for to in tos.split(',').map(str::trim) {
            if !to.is_empty() && !to.starts_with('(') {
                edges.push((from.clone(), to.to_string()));
            }
        }
        crates.push(from);
    }
    edges.sort();
    Ok((crates, edges))
}

/// Allowed edges that the real graph does not have (a drawing that claims more than is
/// true). Informational: removing a dependency is always fine.
pub fn unused_allowances(edges: &[Edge]) -> Vec<String> {
    let mut out = Vec::new();
    for (from, tos) in ALLOWED {
        for to in *tos {
            if !edges.iter().any(|e| e.from == *from && e.to == *to) {
                out.push(std::format!("{from} -> {to}"));
            }
        }
    }
    out
}

/// Crates that (transitively) depend on themselves through `edges`, if any.
pub fn cycles(edges: &[Edge]) -> Vec<String> {
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in edges {
        adj.entry(e.from.as_str()).or_default().push(e.to.as_str());
    }
    let mut out = Vec::new();
    for start in adj.keys() {
        let mut stack: Vec<&str> = adj[start].clone();
        let mut seen: Vec<&str> = Vec::new();
        while let Some(n) = stack.pop() {
            if n == *start {
                out.push(start.to_string());
                break;
            }
            if !seen.contains(&n) {
                seen.push(n);
                if let Some(next) = adj.get(n) {
                    stack.extend(next.iter().copied());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"packages":[
      {"name":"a","manifest_path":"/ws/crates/a/Cargo.toml","dependencies":[]},
      {"name":"b","manifest_path":"/ws/crates/b/Cargo.toml","dependencies":[
        {"name":"a","source":null,"req":"*","kind":null,"path":"/ws/crates/a"},
        {"name":"libc","source":"registry+https://github.com/rust-lang/crates.io-index","req":"^0.2","kind":null},
        {"name":"a","source":null,"req":"*","kind":"dev","path":"/ws/crates/b/../a"},
        {"name":"x","source":null,"req":"*","kind":"build","path":"/elsewhere/x"}
      ]}],"workspace_members":["a 0.1.0 (path+file:///ws/crates/a)"],"version":1}"#;

    #[test]
    fn extracts_path_edges_of_every_kind() {
        let (names, edges) = graph_from_metadata(SAMPLE).unwrap();
        assert_eq!(names, ["a", "b"]);
        let got: Vec<(&str, &str, &str)> = edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("b", "<path outside the workspace: /elsewhere/x>", "build"),
                ("b", "a", "dev"),
                ("b", "a", "normal"),
            ]
        );
    }

    #[test]
    fn check_rejects_unknown_crates_and_edges() {
        let edges = [
            Edge::new("tls_sll", "ptr_conversion"),
            Edge::new("refill", "superslab"),
            Edge::new("tiny_layout", "hakmem"),
        ];
        let errors = check(&["refill", "tls_sll", "superslab", "newbox"], &edges);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("`newbox`"));
        assert!(errors[1].contains("refill -> superslab"));
        assert!(errors[2].contains("tiny_layout -> hakmem"));
    }

    #[test]
    fn reads_the_drawn_graph() {
        let md = "# x\n```text\nnot this\n```\nDependency graph (…):\n\n```text\n\
                  a ──► (none)\nb  ──► a\nc ──► b, a\n```\nafter ──► z\n";
        let (crates, edges) = drawn_graph(md).unwrap();
        assert_eq!(crates, ["a", "b", "c"]);
        let pairs: Vec<(&str, &str)> = edges
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect();
        assert_eq!(pairs, [("b", "a"), ("c", "a"), ("c", "b")]);
        assert!(drawn_graph("Dependency graph\n```text\nb -> a\n```\n").is_err());
        assert!(drawn_graph("no graph here").is_err());
    }

    #[test]
    fn boxes_are_the_allowed_crates_but_the_facade_preload_pool_and_tools() {
        let not_boxes = [
            "hakmem",
            "hakmem_preload",
            "pool_alloc",
            "box_graph_test",
            "xtask",
        ];
        let boxes: Vec<&str> = ALLOWED
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !not_boxes.contains(n))
            .collect();
        assert_eq!(boxes, BOXES);
    }

    #[test]
    fn allowed_graph_is_acyclic_and_names_only_known_crates() {
        let mut edges = Vec::new();
        for (from, tos) in ALLOWED {
            for to in *tos {
                assert!(
                    ALLOWED.iter().any(|(n, _)| n == to),
                    "{from} -> unknown {to}"
                );
                edges.push(Edge::new(from, to));
            }
        }
        assert!(cycles(&edges).is_empty());
        assert_eq!(
            cycles(&[Edge::new("a", "b"), Edge::new("b", "a")]),
            ["a", "b"]
        );
    }
}
