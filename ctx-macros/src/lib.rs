//! Attribute macros for ctx: `#[context_var]` and `#[with_context]`.
//!
//! Use them through `ctx-vars` (feature `macros`, on by default) or an adapter crate,
//! which re-export them.
//!
//! The code they expand to names ctx-vars' items through the crate the calling package
//! depends on, found in its `Cargo.toml`: ctx-vars, else `ctx-tokio`, `ctx-async-std` or
//! `ctx-smol`, under the name the manifest gives it (a rename, or one inherited from
//! `[workspace.dependencies]`). A normal dependency wins over a dev-dependency, which the
//! library's own code cannot see; build-dependencies do not count. A package that reaches
//! ctx through a crate of its own says where with `crate = path`; one that depends on
//! none of them gets a compile error saying so.
//!
//! Each macro parses its input, validates it, then expands; every
//! error is a spanned compile error, emitted beside the original item (or the closest
//! valid expansion) so that the user sees one error rather than a cascade.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod args;
mod context_var;
mod entry;
mod manifest;
mod with_context;

use proc_macro::TokenStream;

/// Declares a context variable: the `static` becomes a `ContextVar<Type>`.
///
/// ```
/// use ctx_vars::context_var;
///
/// /// The signed-in user, if any.
/// #[context_var]
/// pub static USER: String; // no default: `USER.get()` is `None` until set
///
/// #[context_var]
/// static LEVEL: u32 = 3; // a default: any expression, built lazily, at most once
///
/// #[context_var]
/// static TAGS: Vec<String> = vec!["web".to_string()];
///
/// #[context_var(name = "request.id")] // the name shown by `Context::iter` and `Debug`
/// static REQUEST_ID: u64;
///
/// /// Awaited code sees it; spawned tasks, threads and blocking jobs do not.
/// #[context_var(inherit = false)]
/// static TRANSACTION: u64;
///
/// # ctx_vars::Context::new().run(|| {
/// assert_eq!(USER.get(), None);
/// assert_eq!(LEVEL.get(), Some(3));
/// assert_eq!(TAGS.with(|tags| tags.map(Vec::len)), Some(1));
/// assert_eq!(REQUEST_ID.name(), "request.id");
/// assert_eq!(USER.name(), "USER");
/// assert!(!TRANSACTION.inherits());
///
/// USER.set("ada".to_string());
/// assert_eq!(USER.get().as_deref(), Some("ada"));
/// # });
/// ```
///
/// Visibility, doc comments and other attributes are kept; the item may live in any
/// module or function body.
///
/// # Arguments
///
/// - `name = "..."`: the variable's name (default: the identifier).
/// - `inherit = false`: the value is local to its task: tasks, threads and blocking jobs
///   spawned from it start without it (see `ContextVar::inherit`). Default: `true`.
/// - `crate = path`: where to find ctx-vars' items, for a crate that re-exports them
///   (`#[context_var(crate = my_platform::ctx)]`). Without it, the calling package's
///   manifest says (see the [crate docs](crate)).
///
/// # Errors
///
/// A compile error, pointing at the offending token, for `static mut`, an item that is
/// not a `static`, a type that borrows for a non-`'static` lifetime, an unknown argument,
/// a `name` that is not a string literal, or an `inherit` that is not `true` or `false`.
#[proc_macro_attribute]
pub fn context_var(args: TokenStream, item: TokenStream) -> TokenStream {
    context_var::expand(args.into(), item.into()).into()
}

/// Runs every call of a function in a copy of its caller's context, taken at the call.
///
/// On an `async fn`, the copy is taken when the function is *called* (not when the
/// future is first polled), and the whole body runs in it: sets inside never leak to the
/// caller, and the returned future keeps its context wherever it is polled. The future
/// is `Send` when the body is. On a plain `fn`, the body runs in the copy through
/// `Context::run`.
///
/// ```
/// use ctx_vars::{context_var, with_context};
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
///
/// #[context_var]
/// static USER: String;
/// #[context_var]
/// static LEVEL: u32 = 3;
///
/// struct Request {
///     user: String,
/// }
///
/// #[with_context]
/// async fn handle(request: Request) -> Option<String> {
///     USER.set(request.user); // stays inside this call
///     USER.get()
/// }
///
/// // Presets: set at entry, evaluated at the call (they may use the arguments).
/// #[with_context(USER = request.user.clone(), LEVEL = 0)]
/// async fn handle_as(request: &Request) -> (Option<String>, Option<u32>) {
///     (USER.get(), LEVEL.get())
/// }
///
/// #[with_context(LEVEL = level)]
/// fn audit(level: u32) -> Option<u32> {
///     LEVEL.get()
/// }
///
/// # ctx_vars::Context::new().run(|| {
/// USER.set("caller".to_string());
/// let fut = handle(Request { user: "ada".into() }); // context captured here
/// assert_eq!(block_on(fut).as_deref(), Some("ada"));
/// assert_eq!(USER.get().as_deref(), Some("caller")); // nothing leaked
///
/// let request = Request { user: "grace".into() };
/// assert_eq!(block_on(handle_as(&request)), (Some("grace".into()), Some(0)));
/// assert_eq!(audit(7), Some(7));
/// assert_eq!(LEVEL.get(), Some(3));
/// # });
/// ```
///
/// Methods (`&self`, `&mut self`, `self`, `self: Pin<&mut Self>`), generic functions,
/// `impl Trait` arguments, where-clauses, `?` in the body and `async fn` in trait impls
/// all work.
///
/// # Arguments
///
/// - `VAR = expr`, any number: the copy starts with `VAR` set to `expr`.
/// - `crate = path`: where to find ctx-vars (see [`context_var`](macro@context_var)).
///
/// # Errors
///
/// A compile error, pointing at the offending token, on a `const fn`, on an item that is
/// not a function with a body, on an argument that is not `VAR = expr`, or when `VAR` is
/// not a `ContextVar`.
#[proc_macro_attribute]
pub fn with_context(args: TokenStream, item: TokenStream) -> TokenStream {
    with_context::expand(args.into(), item.into()).into()
}

/// Runs an `async fn main` on a runtime built by `ctx_tokio::runtime::Builder`: strict
/// workers, the task hooks when ctx-tokio is built with them, the root future in a
/// fresh context of its own on a strict base. Use it as `#[ctx_tokio::main]`.
///
/// Arguments, all optional: `flavor = "multi_thread"` (the default) or
/// `"current_thread"`; `worker_threads = N` (multi-thread only); `strict = false` to
/// turn strict mode off; `hooks = "inherit"` (the default when built with the hooks),
/// `"isolate"` or `"none"`; `crate = path` when ctx-tokio is not `::ctx_tokio`.
///
/// ```
/// use ctx_tokio::context_var;
///
/// #[context_var]
/// static USER: &'static str;
///
/// #[ctx_tokio::main(flavor = "current_thread")]
/// async fn main() {
///     USER.set("ada"); // the root future's own context
///     let seen = ctx_tokio::spawn(async { USER.get() }).await.unwrap();
///     assert_eq!(seen, Some("ada"));
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand(args.into(), item.into(), entry::Kind::Main).into()
}

/// Runs an `async fn` test on a runtime built by `ctx_tokio::runtime::Builder`, as
/// [`macro@main`] does (a current-thread runtime by default, as `#[tokio::test]`), in a
/// fresh context. Use it as `#[ctx_tokio::test]`; the arguments are [`macro@main`]'s.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand(args.into(), item.into(), entry::Kind::Test).into()
}
