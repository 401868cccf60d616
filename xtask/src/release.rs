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
    forget_unpacked_tarballs()?;
    let mut package = vec!["package", "--allow-dirty", "-p", "ctx-tokio"];
    package.extend(selected(&LIBRARIES));
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
    others.extend(selected(&LIBRARIES));
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
/// `-p name` for each of `packages`.
fn selected<'a>(packages: &'a [&'a str]) -> impl Iterator<Item = &'a str> {
    packages.iter().flat_map(|package| ["-p", *package])
}

/// Deletes what earlier `cargo package` runs left of our tarballs: cargo's unpacked
/// copies, and the fingerprints of their builds.
///
/// Cargo verifies each tarball against the others through a temporary registry, and
/// treats them like any registry crate: as immutable, by name and version. It unpacks
/// them under `$CARGO_HOME/registry/src/<that registry>/` and builds them into
/// `target/debug` without checking their files again. A copy or a build left by an
/// earlier run of the same version would be used instead of today's tarball, so a
/// change to one crate's API that another uses would fail (or pass) against yesterday's
/// source. crates.io's own folders (`index.crates.io-…`) are left alone.
fn forget_unpacked_tarballs() -> Result<()> {
    forget_tarball_builds()?;
    let home = env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cargo")));
    let Some(registries) = home.map(|home| home.join("registry").join("src")) else {
        return Ok(());
    };
    let Ok(registries) = fs::read_dir(registries) else {
        return Ok(());
    };
    let version = workspace_field("version")?;
    let ours: Vec<String> = std::iter::once("ctx-tokio")
        .chain(LIBRARIES)
        .map(|package| format!("{package}-{version}"))
        .collect();
    for registry in registries.flatten() {
        // Temporary registries are named by a hash alone (`-14cd…`), crates.io's by host.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for unpacked in fs::read_dir(registry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if ours
                .iter()
                .any(|name| unpacked.file_name() == name.as_str())
            {
                fs::remove_dir_all(unpacked.path())
                    .map_err(|e| format!("cannot remove {}: {e}", unpacked.path().display()))?;
            }
        }
    }
    Ok(())
}

/// The fingerprints of builds from unpacked tarballs in `target/debug`: found by their
/// dep-info files, which name sources under a temporary registry's folder.
fn forget_tarball_builds() -> Result<()> {
    let debug = root().join("target").join("debug");
    let Ok(deps) = fs::read_dir(debug.join("deps")) else {
        return Ok(());
    };
    for entry in deps.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        // `ctx_vars-0123abcd.d`, built in `.fingerprint/ctx-vars-0123abcd`.
        let Some(unit) = file
            .strip_suffix(".d")
            .filter(|unit| unit.starts_with("ctx_"))
        else {
            continue;
        };
        let from_tarball =
            fs::read_to_string(entry.path()).is_ok_and(|deps| deps.contains("/registry/src/-"));
        let fingerprint = debug.join(".fingerprint").join(unit.replace('_', "-"));
        if from_tarball && fingerprint.exists() {
            fs::remove_dir_all(&fingerprint)
                .map_err(|e| format!("cannot remove {}: {e}", fingerprint.display()))?;
        }
    }
    Ok(())
}

fn rust_version() -> Result<String> {
    workspace_field("rust-version")
}

/// `key = "…"`'s value in the workspace manifest: its first such line, the one in
/// `[workspace.package]`.
fn workspace_field(key: &str) -> Result<String> {
    let manifest = fs::read_to_string(root().join("Cargo.toml"))
        .map_err(|e| format!("cannot read Cargo.toml: {e}"))?;
    let prefix = format!("{key} = \"");
    manifest
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.strip_suffix('"'))
        .map(str::to_owned)
        .ok_or_else(|| format!("no `{key} = \"…\"` in Cargo.toml"))
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
