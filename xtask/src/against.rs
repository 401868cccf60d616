//! `cargo xtask bench --against REV`: the criterion benches of two builds, the working
//! tree's and `REV`'s, run alternately, with the ratio per bench.
//!
//! Instruction counts are steady but blind to code layout and inlining: a change that
//! keeps every count and still costs time (a hot loop moved across a cache line, a call
//! no longer inlined) shows only in time, and time on a shared machine drifts by more
//! than such a change between two runs made minutes apart. Alternating the two builds,
//! round after round, puts both under the same drift; the least of each side's rounds is
//! compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, UNSTABLE, cargo_command, root};

/// What `bench --against` was asked for.
pub(crate) struct Options {
    pub(crate) rev: String,
    pub(crate) rounds: usize,
    /// Criterion's name filter (a regex), if any.
    pub(crate) filter: Option<String>,
    /// `(package, bench)` targets; ctx-vars' `core` when none is given.
    pub(crate) benches: Vec<(String, String)>,
}

impl Options {
    /// Parses the arguments after `bench`: `--against REV [--rounds N] [--filter RE]
    /// [--bench PACKAGE:NAME]...`.
    pub(crate) fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            rev: String::new(),
            rounds: 3,
            filter: None,
            benches: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("`{arg}` needs a value"))
            };
            match arg.as_str() {
                "--against" => options.rev = value()?,
                "--rounds" => {
                    options.rounds = value()?
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or("`--rounds` is a number above 0")?;
                }
                "--filter" => options.filter = Some(value()?),
                "--bench" => {
                    let target = value()?;
                    let (package, name) = target
                        .split_once(':')
                        .ok_or_else(|| format!("`--bench {target}`: expected PACKAGE:NAME"))?;
                    options.benches.push((package.into(), name.into()));
                }
                other => return Err(format!("unknown argument `{other}` for `bench --against`")),
            }
        }
        if options.rev.is_empty() {
            return Err("`bench --against` needs a revision".into());
        }
        if options.benches.is_empty() {
            options.benches.push(("ctx-vars".into(), "core".into()));
        }
        Ok(options)
    }
}

pub(crate) fn run(options: &Options) -> Result<()> {
    let sha = git(
        &root(),
        &[
            "rev-parse",
            "--verify",
            &format!("{}^{{commit}}", options.rev),
        ],
    )?;
    let work = root().join("target").join("xtask-against");
    let tree = work.join(&sha[..12]);
    if !tree.join("Cargo.toml").exists() {
        let tree = tree.to_string_lossy();
        git(
            &root(),
            &["worktree", "add", "--force", "--detach", &tree, &sha],
        )?;
    }
    let label = format!("{} ({})", options.rev, &sha[..9]);
    let mut executables = Vec::new();
    for (package, name) in &options.benches {
        let before = build(&tree, package, name)?;
        let after = build(&root(), package, name)?;
        executables.push((package.as_str(), name.as_str(), [before, after]));
    }
    // The least time of each bench on each side, in nanoseconds.
    let mut least: BTreeMap<String, [f64; 2]> = BTreeMap::new();
    for round in 0..options.rounds {
        for side in 0..2 {
            for (package, name, exes) in &executables {
                eprintln!(
                    "==> round {}/{}: {package}:{name}, {}",
                    round + 1,
                    options.rounds,
                    ["before", "after"][side]
                );
                let home = work.join("criterion").join(format!("{side}-{round}"));
                let out = criterion(&exes[side], options.filter.as_deref(), &home, package, name)?;
                for (bench, ns) in parse_times(&out) {
                    let entry = least.entry(bench).or_insert([f64::INFINITY; 2]);
                    entry[side] = entry[side].min(ns);
                }
            }
        }
    }
    println!(
        "\n{} rounds, alternating; the least of each side, ns\n",
        options.rounds
    );
    println!("| bench | {label} | working tree | ratio |");
    println!("|---|---:|---:|---:|");
    for (bench, [before, after]) in &least {
        let ratio = if before.is_finite() && after.is_finite() {
            format!("{:.3}", after / before)
        } else {
            "—".into()
        };
        println!(
            "| `{bench}` | {} | {} | {ratio} |",
            shown(*before),
            shown(*after)
        );
    }
    Ok(())
}

fn shown(ns: f64) -> String {
    if ns.is_finite() {
        format!("{ns:.2}")
    } else {
        "—".into()
    }
}

/// `git args…` in `dir`, its trimmed output.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The environment a bench builds and runs in: tokio's unstable API for the hooks'.
fn envs(package: &str, name: &str) -> &'static [(&'static str, &'static str)] {
    if (package, name) == ("ctx-tokio", "hooks") {
        &UNSTABLE
    } else {
        &[]
    }
}

/// The folder, relative to the workspace root, of the member named `package` today.
fn folder_of(package: &str) -> Result<String> {
    let wanted = format!("name = \"{package}\"");
    members(&root())?
        .into_iter()
        .find(|member| {
            std::fs::read_to_string(root().join(member).join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.lines().any(|line| line.trim() == wanted))
        })
        .ok_or_else(|| format!("no workspace member is named `{package}`"))
}

