//! `#[ctx_tokio::main]` and `#[ctx_tokio::test]`: an `async fn` run on a runtime built
//! by `ctx_tokio::runtime::Builder`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, LitStr, Path, ReturnType};

/// Which attribute is expanded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Main,
    Test,
}

/// The attribute's arguments, checked.
struct Args {
    multi_thread: bool,
    worker_threads: Option<(usize, Span)>,
    strict: bool,
    /// `inherit`, `isolate` or `none`, with the span of its string.
    hooks: Option<(syn::Ident, Span)>,
    krate: Option<Path>,
}

impl Args {
    fn parse(args: TokenStream, kind: Kind) -> syn::Result<Args> {
        let mut parsed = Args {
            // As tokio's: a multi-thread runtime for `main`, a current-thread one for tests.
            multi_thread: kind == Kind::Main,
            worker_threads: None,
            strict: true,
            hooks: None,
            krate: None,
        };
        let mut flavor_span = None;
        let parser = syn::meta::parser(|meta| {
            let key = meta.path.get_ident().map(ToString::to_string);
            match key.as_deref() {
                Some("flavor") => {
                    let value: LitStr = meta.value()?.parse()?;
                    parsed.multi_thread = match value.value().as_str() {
                        "multi_thread" => true,
                        "current_thread" => false,
                        _ => {
                            return Err(syn::Error::new(
                                value.span(),
                                "`flavor` is \"multi_thread\" or \"current_thread\"",
                            ));
                        }
                    };
                    flavor_span = Some(value.span());
                }
                Some("worker_threads") => {
                    let value: Expr = meta.value()?.parse()?;
                    let threads = match &value {
                        Expr::Lit(ExprLit {
                            lit: Lit::Int(int), ..
                        }) => int.base10_parse::<usize>().ok().filter(|&n| n > 0),
                        _ => None,
                    };
                    let threads = threads.ok_or_else(|| {
                        syn::Error::new(value.span(), "`worker_threads` is a number above 0")
                    })?;
                    parsed.worker_threads = Some((threads, value.span()));
                }
                Some("strict") => {
                    let value: syn::LitBool = meta.value()?.parse()?;
                    parsed.strict = value.value;
                }
                Some("hooks") => {
                    let value: LitStr = meta.value()?.parse()?;
                    let name = value.value();
                    if !["inherit", "isolate", "none"].contains(&name.as_str()) {
                        return Err(syn::Error::new(
                            value.span(),
                            "`hooks` is \"inherit\", \"isolate\" or \"none\"",
                        ));
                    }
                    parsed.hooks = Some((syn::Ident::new(&name, value.span()), value.span()));
                }
                Some("crate") => {
                    let path: Path = meta.value()?.parse()?;
                    crate::args::set_crate(&mut parsed.krate, path, meta.path.span())?;
                }
                _ => {
                    return Err(meta.error(
                        "unknown argument: expected `flavor`, `worker_threads`, `strict`, \
                         `hooks` or `crate`",
                    ));
                }
            }
            Ok(())
        });
        syn::parse::Parser::parse2(parser, args)?;
        if let (Some((_, span)), false) = (parsed.worker_threads, parsed.multi_thread) {
            let message = if flavor_span.is_some() {
                "`worker_threads` needs `flavor = \"multi_thread\"`"
            } else {
                "`worker_threads` needs `flavor = \"multi_thread\"` (tests run on a \
                 current-thread runtime by default)"
            };
            return Err(syn::Error::new(span, message));
        }
        Ok(parsed)
    }
}

pub(crate) fn expand(args: TokenStream, item: TokenStream, kind: Kind) -> TokenStream {
    let function: ItemFn = match syn::parse2(item) {
        Ok(function) => function,
        Err(error) => return error.into_compile_error(),
    };
    let stub = stub(&function);
    let result = Args::parse(args, kind).and_then(|args| generate(&args, function, kind));
    result.unwrap_or_else(|error| {
        // The function still exists, so that the error is the only one (not also a
        // missing `main`).
        let error = error.into_compile_error();
        quote!(#error #stub)
    })
}

/// The function as a plain `fn` whose body never runs.
fn stub(function: &ItemFn) -> TokenStream {
    let ItemFn {
        attrs, vis, sig, ..
    } = function;
    let syn::Signature {
        constness,
        unsafety,
        abi,
        fn_token,
        ident,
        generics,
        inputs,
        output,
        ..
    } = sig;
    let where_clause = &generics.where_clause;
    quote! {
        #(#attrs)* #vis #constness #unsafety #abi #fn_token #ident #generics (#inputs) #output
        #where_clause { ::core::unreachable!() }
    }
}

fn generate(args: &Args, function: ItemFn, kind: Kind) -> syn::Result<TokenStream> {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = function;
    let name = match kind {
        Kind::Main => "#[ctx_tokio::main]",
        Kind::Test => "#[ctx_tokio::test]",
    };
    let Some(asyncness) = sig.asyncness.take() else {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            format!("{name} goes on an `async fn`"),
        ));
    };
    if kind == Kind::Test && !sig.inputs.is_empty() {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "a test function takes no arguments",
        ));
    }
    let (krate, missing) = crate::args::tokio_krate(args.krate.as_ref());
    let missing = missing.map(|error| error.to_compile_error());
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let multi_thread = args.multi_thread;
    let threads = match args.worker_threads {
        Some((n, _)) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let strict = args.strict;
    let hooks = args
        .hooks
        .as_ref()
        .map(|(hooks, span)| quote_spanned!(*span=> #krate::__task_hooks!(builder, #hooks);));
    let test_attr = (kind == Kind::Test).then(|| quote!(#[::core::prelude::v1::test]));
    let body = quote_spanned! {asyncness.span()=>
        let body = async move #block;
        let body = ::core::pin::pin!(body);
        let body: ::core::pin::Pin<&mut dyn ::core::future::Future<Output = #output>> = body;
        #[allow(clippy::expect_used)]
        let mut builder = #krate::runtime::__for_attribute(#multi_thread, #threads, #strict);
        #hooks
        let runtime = builder.build().expect("ctx_tokio: building the runtime failed");
        // A fresh context: the thread (a test harness's, reused) may hold values.
        #krate::Context::new().run(|| runtime.block_on(body))
    };
    Ok(quote! {
        #missing
        #test_attr
        #(#attrs)*
        #vis #sig {
            #body
        }
    })
}
