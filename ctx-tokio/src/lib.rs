//! ctx context variables on tokio: every way a task or blocking job starts carries the
//! caller's context.
//!
//! The functions mirror tokio's names and signatures, so switching is a path change:
//! `tokio::spawn` → `ctx_tokio::spawn`, `tokio::task::spawn_blocking` →
//! `ctx_tokio::task::spawn_blocking`. Each captures [`Context::current`] *at the call*;
//! the task runs in that copy, so it sees its creator's values and its own `set`s never
//! leak back. Everything from `ctx-core` is re-exported: this crate is the only
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
//! future you give them with [`FutureExt::in_current_context`].

use std::future::Future;

use tokio::runtime::{Handle, Runtime};
use tokio::task::{JoinHandle, JoinSet, LocalSet};

pub use ctx_core::*;

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
    tokio::spawn(future.in_current_context())
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
    tokio::task::spawn_local(future.in_current_context())
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
    tokio::task::spawn_blocking(Context::current().wrap(f))
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
        self.spawn(future.in_current_context())
    }

    #[track_caller]
    fn ctx_spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.spawn_blocking(Context::current().wrap(f))
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
        self.spawn(future.in_current_context())
    }

    #[track_caller]
    fn ctx_spawn_local<F>(&mut self, future: F) -> tokio::task::AbortHandle
    where
        F: Future<Output = T> + 'static,
    {
        self.spawn_local(future.in_current_context())
    }

    #[track_caller]
    fn ctx_spawn_blocking<F>(&mut self, f: F) -> tokio::task::AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send,
    {
        self.spawn_blocking(Context::current().wrap(f))
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
        self.spawn_local(future.in_current_context())
    }

    #[track_caller]
    fn ctx_block_on<F: Future>(&self, runtime: &Runtime, future: F) -> F::Output {
        self.block_on(runtime, future.in_current_context())
    }

    fn ctx_run_until<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        self.run_until(future.in_current_context())
    }
}

/// An executor that spawns onto the current tokio runtime in a copy of the caller's
/// context, for libraries that take an executor. With the `hyper` feature it is a
/// `hyper::rt::Executor`: give it to hyper's HTTP/2 builders or `hyper-util`'s client,
/// and the tasks they spawn inherit from whoever makes them spawn.
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
/// let executor = ContextExecutor::new();
/// USER.set("ada");
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// executor.execute(async move { tx.send(USER.get()).unwrap() });
/// assert_eq!(rx.await.unwrap(), Some("ada"));
/// # }).await;
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ContextExecutor {
    _private: (),
}

impl ContextExecutor {
    /// An executor for the current runtime.
    pub const fn new() -> Self {
        ContextExecutor { _private: () }
    }

    /// Spawns `future` in a copy of the context current at this call.
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
        drop(spawn(future));
    }
}

#[cfg(feature = "hyper")]
impl<F> hyper::rt::Executor<F> for ContextExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Spawns `future` in a copy of the context current at this call.
    fn execute(&self, future: F) {
        ContextExecutor::execute(self, future);
    }
}