/// The member folders of the workspace at `tree`, as its manifest lists them.
fn members(tree: &Path) -> Result<Vec<String>> {
    let workspace = std::fs::read_to_string(tree.join("Cargo.toml")).map_err(|e| {
        format!(
            "cannot read the workspace manifest in {}: {e}",
            tree.display()
        )
    })?;
    let members = workspace
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .ok_or("no `members = [...]` in the workspace manifest")?;
    Ok(members
        .split(',')
        .map(|member| member.trim().trim_matches('"'))
        .filter(|member| !member.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The folder in `tree` that holds bench `name` of `package`: the package's own folder,
/// or, in a revision from before the bench moved, the member whose `benches/` has it.
fn bench_folder(tree: &Path, package: &str, name: &str) -> Result<String> {
    let folder = folder_of(package)?;
    let file = format!("benches/{name}.rs");
    if tree.join(&folder).join(&file).exists() {
        return Ok(folder);
    }
    members(tree)?
        .into_iter()
        .find(|member| tree.join(member).join(&file).exists())
        .ok_or_else(|| format!("no bench `{name}` in {}", tree.display()))
}

/// Builds one bench target in the workspace at `tree`; its executable.
fn build(tree: &Path, package: &str, name: &str) -> Result<PathBuf> {
    // By folder, not by package name: folders keep their names when a package is
    // renamed, so a revision from before the rename builds too; and a bench is looked
    // for where it was, if it has moved since.
    let manifest = tree
        .join(bench_folder(tree, package, name)?)
        .join("Cargo.toml");
    let manifest = manifest.to_string_lossy();
    let mut args = vec![
        "bench",
        "--manifest-path",
        &manifest,
        "--bench",
        name,
        "--no-run",
    ];
    if !envs(package, name).is_empty() {
        args.extend(["--features", "hooks"]);
    }
    let output = cargo_command(&args)
        .current_dir(tree)
        .envs(envs(package, name).iter().copied())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "building {package}:{name} in {} failed:\n{stderr}",
            tree.display()
        ));
    }
    // "  Executable benches/core.rs (target/release/deps/core-0123abcd)"
    let path = stderr
        .lines()
        .filter(|line| line.trim_start().starts_with("Executable"))
        .find_map(|line| line.rsplit_once('(')?.1.strip_suffix(')'))
        .ok_or_else(|| format!("no executable reported for {package}:{name}"))?;
    Ok(tree.join(path))
}

/// Runs one bench executable once; its standard output.
fn criterion(
    exe: &Path,
    filter: Option<&str>,
    home: &Path,
    package: &str,
    name: &str,
) -> Result<String> {
    let mut command = Command::new(exe);
    command.arg("--bench");
    command.args(filter);
    command.args(["--warm-up-time", "1", "--measurement-time", "3", "--noplot"]);
    command.env("CRITERION_HOME", home);
    command.envs(envs(package, name).iter().copied());
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({})", exe.display(), output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `(bench, ns)` for each criterion result in `out`: `name  time: [low mid high]`, the
/// name alone on the line before when it is long.
fn parse_times(out: &str) -> Vec<(String, f64)> {
    let mut found = Vec::new();
    let mut name: Option<String> = None;
    for line in out.lines() {
        let (head, rest) = match line.find("time:") {
            Some(at) => (&line[..at], Some(&line[at + "time:".len()..])),
            None => (line, None),
        };
        if !head.starts_with(char::is_whitespace) && !head.trim().is_empty() {
            name = Some(head.trim().to_owned());
        }
        let (Some(rest), Some(bench)) = (rest, &name) else {
            continue;
        };
        // "[1.0 ns 1.1 ns 1.2 ns]": the middle estimate.
        let words: Vec<&str> = rest
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split_whitespace()
            .collect();
        if let [_, _, mid, unit, ..] = words[..] {
            let scale = match unit {
                "ps" => 1e-3,
                "ns" => 1.0,
                "µs" | "us" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                _ => continue,
            };
            if let Ok(value) = mid.parse::<f64>() {
                found.push((bench.clone(), value * scale));
            }
        }
        name = None;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::{bench_folder, folder_of, parse_times};

    #[test]
    fn packages_are_found_by_their_folders() {
        assert_eq!(folder_of("ctx-vars").unwrap(), "ctx-core");
        assert_eq!(folder_of("ctx-tests").unwrap(), "tests");
        assert_eq!(folder_of("ctx-tokio").unwrap(), "ctx-tokio");
        assert!(
            folder_of("ctx-core").is_err(),
            "no package has that name any more"
        );
    }

    #[test]
    fn a_bench_is_found_where_a_revision_had_it() {
        let old = std::env::temp_dir().join(format!("ctx-xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(old.join("tests/benches")).unwrap();
        std::fs::write(
            old.join("Cargo.toml"),
            "members = [\"ctx-core\", \"tests\"]",
        )
        .unwrap();
        std::fs::write(old.join("tests/benches/spawn.rs"), "").unwrap();
        let found = bench_folder(&old, "ctx-bench-support", "spawn");
        let missing = bench_folder(&old, "ctx-bench-support", "nothing");
        std::fs::remove_dir_all(&old).unwrap();
        assert_eq!(found.unwrap(), "tests");
        assert!(missing.is_err());
        // Today's tree: in the package's own folder.
        assert_eq!(
            bench_folder(&super::root(), "ctx-bench-support", "spawn").unwrap(),
            "bench-support"
        );
    }

    #[test]
    fn criterion_lines_short_and_long_names() {
        let out = "\
get/ctx/8               time:   [2.8851 ns 2.8955 ns 2.9071 ns]
                        change: [-1.0% +0.2% +1.1%] (p = 0.70 > 0.05)
hooks_poll/inherit_request
                        time:   [257.10 µs 257.50 µs 258.00 µs]
Found 3 outliers among 100 measurements (3.00%)
";
        let times = parse_times(out);
        assert_eq!(times.len(), 2);
        assert_eq!(times[0].0, "get/ctx/8");
        assert!((times[0].1 - 2.8955).abs() < 1e-9);
        assert_eq!(times[1].0, "hooks_poll/inherit_request");
        assert!((times[1].1 - 257_500.0).abs() < 1e-6);
    }
}
