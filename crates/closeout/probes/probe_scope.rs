//! Instruction-count probe for the scope hot path, for BENCHMARKS.md:
//! `valgrind --tool=callgrind target/release/examples/probe_scope [baseline]`.
//! `probe_scope` uses `Scope`; `probe_scope baseline` a plain `Vec<Box<dyn FnOnce()>>`.
fn main() {
    let baseline = std::env::args().nth(1).as_deref() == Some("baseline");
    for _ in 0..200 {
        if baseline {
            let mut v: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
            for i in 0..1000u64 {
                v.push(Box::new(move || {
                    std::hint::black_box(i);
                }));
            }
            while let Some(f) = v.pop() {
                f();
            }
        } else {
            let scope = closeout::Scope::new();
            for i in 0..1000u64 {
                let _ = scope.defer(move || {
                    std::hint::black_box(i);
                });
            }
            std::hint::black_box(scope.close());
        }
    }
}
