//! The argument both attributes share, `crate = path`, and its default.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Path;

use crate::manifest::{self, Lookup};

/// The path under which generated code names ctx-vars' items, and an error to show
/// beside the expansion when the calling package depends on no crate that provides them.
///
/// `crate = some::path` wins. Otherwise the calling package's manifest says which of
/// ctx-vars and the adapter crates (which re-export it) it depends on, and under which
/// name (see `manifest.rs`), so that `#[ctx_tokio::context_var]` works with only
/// `ctx-tokio` as a dependency.
pub(crate) fn krate(custom: Option<&Path>) -> (TokenStream, Option<syn::Error>) {
    path_to(custom, manifest::PROVIDERS, "ctx-vars' items")
}

/// The same for `#[ctx_tokio::main]` and `#[ctx_tokio::test]`, whose items only
/// ctx-tokio has.
pub(crate) fn tokio_krate(custom: Option<&Path>) -> (TokenStream, Option<syn::Error>) {
    path_to(custom, manifest::TOKIO, "ctx-tokio")
}

fn path_to(
    custom: Option<&Path>,
    providers: &[&str],
    what: &str,
) -> (TokenStream, Option<syn::Error>) {
    if let Some(path) = custom {
        return (quote!(#path), None);
    }
    let fallback = || providers[0].replace('-', "_");
    let (name, error) = match manifest::lookup(providers) {
        Lookup::Found(name) => (name, None),
        Lookup::Unknown => (fallback(), None),
        Lookup::Missing => {
            let names: Vec<String> = providers.iter().map(|p| format!("`{p}`")).collect();
            let message = format!(
                "this package depends on none of {}: add one to `[dependencies]`, \
                 or say where {what} is with `crate = path`",
                names.join(", ")
            );
            (
                fallback(),
                Some(syn::Error::new(Span::call_site(), message)),
            )
        }
    };
    let root = syn::Ident::new(&name, Span::call_site());
    (quote!(::#root), error)
}

/// Remembers a `crate = path` argument, refusing a second one.
pub(crate) fn set_crate(slot: &mut Option<Path>, path: Path, span: Span) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(span, "`crate` is given twice"));
    }
    *slot = Some(path);
    Ok(())
}
