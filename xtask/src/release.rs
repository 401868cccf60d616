//! `release-check`: the published libraries where their users build them. Each one
//! packaged and built from its own tarball (`cargo package`); on the
//! minimum Rust the manifests declare (`rust-version`), with every public feature;
//! ctx-vars on `wasm32-unknown-unknown`; their docs as docs.rs builds them (nightly,
//! `--cfg docsrs`, every feature, the cfg `hooks` needs), warnings denied; and against
//! the lowest versions their manifests allow (`-Z direct-minimal-versions`), so that
//! every lower bound is true. Part of `ci`;
//! `.ci/run` installs the toolchains and the target, and elsewhere a missing one is
//! skipped with a note.

use std::env;
use std::fs;
use std::process::Command;

use crate::{Result, cargo, root, run_checked};

/// The crates published to the registry, but ctx-tokio (checked apart: its `hooks`
/// feature builds only with tokio's unstable API).
const LIBRARIES: [&str; 9] = [
    "ctx-vars",
    "ctx-macros",
    "ctx-async-std",
    "ctx-smol",
    "ctx-tracing",
    "ctx-log",
    "ctx-rayon",
    "ctx-actix-web",
    "ctx-opentelemetry",
];

const WASM: &str = "wasm32-unknown-unknown";

pub(crate) fn run() -> Result<()> {
    // Every published crate from its own files, its path dependencies replaced by the
    // tarballs of the others: what the registry would hold after publishing them
    // together. The unpublished ones (tests, fixtures, xtask) would only rebuild the
    // test stack from tarballs.
    let mut package = vec!["package", "--allow-dirty", "-p", "ctx-tokio"];
    for library in LIBRARIES {
        package.extend(["-p", library]);
    }
    cargo(&package, &[])?;
    let msrv = rust_version()?;
    if toolchain_installed(&msrv) {
        each_library(&msrv, &["check", "--lib"], "target/msrv", None)?;
    } else {
        missing(&format!(
            "the MSRV check needs Rust {msrv}: rustup toolchain install {msrv} --profile minimal"
        ))?;
    }
    if target_installed(WASM) {
        let wasm = [
            "check",
            "-p",
            "ctx-vars",
            "--all-features",
            "--target",
            WASM,
        ];
        cargo(&wasm, &[])?;
    } else {
        missing(&format!(
            "the wasm check needs its target: rustup target add {WASM}"
        ))?;
    }
    if toolchain_installed("nightly") {
        // Docs as docs.rs builds them: the crates' `[package.metadata.docs.rs]`.
        let docsrs = Some("--cfg docsrs -D warnings");
        each_library("nightly", &["doc", "--no-deps"], "target/docsrs", docsrs)?;
        minimal_versions()?;
    } else {
        missing(
            "the docs.rs and minimal-versions checks need nightly: rustup toolchain install nightly",
        )?;
    }
    Ok(())
}

/// `cargo +toolchain command… --all-features` over every published library: the others
/// together, then ctx-tokio, whose `hooks` feature builds only with tokio's unstable
/// API (in target directories of their own, as in `ci`).
fn each_library(
    toolchain: &str,
    command: &[&str],
    target: &str,
    rustdocflags: Option<&str>,
) -> Result<()> {
    let toolchain = format!("+{toolchain}");
    let mut args = vec![toolchain.as_str()];
    args.extend(command);
    args.push("--all-features");
    let mut others = args.clone();
    for library in LIBRARIES {
        others.extend(["-p", library]);
    }
    let mut envs = vec![("CARGO_TARGET_DIR", target.to_owned())];
    envs.extend(rustdocflags.map(|flags| ("RUSTDOCFLAGS", flags.to_owned())));
    rustup_cargo(&others, &envs)?;
    let tokio = [&args[..], &["-p", "ctx-tokio"]].concat();
    let unstable = "--cfg tokio_unstable";
    let envs = vec![
        ("CARGO_TARGET_DIR", format!("{target}-unstable")),
        ("RUSTFLAGS", unstable.to_owned()),
        (
            "RUSTDOCFLAGS",
            rustdocflags.map_or(unstable.to_owned(), |flags| format!("{flags} {unstable}")),
        ),
    ];
    rustup_cargo(&tokio, &envs)
}

/// The libraries against the lowest versions of their direct dependencies that their
/// manifests allow. The lock file is put back afterwards, whatever happened.
fn minimal_versions() -> Result<()> {
    let lock = root().join("Cargo.lock");
    let locked = fs::read(&lock).map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let checked = rustup_cargo(
        &["+nightly", "update", "-Z", "direct-minimal-versions"],
        &[],
    )
    .and_then(|()| each_library("nightly", &["check", "--lib"], "target/minimal", None));
    fs::write(&lock, locked).map_err(|e| format!("cannot restore Cargo.lock: {e}"))?;
    checked
}

/// `rust-version` from the workspace manifest.
fn rust_version() -> Result<String> {
    let manifest = fs::read_to_string(root().join("Cargo.toml"))
        .map_err(|e| format!("cannot read Cargo.toml: {e}"))?;
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .map(str::to_owned)
        .ok_or_else(|| "no `rust-version = \"…\"` in Cargo.toml".into())
}

/// Fails in CI, where `.ci/run` installs what is missing; notes the skip elsewhere.
fn missing(what: &str) -> Result<()> {
    if env::var_os("CI").is_some() {
        return Err(format!("{what} (.ci/run installs it)"));
    }
    eprintln!("\nskipped: {what}");
    Ok(())
}

/// `cargo +toolchain args…` through rustup's proxy: the `cargo` that runs xtask is the
/// pinned toolchain's own binary, which knows no `+toolchain`.
fn rustup_cargo(args: &[&str], envs: &[(&str, String)]) -> Result<()> {
    eprintln!("\n==> cargo {}", args.join(" "));
    let mut command = Command::new("cargo");
    command
        .args(args)
        .envs(envs.iter().map(|(name, value)| (name, value)))
        .env_remove("RUSTUP_TOOLCHAIN")
        .current_dir(root());
    run_checked(command, args)
}

fn toolchain_installed(toolchain: &str) -> bool {
    Command::new("rustup")
        .args(["run", toolchain, "rustc", "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn target_installed(target: &str) -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .is_some_and(|dir| fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()))
}
