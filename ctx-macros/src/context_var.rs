//! `#[context_var]`: `static NAME: Type [= default];` becomes a `ContextVar<Type>`.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Attribute, Expr, Ident, Item, LitBool, LitStr, Path, Token, Type, Visibility};

use crate::args;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = Args::parse_terminated.parse2(args);
    let item = match syn::parse2::<StaticItem>(item.clone()) {
        Ok(item) => item,
        // Not a static: the item itself is valid Rust, so keep it beside the error.
        Err(error) => return with_error(error, item),
    };
    let mut errors = Vec::new();
    let args = args.unwrap_or_else(|error| {
        errors.push(error);
        Args::default()
    });
    if let Some(token) = &item.mutability {
        errors.push(syn::Error::new(
            token.span(),
            "a context variable cannot be `static mut`: remove `mut`; \
             each context gets its own value through `USER.set(..)`",
        ));
    }
    let mut lifetimes = NonStaticLifetimes(Vec::new());
    lifetimes.visit_type(&item.ty);
    let type_is_valid = lifetimes.0.is_empty();
    errors.extend(lifetimes.0.into_iter().map(|lifetime| {
        syn::Error::new(
            lifetime.span(),
            format!(
                "a context variable holds `'static` data, but this type borrows for `{lifetime}`: \
                 use an owned type (`String`, `Arc<T>`) or `'static`"
            ),
        )
    }));

    // The variable is declared even when an argument was wrong, so that its uses
    // compile and the user sees only the error above.
    let (krate, missing) = args::krate(args.krate.as_ref());
    errors.extend(missing);
    let expansion = if type_is_valid {
        item.expand(&args, &krate)
    } else {
        TokenStream::new()
    };
    let errors = errors.into_iter().map(|e| e.to_compile_error());
    quote!(#(#errors)* #expansion)
}

fn with_error(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#error #item)
}

/// `name = "..."`, `inherit = bool` and `crate = path`.
#[derive(Default)]
struct Args {
    name: Option<LitStr>,
    inherit: Option<LitBool>,
    krate: Option<Path>,
}

impl Args {
    fn parse_terminated(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args::default();
        for arg in Punctuated::<Arg, Token![,]>::parse_terminated(input)? {
            match arg {
                Arg::Name(key, name) => {
                    if args.name.replace(name).is_some() {
                        return Err(syn::Error::new(key.span(), "`name` is given twice"));
                    }
                }
                Arg::Inherit(key, inherit) => {
                    if args.inherit.replace(inherit).is_some() {
                        return Err(syn::Error::new(key.span(), "`inherit` is given twice"));
                    }
                }
                Arg::Crate(token, path) => args::set_crate(&mut args.krate, path, token.span)?,
            }
        }
        Ok(args)
    }
}

enum Arg {
    Name(Ident, LitStr),
    Inherit(Ident, LitBool),
    Crate(Token![crate], Path),
}

const ACCEPTED: &str = "accepted: `name = \"...\"`, `inherit = false`, `crate = path`";

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Token![crate]) {
            let token = input.parse::<Token![crate]>()?;
            input.parse::<Token![=]>()?;
            return Ok(Arg::Crate(token, input.parse()?));
        }
        let key = input
            .call(Ident::parse_any)
            .map_err(|e| syn::Error::new(e.span(), format!("expected an argument; {ACCEPTED}")))?;
        if key != "name" && key != "inherit" {
            return Err(syn::Error::new(
                key.span(),
                format!("unknown argument `{key}`; {ACCEPTED}"),
            ));
        }
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        if key == "inherit" {
            return match value {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Bool(inherit),
                    ..
                }) => Ok(Arg::Inherit(key, inherit)),
                other => Err(syn::Error::new(
                    other.span(),
                    "`inherit` takes `true` or `false`, as in `inherit = false` \
                     (spawned tasks do not inherit the value)",
                )),
            };
        }
        match value {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(name),
                ..
            }) => Ok(Arg::Name(key, name)),
            other => Err(syn::Error::new(
                other.span(),
                "`name` takes a string literal, as in `name = \"request.id\"`",
            )),
        }
    }
}

/// `#[attrs] vis static [mut] NAME: Type [= default];`. The initializer is optional,
/// which is why this is parsed here rather than as a `syn::ItemStatic`.
struct StaticItem {
    attrs: Vec<Attribute>,
    vis: Visibility,
    static_token: Token![static],
    mutability: Option<Token![mut]>,
    ident: Ident,
    ty: Type,
    default: Option<Expr>,
}

impl Parse for StaticItem {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let fork = input.fork();
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        if !input.peek(Token![static]) {
            return Err(not_a_static(&fork));
        }
        let static_token = input.parse()?;
        let mutability = input.parse()?;
        let ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let ty = input.parse()?;
        let default = if input.parse::<Option<Token![=]>>()?.is_some() {
            Some(input.parse()?)
        } else {
            None
        };
        input.parse::<Token![;]>()?;
        Ok(StaticItem {
            attrs,
            vis,
            static_token,
            mutability,
            ident,
            ty,
            default,
        })
    }
}

/// The error for an item that is not a `static`, pointing at its keyword.
fn not_a_static(input: ParseStream<'_>) -> syn::Error {
    let _ = input.call(Attribute::parse_outer);
    if input.peek(Token![let]) {
        return syn::Error::new(
            input.span(),
            "`#[context_var]` declares a `static`, not a `let` binding: \
             declare `static NAME: Type;` at item level",
        );
    }
    let (what, span) = match input.parse::<Item>() {
        Ok(Item::Const(item)) => ("a `const`", item.const_token.span),
        Ok(Item::Fn(item)) => ("a function", item.sig.fn_token.span),
        Ok(Item::Struct(item)) => ("a struct", item.struct_token.span),
        Ok(Item::Enum(item)) => ("an enum", item.enum_token.span),
        Ok(other) => ("this item", other.span()),
        Err(error) => ("this", error.span()),
    };
    syn::Error::new(
        span,
        format!(
            "`#[context_var]` declares a `static`, not {what}: \
             write `static NAME: Type;` or `static NAME: Type = default;`"
        ),
    )
}

impl StaticItem {
    fn expand(&self, args: &Args, krate: &TokenStream) -> TokenStream {
        let StaticItem {
            attrs,
            vis,
            static_token,
            ident,
            ty,
            default,
            ..
        } = self;
        let name = match &args.name {
            Some(name) => name.to_token_stream(),
            None => LitStr::new(&ident.unraw().to_string(), ident.span()).to_token_stream(),
        };
        let init = match default {
            None => quote_spanned!(ident.span()=> #krate::__private::ContextVar::new(#name)),
            Some(default) => quote_spanned!(default.span()=>
                #krate::__private::ContextVar::with_default(#name, || -> #ty { #default })
            ),
        };
        let init = match &args.inherit {
            Some(inherit) => quote!(#init.inherit(#inherit)),
            None => init,
        };
        quote! {
            #(#attrs)*
            #vis #static_token #ident: #krate::__private::ContextVar<#ty> = #init;
        }
    }
}

/// Collects every lifetime in a type that is not `'static`.
struct NonStaticLifetimes(Vec<syn::Lifetime>);

impl Visit<'_> for NonStaticLifetimes {
    fn visit_lifetime(&mut self, lifetime: &syn::Lifetime) {
        if lifetime.ident != "static" {
            self.0.push(lifetime.clone());
        }
    }
}
