//! One interface over the runtimes ctx supports, so that each scenario is written once
//! and run on every one of them (see `tests/runtimes.rs`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A spawned task: join it, or cancel it (dropping its future).
pub struct Spawned<T> {
    /// Resolves to the task's output; resumes the task's panic, if it panicked.
    pub join: BoxFuture<T>,
    /// Cancels the task, dropping its future; resolves once it is dropped.
    pub cancel: Box<dyn FnOnce() -> BoxFuture<()> + Send>,
}

impl<T> std::fmt::Debug for Spawned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned").finish_non_exhaustive()
    }
}

/// A runtime, driven through its ctx adapter.
pub trait Runtime: Sync + Sized {
    /// For messages.
    fn name(&self) -> &'static str;

    /// The adapter's `block_on`: runs in a copy of the caller's context.
    fn block_on<F: Future>(&self, future: F) -> F::Output;

    /// The adapter's `spawn`: the task starts in a copy of the caller's context.
    fn spawn<F>(&self, future: F) -> Spawned<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;

    /// The runtime's own `spawn`, which knows nothing of ctx.
    fn spawn_raw<F>(&self, future: F) -> BoxFuture<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;

    /// The adapter's `spawn_blocking` (`unblock` on smol).
    fn spawn_blocking<F, R>(&self, f: F) -> BoxFuture<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        Self::spawn_blocking_in_task(f)
    }

    /// The adapter's `spawn_blocking`, from inside one of the runtime's tasks.
    fn spawn_blocking_in_task<F, R>(f: F) -> BoxFuture<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static;

    /// The runtime's timer.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;
}

/// tokio's JoinError into the task's panic, so that all runtimes fail alike.
fn tokio_join<T>(
    handle: tokio::task::JoinHandle<T>,
) -> (BoxFuture<T>, Box<dyn FnOnce() -> BoxFuture<()> + Send>)
where
    T: Send + 'static,
{
    let abort = handle.abort_handle();
    let join = Box::pin(async move {
        match handle.await {
            Ok(out) => out,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    });
    let cancel = Box::new(move || -> BoxFuture<()> {
        abort.abort();
        Box::pin(async move {
            while !abort.is_finished() {
                tokio::task::yield_now().await;
            }
        })
    });
    (join, cancel)
}

/// A task handle that both joining and cancelling consume: whichever runs takes it.
fn shared<H, T>(
    handle: H,
    join: fn(H) -> BoxFuture<T>,
    cancel: fn(H) -> BoxFuture<()>,
) -> Spawned<T>
where
    H: Send + 'static,
    T: 'static,
{
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(handle)));
    let for_cancel = std::sync::Arc::clone(&slot);
    Spawned {
        join: Box::pin(async move {
            let handle = slot
                .lock()
                .unwrap()
                .take()
                .expect("joined once, not cancelled");
            join(handle).await
        }),
        cancel: Box::new(move || {
            let handle = for_cancel.lock().unwrap().take().expect("cancelled once");
            cancel(handle)
        }),
    }
}

/// tokio, multi-threaded (4 workers) or current-thread.
#[derive(Debug)]
pub struct Tokio {
    runtime: tokio::runtime::Runtime,
    name: &'static str,
}

impl Tokio {
    /// A multi-threaded runtime with 4 workers.
    pub fn multi_thread() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .expect("tokio runtime");
        Tokio {
            runtime,
            name: "tokio multi-thread",
        }
    }

    /// A current-thread runtime.
    pub fn current_thread() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime");
        Tokio {
            runtime,
            name: "tokio current-thread",
        }
    }

    /// The runtime itself, for tokio-only tests.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }
}

impl Runtime for Tokio {
    fn name(&self) -> &'static str {
        self.name
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        ctx_tokio::block_on(&self.runtime, future)
    }

    fn spawn<F>(&self, future: F) -> Spawned<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let _guard = self.runtime.enter();
        let (join, cancel) = tokio_join(ctx_tokio::spawn(future));
        Spawned { join, cancel }
    }

    fn spawn_raw<F>(&self, future: F) -> BoxFuture<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio_join(self.runtime.spawn(future)).0
    }

    fn spawn_blocking<F, R>(&self, f: F) -> BoxFuture<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let _guard = self.runtime.enter();
        Self::spawn_blocking_in_task(f)
    }

    fn spawn_blocking_in_task<F, R>(f: F) -> BoxFuture<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        tokio_join(ctx_tokio::spawn_blocking(f)).0
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let _guard = self.runtime.enter();
        Box::pin(tokio::time::sleep(duration))
    }
}

/// async-std's global runtime.
#[derive(Debug, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    fn name(&self) -> &'static str {
        "async-std"
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        ctx_async_std::block_on(future)
    }

    fn spawn<F>(&self, future: F) -> Spawned<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        shared(
            ctx_async_std::spawn(future),
            |handle| Box::pin(handle),
            |handle| Box::pin(async move { drop(handle.cancel().await) }),
        )
    }

    fn spawn_raw<F>(&self, future: F) -> BoxFuture<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Box::pin(async_std::task::spawn(future))
    }

    fn spawn_blocking_in_task<F, R>(f: F) -> BoxFuture<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        Box::pin(ctx_async_std::spawn_blocking(f))
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(async_std::task::sleep(duration))
    }
}

/// smol's global executor.
#[derive(Debug, Default)]
pub struct Smol;

impl Runtime for Smol {
    fn name(&self) -> &'static str {
        "smol"
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        ctx_smol::block_on(future)
    }

    fn spawn<F>(&self, future: F) -> Spawned<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        shared(
            ctx_smol::spawn(future),
            |task| Box::pin(task),
            |task| Box::pin(async move { drop(task.cancel().await) }),
        )
    }

    fn spawn_raw<F>(&self, future: F) -> BoxFuture<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Box::pin(smol::spawn(future))
    }

    fn spawn_blocking_in_task<F, R>(f: F) -> BoxFuture<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        Box::pin(ctx_smol::unblock(f))
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(async move {
            smol::Timer::after(duration).await;
        })
    }
}
