//! ctx context variables on tokio: every way a task or blocking job starts carries the
//! caller's context.
//!
//! The functions mirror tokio's names and signatures, so switching is a path change:
//! `tokio::spawn` → `ctx_tokio::spawn`, `tokio::task::spawn_blocking` →
//! `ctx_tokio::task::spawn_blocking`. Each captures [`Context::inherited`] *at the call*
//! (the caller's context, less the variables declared `#[context_var(inherit = false)]`
//! or [`ContextVar::inherit`]`(false)`); the task runs in that copy, so it sees its
//! creator's values and its own `set`s never leak back. `block_on` runs its future in a
//! full copy, as awaiting it would. Everything from `ctx-vars` is re-exported: this crate is the only
//! dependency a tokio user needs, macros included.
//!
//! ```
//! use ctx_tokio::context_var;
//!
//! #[context_var]
//! static REQUEST_ID: u64;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # ctx_tokio::Context::new().scope(async {
//! REQUEST_ID.set(7);
//! let child = ctx_tokio::spawn(async {
//!     let seen = REQUEST_ID.get();
//!     REQUEST_ID.set(8); // stays in the child
//!     seen
//! });
//! assert_eq!(child.await.unwrap(), Some(7));
//! assert_eq!(REQUEST_ID.get(), Some(7));
//! # }).await;
//! # }
//! ```
//!
//! # The one gap
//!
//! A task started by a library calling `tokio::spawn` itself is not wrapped: it runs in
//! its worker thread's own context, not in its creator's. Close the gap by handing such
//! libraries a [`ContextExecutor`] where they take an executor, or by wrapping the
//! future you give them with [`FutureExt::in_inherited_context`]; or, for every task of
//! a runtime, with tokio's task hooks (the `hooks` feature: `hooks::TaskHooks`, built
//! with `--cfg tokio_unstable`).
//!
//! `#[ctx_tokio::main]`, `#[ctx_tokio::test]` and [`runtime::Builder`] set a runtime up
//! for all of this at once: strict mode (see [`strict`]) on every thread that polls
//! tasks, the root future in a context of its own, and the task hooks when built in.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(all(feature = "hooks", not(tokio_unstable)))]
compile_error!(
    "ctx-tokio's `hooks` feature uses tokio's unstable task hooks: build with \
     RUSTFLAGS=\"--cfg tokio_unstable\" (or `rustflags = [\"--cfg\", \"tokio_unstable\"]` \
     under `[build]` in .cargo/config.toml)"
);

#[cfg(all(feature = "hooks", tokio_unstable))]
pub mod hooks;
pub mod runtime;
#[cfg(all(feature = "hooks", tokio_unstable))]
use hooks::{BlockingWrapped, WrappedSpawn};

/// Without task hooks, nothing to tell them.
#[cfg(not(all(feature = "hooks", tokio_unstable)))]
struct WrappedSpawn;

/// Without task hooks, nothing to tell them.
#[cfg(not(all(feature = "hooks", tokio_unstable)))]
struct BlockingWrapped;

#[cfg(not(all(feature = "hooks", tokio_unstable)))]
impl WrappedSpawn {
    #[inline(always)]
    fn mark() -> Self {
        WrappedSpawn
    }
}

use std::future::Future;

use tokio::runtime::{Handle, Runtime};
use tokio::task::{JoinHandle, JoinSet, LocalSet};

pub use ctx_vars::*;

/// `#[ctx_tokio::main]`: see [`runtime`] and the macro's own docs.
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use ctx_macros::main;
/// `#[ctx_tokio::test]`: see [`runtime`] and the macro's own docs.
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use ctx_macros::test;

