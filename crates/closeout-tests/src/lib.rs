//! Tests that span the workspace's crates live in `tests/`; this crate has no code of its own.
//!
//! The README's examples are doctests here, since they use several crates: every one that can
//! run does.

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../closeout/README.md")]
struct CloseoutReadmeDoctests;
