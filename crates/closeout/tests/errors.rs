//! Every error type is `Send + Sync + 'static`, so `?` takes it into `anyhow::Error` and
//! `Box<dyn Error + Send + Sync>`, even when what it hands back is a `!Sync` closure.

use std::cell::Cell;

use closeout::owner::Owner;
use closeout::{Registry, Resource, Scope};

fn assert_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}

fn register_twice() -> anyhow::Result<()> {
    let registry = Registry::new();
    registry.register(Resource::new("a", || ()))?;
    registry.register(Resource::new("a", || ()))?; // RegisterError
    Ok(())
}

fn batch() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let registry = Registry::new();
    registry.register_batch(vec![Resource::new("", || ())])?; // BatchError
    Ok(())
}

fn rejected() -> anyhow::Result<()> {
    let scope = Scope::new();
    let _ = scope.close_shared();
    let not_sync = Cell::new(1); // Send, not Sync
    scope.defer(move || not_sync.set(2))?; // Rejected<F>
    Ok(())
}

fn spawn_refused() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let scope = Scope::new();
    let _ = scope.close_shared();
    let not_sync = Cell::new(1);
    scope.spawn_thread("late", move |_stop| not_sync.get())?; // SpawnError<F>
    Ok(())
}

fn teardown_failed() -> anyhow::Result<()> {
    let registry = Registry::new();
    registry.register(Resource::new("bad", || Err::<(), _>(std::io::Error::other("no"))))?;
    registry.cleanup_all_blocking().into_result()?; // TeardownError
    Ok(())
}

#[test]
fn every_error_goes_into_anyhow_and_boxed_send_sync_errors() {
    let e = register_twice().unwrap_err();
    assert!(e.to_string().contains("already registered"), "{e}");
    let back = e.downcast::<closeout::RegisterError>().unwrap().into_resource();
    assert_eq!(back.get_id(), "a", "the resource is still handed back through anyhow");
    assert!(batch().is_err());
    let e = rejected().unwrap_err();
    assert!(e.to_string().contains("handed back"), "{e}");
    assert!(spawn_refused().unwrap_err().to_string().contains("handed back"));
    assert!(teardown_failed().unwrap_err().to_string().contains("bad"));
    assert_error(&closeout::Error::Closed);
}
