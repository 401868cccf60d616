//! Misuse of the macros gives clear, spanned compile errors.
//!
//! The expected `.stderr` files are checked against one toolchain, [`PINNED`]: compiler
//! messages change between releases. `rust-toolchain.toml` pins the same one, so a
//! build in the repository uses it, and CI (`.ci/run` sets `CTX_UI_TESTS=1`) never skips
//! them. On another toolchain these tests report themselves skipped (set
//! `CTX_UI_TESTS=1` to run them anyway, `TRYBUILD=overwrite` to re-bless).

use std::process::Command;

/// The toolchain the committed `.stderr` files were produced with.
const PINNED: &str = "1.95.0";

#[test]
fn macro_misuse_is_a_spanned_compile_error() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let pinned = version.starts_with(&format!("rustc {PINNED} "));
    if !pinned && std::env::var_os("CTX_UI_TESTS").is_none() {
        eprintln!("skipped: UI tests are pinned to rustc {PINNED}, this is {version}");
        return;
    }
    trybuild::TestCases::new().compile_fail("ui/*.rs");
}

/// The toolchain the repository pins is the one the `.stderr` files were blessed on.
#[test]
fn the_pinned_toolchain_is_the_blessed_one() {
    let toolchain = include_str!("../../rust-toolchain.toml");
    assert!(
        toolchain.contains(&format!("channel = \"{PINNED}\"")),
        "rust-toolchain.toml and PINNED disagree: re-bless the UI tests on the new toolchain"
    );
}
