//! Which crate generated code names: the one the calling package depends on.
//!
//! A proc macro cannot say `$crate`, so the path to ctx-vars' items comes from the
//! caller's `Cargo.toml`: which of ctx-vars and the adapters (which re-export it) it
//! depends on, and under which name. A dependency inherited from the workspace
//! (`rt.workspace = true`) takes its package from `[workspace.dependencies]`, where a
//! rename lives. Normal dependencies win over dev-dependencies, which a library's own
//! code cannot use: a library on `ctx-tokio` that tests with `ctx-vars` must expand to
//! the adapter. Build-dependencies are never used by the code the macros expand in.

use std::cell::LazyCell;
use std::collections::HashMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

/// The packages that provide ctx-vars' items, in order of preference.
pub(crate) const PROVIDERS: &[&str] = &["ctx-vars", "ctx-tokio", "ctx-async-std", "ctx-smol"];

/// The package that provides `#[ctx_tokio::main]`'s and `#[ctx_tokio::test]`'s items.
pub(crate) const TOKIO: &[&str] = &["ctx-tokio"];

/// What the calling package's manifest says about a set of providers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The crate name, as code sees it, of the provider to use.
    Found(String),
    /// The manifest was read and names no provider.
    Missing,
    /// No manifest could be read (not built by Cargo, or it did not parse).
    Unknown,
}

/// Looks up which of `providers` (in order of preference) the package being compiled
/// depends on.
pub(crate) fn lookup(providers: &[&str]) -> Lookup {
    // A provider's own tests, examples and doc tests name it by its own name.
    if let Ok(package) = std::env::var("CARGO_PKG_NAME") {
        if providers.contains(&package.as_str()) {
            return Lookup::Found(package.replace('-', "_"));
        }
    }
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return Lookup::Unknown;
    };
    let dir = Path::new(&dir);
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
        return Lookup::Unknown;
    };
    choose(&text, providers, || workspace_manifest(dir, &text))
}

/// The best of `providers` that a manifest's dependencies name; `workspace` gives the
/// workspace root's manifest, read only when a dependency is inherited from it.
pub(crate) fn choose(
    manifest: &str,
    providers: &[&str],
    workspace: impl FnOnce() -> Option<String>,
) -> Lookup {
    let Ok(manifest) = DeTable::parse(manifest) else {
        return Lookup::Unknown;
    };
    let manifest = manifest.get_ref();
    // Read and parsed once, and only if a dependency is inherited.
    let inherited =
        LazyCell::new(|| workspace().map_or_else(HashMap::new, |text| workspace_packages(&text)));
    let mut best: Option<(Rank, usize, String)> = None;
    for (rank, table) in dependency_tables(manifest) {
        for (key, value) in table {
            let name: &str = key.get_ref();
            let value = value.get_ref();
            let package = if field(value, "workspace").and_then(DeValue::as_bool) == Some(true) {
                // An inherited dependency whose entry cannot be read: judge by its key.
                inherited.get(name).map_or(name, String::as_str).to_owned()
            } else {
                field(value, "package")
                    .and_then(DeValue::as_str)
                    .unwrap_or(name)
                    .to_owned()
            };
            let Some(preference) = providers.iter().position(|p| *p == package) else {
                continue;
            };
            let rank = if field(value, "optional").and_then(DeValue::as_bool) == Some(true) {
                rank.max(Rank::Conditional)
            } else {
                rank
            };
            let candidate = (rank, preference, name.replace('-', "_"));
            if best
                .as_ref()
                .is_none_or(|b| (candidate.0, candidate.1) < (b.0, b.1))
            {
                best = Some(candidate);
            }
        }
    }
    best.map_or(Lookup::Missing, |(_, _, name)| Lookup::Found(name))
}

/// How sure a dependency is to be there for the code being compiled: lower is surer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// `[dependencies]`, not optional.
    Always,
    /// Optional, or under `[target.'cfg(…)'.dependencies]`.
    Conditional,
    /// `[dev-dependencies]`: tests, examples and benches only.
    Dev,
}