/// The `hooks = "..."` argument of `#[ctx_tokio::main]` and `#[ctx_tokio::test]`.
#[cfg(all(feature = "hooks", tokio_unstable))]
#[doc(hidden)]
#[macro_export]
macro_rules! __task_hooks {
    ($builder:ident, inherit) => {
        $builder.task_hooks(::core::option::Option::Some(
            $crate::hooks::TaskHooks::inherit(),
        ))
    };
    ($builder:ident, isolate) => {
        $builder.task_hooks(::core::option::Option::Some(
            $crate::hooks::TaskHooks::isolate(),
        ))
    };
    ($builder:ident, none) => {
        $builder.task_hooks(::core::option::Option::None)
    };
}

/// The `hooks = "..."` argument of `#[ctx_tokio::main]` and `#[ctx_tokio::test]`.
#[cfg(not(all(feature = "hooks", tokio_unstable)))]
#[doc(hidden)]
#[macro_export]
macro_rules! __task_hooks {
    ($builder:ident, none) => {};
    ($builder:ident, $other:ident) => {
        ::core::compile_error!(
            "`hooks = \"inherit\"` and `\"isolate\"` need ctx-tokio's `hooks` feature and \
             RUSTFLAGS=\"--cfg tokio_unstable\""
        )
    };
}

/// [`tokio::spawn`], with the task running in a copy of the caller's context.
///
/// # Panics
///
/// As [`tokio::spawn`]: outside a tokio runtime.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let _wrapped = WrappedSpawn::mark();
    tokio::spawn(future.in_inherited_context())
}

/// [`tokio::task::spawn_local`], with the task running in a copy of the caller's
/// context.
///
/// # Panics
///
/// As [`tokio::task::spawn_local`]: outside a [`LocalSet`].
#[track_caller]
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    tokio::task::spawn_local(future.in_inherited_context())
}

/// [`tokio::task::spawn_blocking`], with the closure running in a copy of the caller's
/// context.
///
/// # Panics
///
/// As [`tokio::task::spawn_blocking`]: outside a tokio runtime.
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(in_inherited_context(f))
}

/// `f` in a copy of the caller's context, for a blocking job: every blocking spawn of
/// ctx's goes through it, so that the hooks' audit knows the job as ctx's.
fn in_inherited_context<R>(f: impl FnOnce() -> R) -> impl FnOnce() -> R {
    let f = Context::inherited().wrap(f);
    move || {
        let _wrapped = BlockingWrapped;
        f()
    }
}

/// [`Runtime::block_on`], with the future running in a copy of the caller's context:
/// sets inside it do not leak out after it returns (as `asyncio.run` does).
///
/// # Panics
///
/// As [`Runtime::block_on`]: when called from inside an asynchronous context.
#[track_caller]
pub fn block_on<F: Future>(runtime: &Runtime, future: F) -> F::Output {
    runtime.block_on(future.in_current_context())
}

/// The tokio paths: `ctx_tokio::task::spawn_blocking` for `tokio::task::spawn_blocking`.
pub mod task {
    pub use crate::{spawn, spawn_blocking, spawn_local};
}

/// [`Handle`] methods that carry the caller's context.
pub trait HandleExt {
    /// [`Handle::spawn`], in a copy of the caller's context.
    fn ctx_spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;

    /// [`Handle::spawn_blocking`], in a copy of the caller's context.
    fn ctx_spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static;

    /// [`Handle::block_on`], in a copy of the caller's context.
    fn ctx_block_on<F: Future>(&self, future: F) -> F::Output;
}

impl HandleExt for Handle {
    #[track_caller]
    fn ctx_spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let _wrapped = WrappedSpawn::mark();
        self.spawn(future.in_inherited_context())
    }

    #[track_caller]
    fn ctx_spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.spawn_blocking(in_inherited_context(f))
    }

    #[track_caller]
    fn ctx_block_on<F: Future>(&self, future: F) -> F::Output {
        self.block_on(future.in_current_context())
    }
}

/// [`JoinSet`] methods that carry the caller's context.
pub trait JoinSetExt<T> {
    /// [`JoinSet::spawn`], in a copy of the caller's context.
    fn ctx_spawn<F>(&mut self, future: F) -> tokio::task::AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send;

