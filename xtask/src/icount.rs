//! `cargo xtask icount [--bless]`: the hot paths' instruction counts under callgrind,
//! against the baselines committed in `xtask/icount-baseline.txt`. A rise over 5 %
//! fails, with the table printed; `--bless` writes the counts measured as the new
//! baselines (commit them with the change that moved them, and say why).
//!
//! Counts are steady where times are not (criterion's swing by ±15 % on a shared
//! machine), so a regression shows here the day it lands. They are blind to code layout
//! and inlining, which `cargo xtask bench --against REV` covers.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::{Result, UNSTABLE, cargo, root};

/// How much a count may rise over its baseline.
const TOLERANCE: f64 = 1.05;

/// Which harness runs a probe.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Harness {
    /// `ctx-core/examples/icount.rs`.
    Core,
    /// `ctx-tokio/examples/hooks_icount.rs`, built with tokio's unstable API.
    Hooks,
    /// `ctx-tracing/examples/log_icount.rs`.
    Tracing,
}

/// One measured operation: what it is, its harness and the harness's arguments.
struct Probe {
    name: &'static str,
    harness: Harness,
    args: &'static [&'static str],
}

const PROBES: &[Probe] = &[
    Probe {
        name: "get (8 vars)",
        harness: Harness::Core,
        args: &["get"],
    },
    Probe {
        name: "get (1 024 vars, two levels down)",
        harness: Harness::Core,
        args: &["get_deep"],
    },
    Probe {
        name: "set + reset",
        harness: Harness::Core,
        args: &["set_reset"],
    },
    Probe {
        name: "set + reset, a variable spawned tasks do not inherit",
        harness: Harness::Core,
        args: &["set_reset_local"],
    },
    Probe {
        name: "set + reset (1 024 vars, two levels down)",
        harness: Harness::Core,
        args: &["set_reset_deep"],
    },
    Probe {
        name: "Context::current() + drop",
        harness: Harness::Core,
        args: &["current"],
    },
    Probe {
        name: "Context::inherited() + drop (the spawn copy)",
        harness: Harness::Core,
        args: &["inherited"],
    },
    Probe {
        name: "sync_scope around a get",
        harness: Harness::Core,
        args: &["sync_scope"],
    },
    Probe {
        name: "WithContext poll",
        harness: Harness::Core,
        args: &["poll"],
    },
    Probe {
        name: "ctx spawn + join, tokio current-thread",
        harness: Harness::Core,
        args: &["spawn"],
    },
    Probe {
        name: "hooks inherit, a poll",
        harness: Harness::Hooks,
        args: &["inherit", "poll"],
    },
    Probe {
        name: "hooks inherit, spawn + join",
        harness: Harness::Hooks,
        args: &["inherit", "spawn"],
    },
    Probe {
        name: "ctx-tracing text line, 2 fields",
        harness: Harness::Tracing,
        args: &["text_no_time", "ctx"],
    },
];

/// The two repetition counts each probe runs with: its cost is the difference of the
/// counts over the difference of these.
const RUNS: (u32, u32) = (10_000, 20_000);

fn baseline_file() -> PathBuf {
    root().join("xtask").join("icount-baseline.txt")
}

/// Whether valgrind can be run here.
pub(crate) fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

pub(crate) fn run(bless: bool) -> Result<()> {
    if !available() {
        return Err("valgrind not found (Debian: `apt-get install valgrind`)".into());
    }
    let core = build(Harness::Core)?;
    let hooks = build(Harness::Hooks)?;
    let tracing = build(Harness::Tracing)?;
    let mut measured = Vec::new();
    for probe in PROBES {
        let exe = match probe.harness {
            Harness::Core => &core,
            Harness::Hooks => &hooks,
            Harness::Tracing => &tracing,
        };
        let count = |n: u32| instructions(exe, probe.args, n);
        let (low, high) = (count(RUNS.0)?, count(RUNS.1)?);
        let per_op = (high as f64 - low as f64) / f64::from(RUNS.1 - RUNS.0);
        measured.push((probe.name, per_op));
    }
    if bless {
        let mut text = String::from(
            "# Instructions per operation, from `cargo xtask icount --bless`.\n\
             # `cargo xtask icount` (run by `cargo xtask ci`) fails on a rise over 5 %.\n",
        );
        for (name, count) in &measured {
            let _ = writeln!(text, "{count:.1}\t{name}");
        }
        fs::write(baseline_file(), &text).map_err(|e| format!("writing the baselines: {e}"))?;
        println!("{text}");
        return Ok(());
    }
    let baselines = read_baselines()?;
    let mut table = String::from("| operation | baseline | now | ratio |\n|---|---:|---:|---:|\n");
    let mut over = Vec::new();
    for (name, count) in &measured {
        let baseline = baselines.iter().find(|(b, _)| b == name).map(|&(_, c)| c);
        let ratio = baseline.map(|b| count / b);
        let _ = writeln!(
            table,
            "| {name} | {} | {count:.1} | {} |",
            baseline.map_or("—".into(), |b| format!("{b:.1}")),
            ratio.map_or("new".into(), |r| format!("{r:.3}"))
        );
        match ratio {
            Some(ratio) if ratio > TOLERANCE => over.push(*name),
            None => over.push(*name),
            _ => {}
        }
    }
    println!("\ninstruction counts (callgrind), per operation:\n\n{table}");
    if over.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "instruction counts over their baselines by more than 5 % (or with none): {}. \
             If the cost is meant, run `cargo xtask icount --bless` and commit \
             xtask/icount-baseline.txt with the reason",
            over.join(", ")
        ))
    }
}

/// The committed baselines: `(name, count)`.
fn read_baselines() -> Result<Vec<(String, f64)>> {
    let text = fs::read_to_string(baseline_file())
        .map_err(|e| format!("reading {}: {e}", baseline_file().display()))?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (count, name) = line.split_once('\t')?;
            Some((name.to_owned(), count.trim().parse().ok()?))
        })
        .collect())
}

/// Builds a harness with the `bench` profile (the release profile with line tables), so
/// that it reuses what `ci`'s bench runs built just before; its executable.
fn build(harness: Harness) -> Result<PathBuf> {
    let (package, example, envs, dir): (_, _, &[(&str, &str)], _) = match harness {
        Harness::Core => ("ctx-vars", "icount", &[], "target"),
        Harness::Hooks => ("ctx-tokio", "hooks_icount", &UNSTABLE, "target/unstable"),
        Harness::Tracing => ("ctx-tracing", "log_icount", &[], "target"),
    };
    let mut args = vec![
        "build",
        "--profile",
        "bench",
        "-p",
        package,
        "--example",
        example,
    ];
    if harness == Harness::Hooks {
        args.extend(["--features", "hooks"]);
    }
    cargo(&args, envs)?;
    Ok(root()
        .join(dir)
        .join("release")
        .join("examples")
        .join(example))
}

/// The instructions `exe args… n` executes, from callgrind's summary.
fn instructions(exe: &PathBuf, args: &[&str], n: u32) -> Result<u64> {
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args(args)
        .arg(n.to_string())
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "valgrind {} {args:?} {n} failed:\n{stderr}",
            exe.display()
        ));
    }
    stderr
        .lines()
        .find_map(|line| line.split_once("Collected :")?.1.trim().parse().ok())
        .ok_or_else(|| format!("no instruction count in callgrind's output:\n{stderr}"))
}
