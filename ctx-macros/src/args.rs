//! The argument both attributes share, `crate = path`, and its default.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Path;

/// The packages that provide ctx-core's items, in order of preference.
const PROVIDERS: [&str; 4] = ["ctx-core", "ctx-tokio", "ctx-async-std", "ctx-smol"];

/// The path under which generated code names ctx-core.
///
/// `crate = some::path` wins. Otherwise the calling package's manifest says which of
/// ctx-core and the adapter crates (which re-export it) it depends on, and under which
/// name, so that `#[ctx_tokio::context_var]` works with only `ctx-tokio` as a dependency.
pub(crate) fn krate(custom: Option<&Path>) -> TokenStream {
    if let Some(path) = custom {
        return quote!(#path);
    }
    let name = provider_in_manifest().unwrap_or_else(|| "ctx_core".to_owned());
    let root = syn::Ident::new(&name, Span::call_site());
    quote!(::#root)
}

/// Remembers a `crate = path` argument, refusing a second one.
pub(crate) fn set_crate(slot: &mut Option<Path>, path: Path, span: Span) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(span, "`crate` is given twice"));
    }
    *slot = Some(path);
    Ok(())
}

/// The crate name (as code sees it) of the preferred provider the package depends on,
/// or the package itself when it is one (its tests, examples and doc tests).
fn provider_in_manifest() -> Option<String> {
    let package = std::env::var("CARGO_PKG_NAME").ok();
    if let Some(package) = package.as_deref().filter(|p| PROVIDERS.contains(p)) {
        return Some(package.replace('-', "_"));
    }
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let manifest = std::fs::read_to_string(std::path::Path::new(&dir).join("Cargo.toml")).ok()?;
    let dependencies = dependencies(&manifest);
    PROVIDERS.iter().find_map(|provider| {
        dependencies
            .iter()
            .find(|(_, package)| package == provider)
            .map(|(name, _)| name.replace('-', "_"))
    })
}

/// `(name, package)` for each dependency a manifest declares, in any dependency table.
/// A line-based reading of the common TOML forms, enough to find a crate by package.
fn dependencies(manifest: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    // Inside `[dependencies]`-like tables: `None`; inside `[dependencies.NAME]`: the name.
    let mut table: Option<Option<String>> = None;
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']').trim();
            table = if header.ends_with("dependencies") {
                Some(None)
            } else if let Some((before, name)) = header.rsplit_once('.') {
                before
                    .ends_with("dependencies")
                    .then(|| Some(unquote(name).to_owned()))
            } else {
                None
            };
            if let Some(Some(name)) = &table {
                found.push((name.clone(), name.clone()));
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match &table {
            Some(None) => {
                let name = unquote(key.trim().split('.').next().unwrap_or_default()).to_owned();
                let package = package_of(value).unwrap_or_else(|| name.clone());
                found.push((name, package));
            }
            Some(Some(name)) if key.trim() == "package" => {
                if let Some(entry) = found.iter_mut().rev().find(|(n, _)| n == name) {
                    entry.1 = unquote(value.trim()).to_owned();
                }
            }
            _ => {}
        }
    }
    found
}

/// The `package = "..."` inside an inline table, if any.
fn package_of(value: &str) -> Option<String> {
    let at = value.find("package")?;
    let rest = value[at + "package".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

fn unquote(text: &str) -> &str {
    text.trim().trim_matches('"').trim_matches('\'')
}

#[cfg(test)]
mod tests {
    use super::dependencies;

    #[test]
    fn reads_every_dependency_form() {
        let manifest = r#"
[package]
name = "app"

[dependencies]
serde = "1"
ctx-tokio = { version = "0.1", default-features = false }
ctx = { package = "ctx-core", path = "../ctx-core" }
tokio.workspace = true

[dev-dependencies.ctx-smol]
version = "0.1"

[target.'cfg(unix)'.dependencies.renamed]
package = "ctx-async-std"
version = "0.1"
"#;
        let found = dependencies(manifest);
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("serde", "serde"),
                ("ctx-tokio", "ctx-tokio"),
                ("ctx", "ctx-core"),
                ("tokio", "tokio"),
                ("ctx-smol", "ctx-smol"),
                ("renamed", "ctx-async-std"),
            ]
        );
    }
}
