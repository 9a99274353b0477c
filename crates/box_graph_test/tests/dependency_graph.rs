//! The real crate graph (from `cargo metadata`) against the allowed one.

use box_graph_test::{
    check, cycles, drawn_graph, graph_from_metadata, unused_allowances, workspace_metadata,
};
use std::path::Path;

#[test]
fn workspace_dependency_graph_is_the_allowed_one() {
    let (crates, edges) =
        graph_from_metadata(&workspace_metadata().unwrap()).expect("parsing cargo metadata");
    // Sanity: we did read the workspace (a parse that found nothing would pass vacuously).
    for known in ["tiny_layout", "superslab", "hakmem"] {
        assert!(
            crates.iter().any(|c| c == known),
            "{known} missing from {crates:?}"
        );
    }
    assert!(
        edges
            .iter()
            .any(|e| e.from == "ptr_conversion" && e.to == "tiny_layout"),
        "no edges found: {edges:?}"
    );

    let names: Vec<&str> = crates.iter().map(String::as_str).collect();
    let errors = check(&names, &edges);
    assert!(
        errors.is_empty(),
        "the crate graph breaks the box contracts:\n  {}",
        errors.join("\n  ")
    );
    assert!(
        cycles(&edges).is_empty(),
        "dependency cycle: {:?}",
        cycles(&edges)
    );

    let unused = unused_allowances(&edges);
    if !unused.is_empty() {
        eprintln!(
            "note: allowed edges not used (the drawing may claim more than is true): {unused:?}"
        );
    }
}

#[test]
fn architecture_drawing_is_the_real_graph() {
    let (crates, edges) =
        graph_from_metadata(&workspace_metadata().unwrap()).expect("parsing cargo metadata");
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/architecture.md");
    let md = std::fs::read_to_string(&doc).expect("reading docs/architecture.md");
    let (drawn_crates, drawn) = drawn_graph(&md).expect("the drawing in docs/architecture.md");

    // Every crate but the tools has a line of its own.
    let mut want: Vec<&str> = crates
        .iter()
        .map(String::as_str)
        .filter(|c| !["box_graph_test", "xtask"].contains(c))
        .collect();
    let mut have: Vec<&str> = drawn_crates.iter().map(String::as_str).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want, "crates drawn in docs/architecture.md");

    // Edges of any kind (normal, dev, build), once each.
    let mut real: Vec<(String, String)> = edges.into_iter().map(|e| (e.from, e.to)).collect();
    real.sort();
    real.dedup();
    assert_eq!(
        drawn, real,
        "docs/architecture.md draws another graph than the manifests have"
    );
}
