//! The arguments both attributes share: `crate = path`.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Path;

/// The path under which generated code names ctx-core: `::ctx_core` unless the user
/// wrote `crate = some::path` (a renamed dependency, or an adapter crate that
/// re-exports ctx-core).
pub(crate) fn krate(custom: Option<&Path>) -> TokenStream {
    match custom {
        Some(path) => quote!(#path),
        None => {
            let root = syn::Ident::new("ctx_core", Span::call_site());
            quote!(::#root)
        }
    }
}

/// Remembers a `crate = path` argument, refusing a second one.
pub(crate) fn set_crate(slot: &mut Option<Path>, path: Path, span: Span) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(span, "`crate` is given twice"));
    }
    *slot = Some(path);
    Ok(())
}
