//! The README's "Process hooks and spawned work" example as a program, line for line (a test
//! checks that the two agree): `tests/hooks.rs` sends it SIGTERM 50 times and checks every run
//! prints the report and ends killed by SIGTERM.
use closeout::owner::{Owner, Spawn};
use closeout::{Registry, Resource, hooks};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::new();
    registry.register(Resource::new("pool", || println!("pool closed")))?;
    // Stopped before the pool it uses; 5 s to drain once the token is cancelled.
    registry.spawn(
        Spawn::new("server").grace(Duration::from_secs(5)).depends_on(["pool"]),
        |token| async move {
            token.cancelled().await; // stop accepting, drain...
        },
    )?;
    let _hooks = hooks::Hooks::new(registry.clone()).deadline(Duration::from_secs(15)).install()?;
    closeout::hooks::shutdown_signal().await; // SIGTERM: teardown, report on stderr, exit
    Ok(())
}
