//! Instruction-count probe for registry register + cleanup_all, for BENCHMARKS.md:
//! `valgrind --tool=callgrind target/release/examples/probe_registry 100000`.
use closeout::{Category, Registry, Resource};
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let cats = [Category::Database, Category::File, Category::Network, Category::Timer];
    let ids: Vec<String> = (0..n).map(|i| format!("res-{i}")).collect();
    let registry = Registry::new();
    for (i, id) in ids.into_iter().enumerate() {
        registry.register(Resource::new(id, || ()).category(cats[i % 4].clone())).unwrap();
    }
    let report = registry.cleanup_all_blocking();
    assert_eq!(report.len(), n);
}
