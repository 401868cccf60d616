//! Project automation, std only: `cargo xtask <command>`.
//!
//! - `ci`: formatting, lints, every test (unit, integration, doc) and docs, warnings denied.
//! - `bench [--quick]`: runs the criterion benchmarks, prints the comparison table with
//!   ratios against each target, and writes it into `BENCHMARKS.md`.
//! - `bench --against REV`: the working tree's benches and `REV`'s, built apart and run
//!   alternately, with the ratio per bench (see `against.rs`).
//! - `icount [--bless]`: the hot paths' instruction counts against the committed
//!   baselines (see `icount.rs`); part of `ci` where valgrind is installed.
//! - `release-check`: every crate packaged and built from its tarball, the published
//!   libraries on their declared minimum Rust and lowest dependency versions, ctx-vars
//!   on wasm, and docs built as docs.rs does (see `release.rs`); part of `ci`.

mod against;
mod icount;
mod release;

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") if args.iter().any(|a| a == "--against") => {
            against::Options::parse(&args[1..]).and_then(|options| against::run(&options))
        }
        Some("bench") => bench(args[1..].iter().any(|a| a == "--quick")),
        Some("bench-report") => bench_report().map(|_| ()),
        Some("icount") => icount::run(args[1..].iter().any(|a| a == "--bless")),
        Some("release-check") => release::run(),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 ci            fmt check, clippy -D warnings, all tests, docs -D warnings\n  \
                 bench         run the benchmarks and update BENCHMARKS.md (--quick: shorter runs)\n  \
                 bench --against REV [--rounds N] [--filter RE] [--bench PACKAGE:NAME]\n                \
                 the working tree's benches against REV's, run alternately, with ratios\n  \
                 bench-report  rebuild the BENCHMARKS.md table from the last bench run\n  \
                 icount        instruction counts of the hot paths against their baselines\n                \
                 (--bless: write the counts measured as the new baselines)\n  \
                 release-check every crate packaged, the libraries on their minimum Rust and\n                \
                 lowest dependencies, ctx-vars on wasm, docs as docs.rs builds\n                \
                 them (also run by ci)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

type Result<T, E = String> = std::result::Result<T, E>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `cargo args…` in the workspace root, announced on stderr.
fn cargo_command(args: &[&str]) -> Command {
    eprintln!("\n==> cargo {}", args.join(" "));
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args).current_dir(root());
    command
}

/// Runs `cargo args…`, failing on a non-zero exit.
fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let mut command = cargo_command(args);
    command.envs(envs.iter().copied());
    run_checked(command, args)
}

/// Runs a cargo `command` made with `args`, failing on a non-zero exit.
fn run_checked(mut command: Command, args: &[&str]) -> Result<()> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// The environment of ctx-tokio's task hooks, which build only with tokio's unstable
/// API: in a target directory of their own, because the flag changes every crate's
/// build and would otherwise throw away the main build's artifacts.
const UNSTABLE: [(&str, &str); 3] = [
    ("RUSTFLAGS", "--cfg tokio_unstable"),
    ("RUSTDOCFLAGS", "--cfg tokio_unstable"),
    ("CARGO_TARGET_DIR", "target/unstable"),
];

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    // Everything, then the core without its default features.
    let lint_sets: [&[&str]; 2] = [
        &["--workspace", "--all-targets"],
        &["-p", "ctx-vars", "--no-default-features"],
    ];
    for set in lint_sets {
        cargo(&[&["clippy"], set, &["--", "-D", "warnings"]].concat(), &[])?;
    }
    cargo(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    // The libraries on their minimum Rust, the core on wasm, docs as docs.rs builds them.
    release::run()?;
    // Run each benchmark once, so that a broken bench fails CI.
    for (package, name) in BENCHES {
        cargo(
            &["bench", "-p", package, "--bench", name, "--", "--test"],
            &[],
        )?;
    }
    // ctx-tokio's task hooks: linted, benched once and tested with tokio's unstable API.
    let hooks = ["-p", "ctx-tokio", "--features", "hooks"];
    let clippy = ["--all-targets", "--", "-D", "warnings"];
    cargo(&[&["clippy"], &hooks[..], &clippy].concat(), &UNSTABLE)?;
    let bench_once = ["--bench", "hooks", "--", "--test"];
    cargo(&[&["bench"], &hooks[..], &bench_once].concat(), &UNSTABLE)?;
    let (hooks_passed, hooks_failed) = cargo_test(&[&["test"], &hooks[..]].concat(), &UNSTABLE)?;
    // The hot paths' instruction counts: a rise over 5 % fails.
    if icount::available() {
        icount::run(false)?;
    } else if env::var_os("CI").is_some() {
        return Err(
            "valgrind is needed for the instruction-count check (.ci/run installs it)".into(),
        );
    } else {
        eprintln!(
            "\nskipped: the instruction-count check needs valgrind (apt-get install valgrind)"
        );
    }
    // Last, so that the summary closes the log.
    let (passed, failed) = cargo_test(&["test", "--workspace"], &[])?;
    let (passed, failed) = (passed + hooks_passed, failed + hooks_failed);
    eprintln!("\nxtask ci: all green");
    println!("tests: {passed} passed, {failed} failed");
    Ok(())
}

