//! Tests that span the workspace's crates live in `tests/`; this crate has no code.
