//! The real crate graph (from `cargo metadata`) against the allowed one.

use box_graph_test::{check, cycles, graph_from_metadata, unused_allowances, workspace_metadata};

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