/// Every dependency table of a manifest that code can use, with its rank.
fn dependency_tables<'a>(manifest: &'a DeTable<'a>) -> Vec<(Rank, &'a DeTable<'a>)> {
    let mut tables = Vec::new();
    let mut add = |table: &'a DeTable<'a>, conditional: bool| {
        for (key, rank) in [
            ("dependencies", Rank::Always),
            ("dev-dependencies", Rank::Dev),
            ("dev_dependencies", Rank::Dev),
        ] {
            if let Some(DeValue::Table(deps)) = table.get(key).map(|v| v.get_ref()) {
                let rank = if conditional {
                    rank.max(Rank::Conditional)
                } else {
                    rank
                };
                tables.push((rank, deps));
            }
        }
    };
    add(manifest, false);
    if let Some(DeValue::Table(targets)) = manifest.get("target").map(|v| v.get_ref()) {
        for target in targets.values() {
            if let DeValue::Table(target) = target.get_ref() {
                add(target, true);
            }
        }
    }
    tables
}

/// The package behind each entry of `[workspace.dependencies]`, by entry name.
fn workspace_packages(workspace: &str) -> HashMap<String, String> {
    let Ok(workspace) = DeTable::parse(workspace) else {
        return HashMap::new();
    };
    let deps = workspace
        .get_ref()
        .get("workspace")
        .and_then(|w| field(w.get_ref(), "dependencies"));
    let Some(DeValue::Table(deps)) = deps else {
        return HashMap::new();
    };
    deps.iter()
        .map(|(name, entry)| {
            let name: &str = name.get_ref();
            let package = field(entry.get_ref(), "package").and_then(DeValue::as_str);
            (name.to_owned(), package.unwrap_or(name).to_owned())
        })
        .collect()
}

/// A key of a table value; `None` for a plain version string.
fn field<'a>(value: &'a DeValue<'a>, key: &str) -> Option<&'a DeValue<'a>> {
    match value {
        DeValue::Table(table) => table.get(key).map(|v| v.get_ref()),
        _ => None,
    }
}

/// The workspace root's manifest: the one `package.workspace` points to, or else the
/// nearest one, from the package's folder up, with a `[workspace]` table (as Cargo finds it).
///
/// `own` is the package's manifest, read already.
fn workspace_manifest(dir: &Path, own: &str) -> Option<String> {
    let pointer = DeTable::parse(own).ok().and_then(|table| {
        let package = table.get_ref().get("package")?.get_ref();
        field(package, "workspace")?.as_str().map(str::to_owned)
    });
    if let Some(root) = pointer {
        return std::fs::read_to_string(dir.join(root).join("Cargo.toml")).ok();
    }
    dir.ancestors().find_map(|folder| {
        let text = std::fs::read_to_string(folder.join("Cargo.toml")).ok()?;
        let table = DeTable::parse(&text).ok()?;
        table.get_ref().contains_key("workspace").then_some(text)
    })
}

#[cfg(test)]
mod tests {
    use super::{Lookup, PROVIDERS, TOKIO, choose};

    fn found(name: &str) -> Lookup {
        Lookup::Found(name.to_owned())
    }

    fn alone(manifest: &str) -> Lookup {
        choose(manifest, PROVIDERS, || {
            panic!("the workspace manifest is not needed")
        })
    }

    #[test]
    fn a_direct_dependency_under_its_own_name() {
        assert_eq!(
            alone("[dependencies]\nctx-vars = \"0.1\""),
            found("ctx_vars")
        );
        assert_eq!(
            alone("[dependencies.ctx-tokio]\nversion = \"0.1\""),
            found("ctx_tokio")
        );
    }

    #[test]
    fn a_renamed_dependency_under_its_new_name() {
        let manifest = "[dependencies]\nctx = { package = \"ctx-vars\", version = \"0.1\" }";
        assert_eq!(alone(manifest), found("ctx"));
        let manifest = "[dependencies.my-rt]\npackage = \"ctx-smol\"\nversion = \"0.1\"";
        assert_eq!(alone(manifest), found("my_rt"));
    }

