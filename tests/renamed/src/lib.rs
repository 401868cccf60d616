//! The macros through a renamed dependency: see `tests/renamed.rs`.