/// Runs `cargo test …`, echoing its output, and adds up its `test result:` lines.
fn cargo_test(args: &[&str], envs: &[(&str, &str)]) -> Result<(usize, usize)> {
    let output = cargo_command(args)
        .envs(envs.iter().copied())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    let (mut passed, mut failed) = (0, 0);
    for line in stdout.lines().filter(|l| l.starts_with("test result:")) {
        passed += count_before(line, " passed");
        failed += count_before(line, " failed");
    }
    if !output.status.success() {
        println!("tests: {passed} passed, {failed} failed");
        return Err(format!(
            "`cargo {}` failed ({})",
            args.join(" "),
            output.status
        ));
    }
    if passed == 0 {
        return Err("no test ran".into());
    }
    Ok((passed, failed))
}

/// The number just before `label` in `line` (`"… 12 passed; …"` → 12).
fn count_before(line: &str, label: &str) -> usize {
    line.find(label)
        .and_then(|end| line[..end].rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Each criterion bench target, as (package, bench).
const BENCHES: [(&str, &str); 5] = [
    ("ctx-vars", "core"),
    ("ctx-bench-support", "spawn"),
    ("ctx-tracing", "format"),
    ("ctx-opentelemetry", "bridge"),
    ("ctx-rayon", "par_iter"),
];

fn bench(quick: bool) -> Result<()> {
    for (package, name) in BENCHES {
        let mut args = vec!["bench", "-p", package, "--bench", name, "--"];
        if quick {
            args.extend(["--warm-up-time", "0.5", "--measurement-time", "1"]);
        }
        cargo(&args, &[])?;
    }
    // The task hooks' bench, with tokio's unstable API; its results beside the others.
    let criterion_home = root().join("target").join("criterion");
    let criterion_home = criterion_home.to_string_lossy();
    let mut args = vec![
        "bench",
        "-p",
        "ctx-tokio",
        "--features",
        "hooks",
        "--bench",
        "hooks",
        "--",
    ];
    if quick {
        args.extend(["--warm-up-time", "0.5", "--measurement-time", "1"]);
    }
    let envs: Vec<(&str, &str)> = UNSTABLE
        .into_iter()
        .chain([("CRITERION_HOME", &*criterion_home)])
        .collect();
    cargo(&args, &envs)?;
    let table = bench_report()?;
    println!("{table}");
    Ok(())
}

/// One row of the comparison: a ctx figure, its peer, and the target ratio. Where the
/// first goals and the hot-path round's differ, the row holds the tighter: 1 024 vars
/// ≤ 1.3× and poll ≤ 2.5 ns from the round, `set` + `reset` ≤ 0.3× and `sync_scope` ≤ 3×
/// from the first.
struct Target {
    what: &'static str,
    ours: &'static str,
    peer: &'static str,
    kind: TargetKind,
}

enum TargetKind {
    /// `ours / peer` at most this.
    Ratio(f64),
    /// `ours / peer`, shown for reference.
    PeerRatio,
    /// `(ours - peer) / polls` at most `max_ns` nanoseconds (`None`: shown for reference).
    PerPollOverhead { polls: f64, max_ns: Option<f64> },
}

const TARGETS: &[Target] = &[
    Target {
        what: "`get` of a `u64`, 8 vars set vs tokio `task_local` `get`",
        ours: "get/ctx/8",
        peer: "get/tokio_task_local",
        kind: TargetKind::Ratio(1.5),
    },
    Target {
        what: "`get`, 1024 vars set vs the 8-var `get`",
        ours: "get/ctx/1024",
        peer: "get/ctx/8",
        kind: TargetKind::Ratio(1.3),
    },
    Target {
        what: "(flow policy) `get` of a variable declared `inherit(false)`, 8 vars, vs an inherited one",
        ours: "get/ctx_local/8",
        peer: "get/ctx/8",
        kind: TargetKind::Ratio(1.1),
    },
    Target {
        what: "(contention) `get`, 8 vars, while another thread copies the same context, vs alone",
        ours: "get/ctx_8_while_another_thread_copies",
        peer: "get/ctx/8",
        kind: TargetKind::PeerRatio,
    },
    Target {
        what: "`set` + `reset`, 8 vars vs opentelemetry `with_value`+`attach`+drop",
        ours: "set_reset/ctx/8",
        peer: "set_reset/otel_attach/8",
        kind: TargetKind::Ratio(0.3),
    },
    Target {
        what: "`sync_scope` enter+get+exit, 8 vars vs tokio `sync_scope`",
        ours: "sync_scope/ctx/8",
        peer: "sync_scope/tokio_task_local",
        kind: TargetKind::Ratio(3.0),
    },
    Target {
        what: "`Context::current()` (copy), 8 vars vs `thread_local!` read",
        ours: "current/ctx/8",
        peer: "current/thread_local",
        kind: TargetKind::Ratio(2.5),
    },
    Target {
        what: "(flow policy) `Context::inherited()` (what a spawn copies), 8 vars, vs `Context::current()`",
        ours: "current/ctx_inherited/8",
        peer: "current/ctx/8",
        kind: TargetKind::Ratio(1.1),
    },
    Target {
        what: "`Context::current()` (copy), 1024 vars vs `thread_local!` read",
        ours: "current/ctx/1024",
        peer: "current/thread_local",
        kind: TargetKind::Ratio(2.5),
    },
    Target {
        what: "`WithContext` poll overhead, future yielding 1000 times",
        ours: "poll/with_context/8",
        peer: "poll/bare",
        kind: TargetKind::PerPollOverhead {
            polls: 1001.0,
            max_ns: Some(2.5),
        },
    },
    Target {
        what: "100 000 tasks spawned and joined, tokio (2 workers): `ctx_tokio::spawn` (8 vars) vs `tokio::spawn`",
        ours: "spawn_tokio/ctx",
        peer: "spawn_tokio/raw",
        kind: TargetKind::Ratio(1.05),
    },
    Target {
        what: "(peer) the same with opentelemetry's `with_current_context()`",
        ours: "spawn_tokio/otel_with_current_context",
        peer: "spawn_tokio/raw",
        kind: TargetKind::PeerRatio,
    },
    Target {
        what: "(peer) the same with tokio's `task_local` `scope`",
        ours: "spawn_tokio/tokio_task_local_scope",
        peer: "spawn_tokio/raw",
        kind: TargetKind::PeerRatio,
    },
    Target {
        what: "(same, one thread) tokio current-thread: `ctx_tokio::spawn` (8 vars) vs `tokio::spawn`",
        ours: "spawn_tokio_current_thread/ctx",
        peer: "spawn_tokio_current_thread/raw",
        kind: TargetKind::Ratio(1.05),
    },
    Target {
        what: "100 000 tasks spawned and joined, smol: `ctx_smol::spawn` (8 vars) vs `smol::spawn`",
        ours: "spawn_smol/ctx",
        peer: "spawn_smol/raw",
        kind: TargetKind::Ratio(1.05),
    },
    Target {
        what: "100 000 tasks spawned and joined, async-std: `ctx_async_std::spawn` (8 vars) vs raw",
        ours: "spawn_async_std/ctx",
        peer: "spawn_async_std/raw",
        kind: TargetKind::Ratio(1.05),
    },
    Target {
        what: "(ctx-tracing) a text log line with 2 context fields vs the stock `fmt()` text formatter",
        ours: "log_text/ctx_2_fields",
        peer: "log_text/stock",
        kind: TargetKind::Ratio(1.1),
    },
    Target {
        what: "(peer) the same 2 values passed as event fields instead, vs the stock line",
        ours: "log_text/stock_2_event_fields",
        peer: "log_text/stock",
        kind: TargetKind::PeerRatio,
    },
    Target {
        what: "(ctx-tracing) the same, without timestamps (formatting alone)",
        ours: "log_text_no_time/ctx_2_fields",
        peer: "log_text_no_time/stock",
        kind: TargetKind::PeerRatio,
    },
    Target {
        what: "(ctx-tracing) the text line, a variable set before every event (no line reuses the last one's fields), vs the stock line with the same sets",
        ours: "log_text/ctx_2_fields_set_each",
        peer: "log_text/stock_set_each",
        kind: TargetKind::PeerRatio,
    },
    Target {
        what: "(ctx-tracing) a JSON log line with 2 top-level context fields vs stock `fmt().json()`",
        ours: "log_json/ctx_2_fields",
        peer: "log_json/stock",
        kind: TargetKind::PeerRatio,
    },
    Target {
        what: "(ctx-opentelemetry) the OpenTelemetry bridge's poll overhead over ctx's wrapper, no OpenTelemetry context stored",
        ours: "bridge_poll/ctx_with_bridge_unset",
        peer: "bridge_poll/ctx_with_context",
        kind: TargetKind::PerPollOverhead {
            polls: 1001.0,
            max_ns: None,
        },
    },
    Target {
        what: "(ctx-opentelemetry) the same, one stored (attached and detached at every poll)",
        ours: "bridge_poll/ctx_with_bridge",
        peer: "bridge_poll/ctx_with_context",
        kind: TargetKind::PerPollOverhead {
            polls: 1001.0,
            max_ns: None,
        },
    },
    Target {
        what: "(peer) OpenTelemetry's own `with_context` poll overhead, same future",
        ours: "bridge_poll/otel_with_context",
        peer: "bridge_poll/bare",
        kind: TargetKind::PerPollOverhead {
            polls: 1001.0,
            max_ns: None,
        },
    },
    Target {
        what: "(ctx-tokio hooks) `isolate`: poll overhead over a hook-less runtime (current-thread, a task yielding 1000 times)",
        ours: "hooks_poll/isolate",
        peer: "hooks_poll/raw",
        kind: TargetKind::PerPollOverhead {
            polls: 1001.0,
            max_ns: Some(3.0),
        },
    },
    Target {
        what: "(ctx-tokio hooks) `inherit`: the same, the task inheriting 8 variables",
        ours: "hooks_poll/inherit",
        peer: "hooks_poll/raw",
        kind: TargetKind::PerPollOverhead {
            polls: 1001.0,
            max_ns: Some(25.0),
        },
    },
    Target {
        what: "(ctx-tokio hooks) `inherit`: 100 000 tasks spawned and joined vs a hook-less runtime",
        ours: "hooks_spawn/inherit",
        peer: "hooks_spawn/raw",
        kind: TargetKind::Ratio(1.25),
    },
    Target {
        what: "(ctx-tokio hooks) `isolate`: the same",
        ours: "hooks_spawn/isolate",
        peer: "hooks_spawn/raw",
        kind: TargetKind::PeerRatio,
    },
    Target {
        what: "(peer) tokio `task_local` `scope` poll overhead, same future",
        ours: "poll/tokio_task_local_scope",
        peer: "poll/bare",
        kind: TargetKind::PerPollOverhead {
            polls: 1001.0,
            max_ns: None,
        },
    },
];

const BEGIN: &str = "<!-- xtask:bench:begin -->";
const END: &str = "<!-- xtask:bench:end -->";

/// Builds the tables from criterion's saved estimates and writes them into BENCHMARKS.md.
fn bench_report() -> Result<String> {
    let dir = root().join("target/criterion");
    let mut all = Vec::new();
    collect_estimates(&dir, &dir, &mut all)?;
    if all.is_empty() {
        return Err("no benchmark results under target/criterion; run `cargo xtask bench`".into());
    }
    all.sort_by_key(|(id, _)| natural_key(id));
    let find = |id: &str| all.iter().find(|(name, _)| name == id).map(|(_, ns)| *ns);

    let mut out = String::new();
    out.push_str("| target | ctx | peer | ratio / overhead | goal | met |\n");
    out.push_str("|---|---:|---:|---:|---:|:---:|\n");
    for target in TARGETS {
        let (Some(ours), Some(peer)) = (find(target.ours), find(target.peer)) else {
            let _ = writeln!(out, "| {} | – | – | not measured | | |", target.what);
            continue;
        };
        let (value, goal, met) = match target.kind {
            TargetKind::Ratio(max) => {
                let ratio = ours / peer;
                (
                    format!("{ratio:.3}×"),
                    format!("≤ {max}×"),
                    Some(ratio <= max),
                )
            }
            TargetKind::PeerRatio => (format!("{:.3}×", ours / peer), "–".into(), None),
            TargetKind::PerPollOverhead { polls, max_ns } => {
                let per_poll = (ours - peer) / polls;
                let value = format!("{per_poll:.2} ns/poll");
                match max_ns {
                    Some(max) => (value, format!("≤ {max} ns"), Some(per_poll <= max)),
                    None => (value, "–".into(), None),
                }
            }
        };
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {value} | {goal} | {met} |",
            target.what,
            show_ns(ours),
            show_ns(peer),
        );
    }
    out.push_str(
        "\nAll figures (median time per iteration):\n\n| benchmark | time |\n|---|---:|\n",
    );
    for (name, ns) in &all {
        let _ = writeln!(out, "| `{name}` | {} |", show_ns(*ns));
    }

    let path = root().join("BENCHMARKS.md");
    let text = fs::read_to_string(&path).map_err(|e| format!("reading BENCHMARKS.md: {e}"))?;
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!("BENCHMARKS.md lacks the {BEGIN} … {END} markers"));
    };
    let updated = format!("{}{BEGIN}\n{out}{}", &text[..begin], &text[end..]);
    fs::write(&path, updated).map_err(|e| format!("writing BENCHMARKS.md: {e}"))?;
    Ok(out)
}

