use closeout::owner::Owner;
use closeout::{Registry, Scope};
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let scope = Scope::new();
    let registry = Registry::new();
    rt.block_on(async {
        for _ in 0..20_000 {
            let v = match mode.as_str() {
                "scope" => scope.spawn("t", |_| async { 1u32 }).unwrap().await.unwrap(),
                "registry" => registry.spawn("t", |_| async { 1u32 }).unwrap().await.unwrap(),
                _ => tokio::spawn(async { 1u32 }).await.unwrap(),
            };
            std::hint::black_box(v);
        }
    });
}
