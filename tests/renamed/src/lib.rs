//! The macros through a renamed dependency: see `tests/renamed.rs`.

/// Declared without `crate = …`: the macros find ctx-vars in the manifest under the
/// name `context`.
#[context::context_var]
pub static ATTEMPT: u32 = 1;

/// Reads [`ATTEMPT`] with a preset, again without `crate = …`.
#[context::with_context(ATTEMPT = 2)]
pub fn second_attempt() -> Option<u32> {
    ATTEMPT.get()
}