    /// [`JoinSet::spawn_local`], in a copy of the caller's context.
    fn ctx_spawn_local<F>(&mut self, future: F) -> tokio::task::AbortHandle
    where
        F: Future<Output = T> + 'static;

    /// [`JoinSet::spawn_blocking`], in a copy of the caller's context.
    fn ctx_spawn_blocking<F>(&mut self, f: F) -> tokio::task::AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send;
}

impl<T: 'static> JoinSetExt<T> for JoinSet<T> {
    #[track_caller]
    fn ctx_spawn<F>(&mut self, future: F) -> tokio::task::AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send,
    {
        let _wrapped = WrappedSpawn::mark();
        self.spawn(future.in_inherited_context())
    }

    #[track_caller]
    fn ctx_spawn_local<F>(&mut self, future: F) -> tokio::task::AbortHandle
    where
        F: Future<Output = T> + 'static,
    {
        self.spawn_local(future.in_inherited_context())
    }

    #[track_caller]
    fn ctx_spawn_blocking<F>(&mut self, f: F) -> tokio::task::AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send,
    {
        self.spawn_blocking(in_inherited_context(f))
    }
}

/// [`LocalSet`] methods that carry the caller's context.
pub trait LocalSetExt {
    /// [`LocalSet::spawn_local`], in a copy of the caller's context.
    fn ctx_spawn_local<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static;

    /// [`LocalSet::block_on`], with `future` in a copy of the caller's context.
    fn ctx_block_on<F: Future>(&self, runtime: &Runtime, future: F) -> F::Output;

    /// [`LocalSet::run_until`], with `future` in a copy of the caller's context.
    fn ctx_run_until<F: Future>(&self, future: F) -> impl Future<Output = F::Output>;
}

impl LocalSetExt for LocalSet {
    #[track_caller]
    fn ctx_spawn_local<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.spawn_local(future.in_inherited_context())
    }

    #[track_caller]
    fn ctx_block_on<F: Future>(&self, runtime: &Runtime, future: F) -> F::Output {
        self.block_on(runtime, future.in_current_context())
    }

    fn ctx_run_until<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        self.run_until(future.in_current_context())
    }
}

/// An executor for libraries that take one (hyper's HTTP/2 builders, `hyper-util`'s
/// client): it spawns onto the current tokio runtime, in a context chosen by its
/// constructor. With the `hyper` feature it is a `hyper::rt::Executor`.
///
/// Which one to use depends on how long the tasks a library spawns live, and for whom:
///
/// - [`ContextExecutor::new`] (**inherit**): each task starts in what a task spawned by
///   whoever makes the library spawn would inherit ([`Context::inherited`]). Right for
///   tasks that do work for that caller and end with it, such as a server's per-request
///   HTTP/2 stream tasks.
/// - [`ContextExecutor::with_context`] (**fixed**): every task starts in a copy of one
///   context you choose once, such as the service's base configuration.
/// - [`ContextExecutor::detached`] (**detached**): every task starts in an empty
///   context. Right for tasks that outlive the call that triggered them and serve many
///   callers: `hyper-util`'s client spawns a *connection* task when a request needs a new
///   connection, and the pool then reuses that connection for other requests. Under
///   inherit, the connection task would keep the first request's whole context (its
///   user, its open transaction) alive for as long as the connection lives, and the
///   values would show in whatever that task logs for other requests.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use ctx_tokio::{Context, ContextExecutor, context_var};
///
/// #[context_var]
/// static USER: &'static str;
///
/// # Context::new().scope(async {
/// USER.set("ada");
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// ContextExecutor::new().execute(async move { tx.send(USER.get()).unwrap() });
/// assert_eq!(rx.await.unwrap(), Some("ada"));
///
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// ContextExecutor::detached().execute(async move { tx.send(USER.get()).unwrap() });
/// assert_eq!(rx.await.unwrap(), None);
/// # }).await;
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ContextExecutor {
    /// `None`: inherit from the caller of `execute`.
    fixed: Option<Context>,
}

