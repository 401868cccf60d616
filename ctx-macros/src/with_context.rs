//! `#[with_context]`: a function whose every call runs in a copy of the caller's
//! context, taken at the call.
//!
//! An `async fn` becomes a plain `fn` returning `impl Future`: an `async fn` body starts
//! at the first poll, which would capture whatever context polls it rather than the
//! caller's. Its parameters are moved into the future as an `async fn` would move them.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, FnArg, Item, ItemFn, Pat, Path, ReturnType, Token};

use crate::args;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(_) => return with_error(not_a_function(item.clone()), item),
    };
    let args = match Args::parse_terminated.parse2(args) {
        Ok(args) => args,
        Err(error) => return with_error(error, quote!(#function)),
    };
    if let Some(token) = &function.sig.constness {
        let error = syn::Error::new(
            token.span(),
            "a `const fn` cannot enter a context (contexts exist at run time): \
             remove `const` or `#[with_context]`",
        );
        return with_error(error, quote!(#function));
    }
    args.expand(function)
}

fn with_error(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#error #item)
}

/// The error for an item that is not a function with a body, pointing at its keyword.
fn not_a_function(item: TokenStream) -> syn::Error {
    if let Ok(method) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
        return syn::Error::new(
            method.sig.fn_token.span,
            "`#[with_context]` needs a function body to run in the context",
        );
    }
    let (what, span) = match syn::parse2::<Item>(item) {
        Ok(Item::Struct(item)) => ("a struct", item.struct_token.span),
        Ok(Item::Enum(item)) => ("an enum", item.enum_token.span),
        Ok(Item::Const(item)) => ("a `const`", item.const_token.span),
        Ok(Item::Static(item)) => ("a `static`", item.static_token.span),
        Ok(Item::Impl(item)) => (
            "an `impl` block (put it on each method)",
            item.impl_token.span,
        ),
        Ok(Item::Trait(item)) => ("a trait (put it on each method)", item.trait_token.span),
        Ok(Item::Mod(item)) => ("a module", item.mod_token.span),
        Ok(other) => ("this item", other.span()),
        Err(error) => ("this", error.span()),
    };
    syn::Error::new(
        span,
        format!("`#[with_context]` applies to functions and methods, not {what}"),
    )
}

/// `VAR = expr` presets and `crate = path`.
#[derive(Default)]
struct Args {
    presets: Vec<(Path, Expr)>,
    krate: Option<Path>,
}

enum Arg {
    Preset(Path, Expr),
    Crate(Token![crate], Path),
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Token![crate]) && input.peek2(Token![=]) {
            let token = input.parse::<Token![crate]>()?;
            input.parse::<Token![=]>()?;
            return Ok(Arg::Crate(token, input.parse()?));
        }
        let expected = |span| {
            syn::Error::new(
                span,
                "expected `VARIABLE = expression` (a `ContextVar` and the value it takes \
                 for the call), or `crate = path`",
            )
        };
        let var: Path = input.parse().map_err(|e| expected(e.span()))?;
        if !input.peek(Token![=]) || input.peek(Token![==]) {
            return Err(expected(if input.is_empty() {
                var.span()
            } else {
                input.span()
            }));
        }
        input.parse::<Token![=]>()?;
        Ok(Arg::Preset(var, input.parse()?))
    }
}

impl Args {
    fn parse_terminated(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args::default();
        for arg in Punctuated::<Arg, Token![,]>::parse_terminated(input)? {
            match arg {
                Arg::Preset(var, value) => args.presets.push((var, value)),
                Arg::Crate(token, path) => args::set_crate(&mut args.krate, path, token.span)?,
            }
        }
        Ok(args)
    }

    fn expand(&self, function: ItemFn) -> TokenStream {
        let (krate, missing) = args::krate(self.krate.as_ref());
        let missing = missing.map(|error| error.to_compile_error());
        // Hygienic: the user's code cannot see or shadow this name.
        let ctx = syn::Ident::new("__ctx", Span::mixed_site());
        // Evaluated at the call, in the caller's context.
        let presets = self.presets.iter().map(|(var, value)| {
            quote_spanned! {var.span()=>
                let #ctx = #krate::__private::preset(#ctx, &#var, #value);
            }
        });
        let capture = quote! {
            let #ctx = #krate::__private::Context::current();
            #(#presets)*
        };
        let expansion = if function.sig.asyncness.is_some() {
            expand_async(function, &krate, &ctx, &capture)
        } else {
            expand_sync(function, &krate, &ctx, &capture)
        };
        quote!(#missing #expansion)
    }
}

/// `async fn f(..) -> R { body }` becomes
/// `fn f(..) -> impl Future<Output = R> { capture; scope(ctx, async move { body }) }`.
fn expand_async(
    function: ItemFn,
    krate: &TokenStream,
    ctx: &syn::Ident,
    capture: &TokenStream,
) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = function;
    sig.asyncness = None;
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    // `let` cannot name an `impl Trait` type: leave such outputs to inference.
    let typed_output = if mentions_impl_trait(&sig.output) {
        quote!(_)
    } else {
        output.clone()
    };
    // Built from the macro's own tokens, not spanned at the user's: an `impl Trait`
    // return type then follows the edition of this crate (2024), which captures every
    // lifetime in scope as an `async fn` does in any edition. (Spanned at the user's
    // tokens, a 2021-edition caller would get E0700 for any borrowed argument.)
    sig.output = syn::parse_quote! {
        -> impl #krate::__private::Future<Output = #output>
    };

    // Move every parameter into the future, as an `async fn` does, even the ones the
    // body never names (their drop belongs at the end of the call, not at its start):
    // naming one in an `async move` block moves it in.
    let mut moves = Vec::new();
    for (index, input) in sig.inputs.iter_mut().enumerate() {
        match input {
            FnArg::Receiver(_) => moves.push(quote!(let _ = &self;)),
            FnArg::Typed(param) => match &mut *param.pat {
                Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => {
                    let name = &ident.ident;
                    moves.push(quote!(let _ = &#name;));
                }
                pattern => {
                    let arg = format_ident!("__ctx_arg{}", index, span = Span::mixed_site());
                    let pattern = std::mem::replace(pattern, syn::parse_quote!(#arg));
                    // `&` first: a pattern that binds nothing (`_`) would not move it.
                    moves.push(quote!(let _ = &#arg; let #pattern = #arg;));
                }
            },
        }
    }
    let body = &block.stmts;
    quote! {
        #(#attrs)*
        #vis #sig {
            #capture
            #krate::__private::scope_async::<_, #typed_output>(#ctx, async move {
                #(#moves)*
                #(#body)*
            })
        }
    }
}

/// `fn f(..) -> R { body }` becomes `fn f(..) -> R { capture; scope_sync(ctx, move || body) }`.
fn expand_sync(
    function: ItemFn,
    krate: &TokenStream,
    ctx: &syn::Ident,
    capture: &TokenStream,
) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    // Closures cannot declare an `impl Trait` return type: leave it to inference.
    let closure_output = match &sig.output {
        ReturnType::Type(_, ty) if !mentions_impl_trait(&sig.output) => quote!(-> #ty),
        ReturnType::Type(..) => quote!(),
        ReturnType::Default => quote!(-> ()),
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #capture
            #krate::__private::scope_sync(#ctx, move || #closure_output #block)
        }
    }
}

fn mentions_impl_trait(output: &ReturnType) -> bool {
    struct Finder(bool);
    impl Visit<'_> for Finder {
        fn visit_type_impl_trait(&mut self, _: &syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    if let ReturnType::Type(_, ty) = output {
        finder.visit_type(ty);
    }
    finder.0
}