/// Finds every `<id>/new/estimates.json` below `dir`, as (`id`, median in ns).
fn collect_estimates(base: &Path, dir: &Path, out: &mut Vec<(String, f64)>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() || path.file_name().is_some_and(|n| n == "report") {
            continue;
        }
        let estimates = path.join("new/estimates.json");
        if estimates.is_file() {
            let json = fs::read_to_string(&estimates).map_err(|e| e.to_string())?;
            let id = path
                .strip_prefix(base)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .replace('\\', "/");
            let median = point_estimate(&json, "median")
                .ok_or_else(|| format!("no median in {}", estimates.display()))?;
            out.push((id, median));
        } else {
            collect_estimates(base, &path, out)?;
        }
    }
    Ok(())
}

/// `"<stat>": { … "point_estimate": X … }` from criterion's estimates.json.
fn point_estimate(json: &str, stat: &str) -> Option<f64> {
    let at = json.find(&format!("\"{stat}\""))?;
    let rest = &json[at..];
    let value = &rest[rest.find("\"point_estimate\"")? + "\"point_estimate\"".len()..];
    let value = value.trim_start().strip_prefix(':')?.trim_start();
    let end = value
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')))
        .unwrap_or(value.len());
    value[..end].parse().ok()
}

/// Sorts `get/ctx/8` before `get/ctx/64`.
fn natural_key(id: &str) -> Vec<(String, u64)> {
    id.split('/')
        .map(|part| match part.parse::<u64>() {
            Ok(n) => (String::new(), n),
            Err(_) => (part.to_owned(), 0),
        })
        .collect()
}

fn show_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.2} ns")
    }
}