impl ContextExecutor {
    /// An executor whose tasks inherit from the caller of `execute`.
    pub const fn new() -> Self {
        ContextExecutor { fixed: None }
    }

    /// An executor whose tasks each start in a copy of `context`.
    pub const fn with_context(context: Context) -> Self {
        ContextExecutor {
            fixed: Some(context),
        }
    }

    /// An executor whose tasks start in an empty context: for long-lived tasks that
    /// serve many callers, such as pooled connections.
    pub const fn detached() -> Self {
        ContextExecutor::with_context(Context::new())
    }

    /// The context a task spawned now starts in.
    pub fn context(&self) -> Context {
        match &self.fixed {
            Some(context) => context.clone(),
            None => Context::inherited(),
        }
    }

    /// Spawns `future` onto the current runtime, in [`context`](ContextExecutor::context).
    ///
    /// # Panics
    ///
    /// As [`tokio::spawn`]: outside a tokio runtime.
    #[track_caller]
    pub fn execute<F>(&self, future: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let _wrapped = WrappedSpawn::mark();
        drop(tokio::spawn(future.with_context(self.context())));
    }
}

#[cfg(feature = "hyper")]
impl<F> hyper::rt::Executor<F> for ContextExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Spawns `future` in [`ContextExecutor::context`].
    fn execute(&self, future: F) {
        ContextExecutor::execute(self, future);
    }
}

/// Strict mode (see [`ctx_vars::strict`]) on tokio: refuse `set`s that would land in a
/// thread's own context instead of a task's.
///
/// Where tokio polls tasks, and how to cover each place:
///
/// - **Worker threads** of a multi-thread runtime: `Builder::on_thread_start(enable)`.
/// - **The thread that calls `block_on`**: on a current-thread runtime every task runs
///   there, and tokio calls no `on_thread_start` for it. Use [`strict::block_on`]
///   instead of `Runtime::block_on`: it runs the runtime on an empty strict base and the
///   root future in a copy of the caller's context.
///
/// `#[tokio::main]` and `#[tokio::test]` build their runtime where no hook can reach
/// it: use `#[ctx_tokio::main]` and `#[ctx_tokio::test]`, or [`runtime::Builder`], which
/// cover both places (and install the task hooks where ctx-tokio is built with them):
///
/// ```
/// # #[ctx_tokio::context_var] static USER: &'static str;
/// #[ctx_tokio::main]
/// async fn main() {
///     USER.set("ada"); // the root future has a context of its own
///     // ... serve
/// }
/// ```
///
/// [`strict::block_on`]: crate::strict::block_on
pub mod strict {
    use std::future::Future;

    use tokio::runtime::Runtime;

    use crate::FutureExt;

    pub use ctx_vars::strict::*;

    /// [`Runtime::block_on`] in strict mode: the calling thread runs on a new, empty
    /// strict base (see [`ctx_vars::strict::run`]) while `future` runs in a copy of the
    /// caller's context, as [`crate::block_on`] does. Any task the runtime polls on this
    /// thread outside a context of its own, as every task of a current-thread runtime
    /// that was spawned with plain `tokio::spawn` is, cannot set variables (it panics
    /// with a message that names the fix) nor read the caller's. The thread's own
    /// context and mode are restored afterwards.
    ///
    /// ```
    /// use ctx_tokio::context_var;
    ///
    /// #[context_var]
    /// static USER: &'static str;
    ///
    /// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # ctx_tokio::Context::new().run(|| {
    /// let leaked = ctx_tokio::strict::block_on(&runtime, async {
    ///     USER.set("ada"); // fine: the root future has its own context
    ///     let unwrapped = tokio::spawn(async { USER.set("mallory") });
    ///     unwrapped.await.unwrap_err().is_panic()
    /// });
    /// assert!(leaked);
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// As [`Runtime::block_on`]: when called from inside an asynchronous context.
    #[track_caller]
    pub fn block_on<F: Future>(runtime: &Runtime, future: F) -> F::Output {
        let future = future.in_current_context();
        run(|| runtime.block_on(future))
    }
}
