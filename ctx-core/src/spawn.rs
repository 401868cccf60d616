//! [`ContextSpawn`]: any `futures` executor, spawning in the caller's context.

use std::fmt;

use futures_task::{FutureObj, LocalFutureObj, LocalSpawn, Spawn, SpawnError};

use crate::FutureExt;

/// Wraps a `futures` executor (anything that implements [`Spawn`] or [`LocalSpawn`],
/// such as `futures::executor::ThreadPool` or `LocalPool`'s spawner) so that every
/// future spawned through it runs in a copy of the spawning code's context, as ctx's
/// runtime adapters do ([`Context::inherited`](crate::Context::inherited), taken at the
/// spawn).
///
/// ```
/// use ctx_vars::{Context, ContextSpawn, ContextVar};
/// use futures_executor::LocalPool;
/// use futures_task::LocalSpawn;
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
///
/// let mut pool = LocalPool::new();
/// let spawner = ContextSpawn::new(pool.spawner());
/// let (tx, rx) = std::sync::mpsc::channel();
/// Context::new().with_value(&USER, "ada").run(|| {
///     let task = async move { tx.send(USER.get()).unwrap() };
///     spawner.spawn_local_obj(Box::pin(task).into()).unwrap();
/// });
/// pool.run();
/// assert_eq!(rx.recv().unwrap(), Some("ada"));
/// ```
#[derive(Clone, Default)]
pub struct ContextSpawn<S> {
    inner: S,
}

impl<S> ContextSpawn<S> {
    /// Wraps `executor`.
    pub fn new(executor: S) -> Self {
        ContextSpawn { inner: executor }
    }

    /// The wrapped executor.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped executor, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Spawn> Spawn for ContextSpawn<S> {
    fn spawn_obj(&self, future: FutureObj<'static, ()>) -> Result<(), SpawnError> {
        self.inner
            .spawn_obj(FutureObj::new(Box::new(future.in_inherited_context())))
    }

    fn status(&self) -> Result<(), SpawnError> {
        self.inner.status()
    }
}

impl<S: LocalSpawn> LocalSpawn for ContextSpawn<S> {
    fn spawn_local_obj(&self, future: LocalFutureObj<'static, ()>) -> Result<(), SpawnError> {
        self.inner
            .spawn_local_obj(LocalFutureObj::new(Box::new(future.in_inherited_context())))
    }

    fn status_local(&self) -> Result<(), SpawnError> {
        self.inner.status_local()
    }
}

impl<S: fmt::Debug> fmt::Debug for ContextSpawn<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ContextSpawn").field(&self.inner).finish()
    }
}
