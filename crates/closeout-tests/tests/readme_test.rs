//! The README's test example, line for line (`readme_test_is_this_file` checks it): one test
//! that passes, one that fails on a leak, as `#[closeout::test]` makes them.

use closeout::leak::Tracked;
use closeout::{Registry, Resource};

#[closeout::test]
fn releases_its_connection(registry: &Registry) {
    let conn = Tracked::named(vec![0u8; 64], "upstream");
    registry.register(Resource::new("conn", move || drop(conn))).unwrap();
} // torn down here, then nothing tracked may be left

#[closeout::test]
#[should_panic(expected = "forgotten connection")]
fn fails_when_it_leaks() {
    std::mem::forget(Tracked::named(vec![0u8; 64], "forgotten connection"));
}

/// Every line of the README's test example is in this file, in the same order.
#[test]
fn readme_test_is_this_file() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let start = readme.find("## Where you already work").expect("README section");
    let block = &readme[start..];
    let code = &block[block.find("```rust").unwrap()..];
    let body = &code[code.find('\n').unwrap() + 1..];
    let code = &body[..body.find("```").unwrap()];
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let file = squash(&std::fs::read_to_string(root.join("tests/readme_test.rs")).unwrap());
    let mut at = 0;
    let mut lines = 0;
    // Lines rustdoc hides (`# …`) are the doctest's scaffolding, not the example.
    let shown = code.lines().filter(|l| !l.trim_start().starts_with("# ")).map(squash);
    for line in shown.filter(|l| !l.is_empty()) {
        let found = file[at..].find(&line);
        assert!(found.is_some(), "README line not in tests/readme_test.rs (in order): {line}");
        at += found.unwrap_or(0) + line.len();
        lines += 1;
    }
    assert!(lines >= 10, "the example was found: {lines} lines");
}