    #[test]
    fn an_inherited_dependency_takes_its_package_from_the_workspace() {
        let workspace = r#"
[workspace]
members = ["app"]
[workspace.dependencies]
rt = { package = "ctx-tokio", version = "0.1" }
ctx-vars = "0.1"
"#;
        let manifest = r#"
[package]
name = "app"
[dependencies]
rt.workspace = true
serde = "1"
[dev-dependencies]
ctx-vars = { workspace = true }
"#;
        // ctx-vars is preferred, but only for tests: the library's code needs `rt`.
        assert_eq!(
            choose(manifest, PROVIDERS, || Some(workspace.into())),
            found("rt")
        );
    }

    #[test]
    fn a_normal_dependency_wins_over_a_preferred_dev_dependency() {
        let manifest = r#"
[dependencies]
ctx-vars = "0.1"
[dev-dependencies]
ctx-tokio = "0.1"
"#;
        assert_eq!(alone(manifest), found("ctx_vars"));
        let manifest = r#"
[dev-dependencies]
ctx-vars = "0.1"
[dependencies]
ctx-async-std = "0.1"
"#;
        assert_eq!(alone(manifest), found("ctx_async_std"));
    }

    #[test]
    fn a_dev_dependency_serves_when_it_is_the_only_one() {
        let manifest = "[dev-dependencies]\nctx-smol = \"0.1\"";
        assert_eq!(alone(manifest), found("ctx_smol"));
    }

    #[test]
    fn build_dependencies_do_not_count() {
        assert_eq!(
            alone("[build-dependencies]\nctx-vars = \"0.1\""),
            Lookup::Missing
        );
    }

    #[test]
    fn a_certain_dependency_wins_over_an_optional_or_target_one() {
        let manifest = r#"
[dependencies]
ctx-vars = { version = "0.1", optional = true }
ctx-smol = "0.1"
"#;
        assert_eq!(alone(manifest), found("ctx_smol"));
        let manifest = r#"
[target.'cfg(unix)'.dependencies]
ctx-vars = "0.1"
[dependencies]
ctx-tokio = "0.1"
"#;
        assert_eq!(alone(manifest), found("ctx_tokio"));
        let manifest = "[target.'cfg(unix)'.dependencies]\nctx = { package = \"ctx-vars\", version = \"0.1\" }";
        assert_eq!(alone(manifest), found("ctx"));
    }

    #[test]
    fn the_preferred_provider_among_equals() {
        let manifest =
            "[dependencies]\nctx-smol = \"0.1\"\nctx-tokio = \"0.1\"\nctx-vars = \"0.1\"";
        assert_eq!(alone(manifest), found("ctx_vars"));
    }

    #[test]
    fn no_provider_and_no_manifest_are_told_apart() {
        assert_eq!(alone("[dependencies]\nserde = \"1\""), Lookup::Missing);
        assert_eq!(alone("this is [not toml"), Lookup::Unknown);
    }

    #[test]
    fn an_inherited_dependency_missing_from_the_workspace_is_judged_by_its_key() {
        let manifest = "[dependencies]\nctx-tokio.workspace = true";
        assert_eq!(choose(manifest, PROVIDERS, || None), found("ctx_tokio"));
        assert_eq!(
            choose(manifest, PROVIDERS, || Some("[workspace]\n".into())),
            found("ctx_tokio")
        );
    }

    #[test]
    fn the_entry_macros_look_for_the_tokio_adapter_alone() {
        let manifest = "[dependencies]\nctx-vars = \"0.1\"\nrt = { package = \"ctx-tokio\", version = \"0.1\" }";
        assert_eq!(choose(manifest, TOKIO, || None), found("rt"));
        let manifest = "[dependencies]\nctx-vars = \"0.1\"";
        assert_eq!(choose(manifest, TOKIO, || None), Lookup::Missing);
    }
}
