//! ctx context variables on smol: every way a task or blocking job starts carries the
//! caller's context.
//!
//! The functions mirror smol's names and signatures, so switching is a path change:
//! `smol::spawn` → `ctx_smol::spawn`, `smol::unblock` → `ctx_smol::unblock`. Each
//! captures [`Context::inherited`] *at the call* (the caller's context, less the variables
//! declared `#[context_var(inherit = false)]` or [`ContextVar::inherit`]`(false)`); the
//! task runs in that copy. For
//! executors of your own, [`ExecutorExt`] and [`LocalExecutorExt`] add `ctx_spawn` and
//! `ctx_spawn_many` to [`Executor`] and [`LocalExecutor`]. Everything from `ctx-vars` is
//! re-exported.
//!
//! ```
//! use ctx_smol::context_var;
//!
//! #[context_var]
//! static REQUEST_ID: u64;
//!
//! ctx_smol::Context::new().run(|| {
//!     REQUEST_ID.set(7);
//!     let seen = ctx_smol::block_on(async {
//!         let child = ctx_smol::spawn(async { REQUEST_ID.get() });
//!         let blocking = ctx_smol::unblock(|| REQUEST_ID.get());
//!         (child.await, blocking.await)
//!     });
//!     assert_eq!(seen, (Some(7), Some(7)));
//! });
//! ```
//!
//! A task started by a library calling `smol::spawn` (or an executor's own `spawn`)
//! itself is not wrapped; wrap the future you hand it with
//! [`FutureExt::in_inherited_context`].

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::future::Future;

use smol::{Executor, LocalExecutor, Task};

pub use ctx_vars::*;

/// [`smol::spawn`], with the task running in a copy of the caller's context.
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
    smol::spawn(future.in_inherited_context())
}

/// [`smol::block_on`], with the future running in a copy of the caller's context: sets
/// inside it do not leak out after it returns.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    smol::block_on(future.in_current_context())
}

/// [`smol::unblock`], with the closure running on the blocking pool in a copy of the
/// caller's context.
pub fn unblock<T, F>(f: F) -> Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    smol::unblock(Context::inherited().wrap(f))
}

/// [`Executor`] spawns in a copy of the caller's context.
pub trait ExecutorExt<'a> {
    /// [`Executor::spawn`], in a copy of the caller's context.
    fn ctx_spawn<T: Send + 'a>(&self, future: impl Future<Output = T> + Send + 'a) -> Task<T>;

    /// [`Executor::spawn_many`], each future starting from the same copy of the
    /// caller's context, taken at this call (each task then changes only its own).
    fn ctx_spawn_many<T, F>(
        &self,
        futures: impl IntoIterator<Item = F>,
        handles: &mut impl Extend<Task<T>>,
    ) where
        T: Send + 'a,
        F: Future<Output = T> + Send + 'a;
}

impl<'a> ExecutorExt<'a> for Executor<'a> {
    fn ctx_spawn<T: Send + 'a>(&self, future: impl Future<Output = T> + Send + 'a) -> Task<T> {
        self.spawn(future.in_inherited_context())
    }

    fn ctx_spawn_many<T, F>(
        &self,
        futures: impl IntoIterator<Item = F>,
        handles: &mut impl Extend<Task<T>>,
    ) where
        T: Send + 'a,
        F: Future<Output = T> + Send + 'a,
    {
        self.spawn_many(each_in_inherited_context(futures), handles);
    }
}

/// [`LocalExecutor`] spawns in a copy of the caller's context.
pub trait LocalExecutorExt<'a> {
    /// [`LocalExecutor::spawn`], in a copy of the caller's context.
    fn ctx_spawn<T: 'a>(&self, future: impl Future<Output = T> + 'a) -> Task<T>;

    /// [`LocalExecutor::spawn_many`], each future starting from the same copy of the
    /// caller's context, taken at this call.
    fn ctx_spawn_many<T, F>(
        &self,
        futures: impl IntoIterator<Item = F>,
        handles: &mut impl Extend<Task<T>>,
    ) where
        T: 'a,
        F: Future<Output = T> + 'a;
}

impl<'a> LocalExecutorExt<'a> for LocalExecutor<'a> {
    fn ctx_spawn<T: 'a>(&self, future: impl Future<Output = T> + 'a) -> Task<T> {
        self.spawn(future.in_inherited_context())
    }

    fn ctx_spawn_many<T, F>(
        &self,
        futures: impl IntoIterator<Item = F>,
        handles: &mut impl Extend<Task<T>>,
    ) where
        T: 'a,
        F: Future<Output = T> + 'a,
    {
        self.spawn_many(each_in_inherited_context(futures), handles);
    }
}

/// Each future in its own copy of the context current at this call.
fn each_in_inherited_context<F: Future>(
    futures: impl IntoIterator<Item = F>,
) -> impl Iterator<Item = WithContext<F>> {
    let context = Context::inherited();
    futures
        .into_iter()
        .map(move |f| f.with_context(context.clone()))
}
