//! Strict mode: refuse `set`s that would land in a worker thread's own context.
//!
//! A task that a library starts with its runtime's own `spawn` is not wrapped in a
//! context: it runs in its worker thread's *base* context. A `set` there is not lost; it
//! stays in the worker's context, where the next unwrapped task on that thread reads it.
//! In a server that is one user's identity showing up in another user's request.
//!
//! A thread in strict mode refuses such a `set` with a panic that names the fix, so the
//! leak shows up in tests instead of in production. Turn it on for a runtime's worker
//! threads (the adapters offer a one-line hook, such as tokio's
//! `Builder::on_thread_start(ctx_vars::strict::enable)`), not for threads whose own
//! context is meant to be set, such as `main`.
//!
//! ```
//! use ctx_vars::{Context, ContextVar, strict};
//!
//! static USER: ContextVar<&str> = ContextVar::new("user");
//!
//! std::thread::spawn(|| {
//!     strict::enable();
//!     // Inside a context (a task, `run`, a scope), sets are as usual.
//!     Context::new().run(|| USER.set("ada"));
//!     USER.sync_scope("grace", || USER.set("linus"));
//!     // In the thread's own context, refused.
//!     let refused = std::panic::catch_unwind(|| USER.set("mallory"));
//!     assert!(refused.is_err());
//!     assert_eq!(USER.get(), None);
//! })
//! .join()
//! .unwrap();
//! ```

use crate::current;

/// Puts the calling thread in strict mode: a [`ContextVar::set`](crate::ContextVar::set)
/// into its base context (outside any task, `Context::run` or scope) panics.
///
/// Meant for a runtime's `on_thread_start` hook. Does nothing while the thread is exiting.
pub fn enable() {
    let _ = current::with_mut(|current| current.strict = true);
}

/// Takes the calling thread out of strict mode.
pub fn disable() {
    let _ = current::with_mut(|current| current.strict = false);
}

/// Whether the calling thread is in strict mode.
pub fn is_enabled() -> bool {
    current::read(|current| current.strict).unwrap_or(false)
}

/// Runs `f` on a new, empty base context in strict mode, and puts the thread's own
/// context and mode back afterwards (on return and on panic).
///
/// This is strict mode for code that polls other tasks on the calling thread, such as a
/// current-thread runtime's `block_on`: every task it polls outside a context of its own
/// runs in that empty base, so a leaking `set` panics instead of landing in the caller's
/// context (and the tasks cannot read the caller's values by accident either). Give the
/// future you drive a context of its own, as `ctx_tokio::strict::block_on` does:
///
/// ```
/// use ctx_vars::{Context, ContextVar, FutureExt, strict};
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
///
/// # Context::new().run(|| {
/// USER.set("ada");
/// let root = async { USER.get() }.in_current_context();
/// let seen = strict::run(|| {
///     assert!(strict::is_enabled());
///     assert_eq!(USER.get(), None); // the base is empty
///     assert!(std::panic::catch_unwind(|| USER.set("mallory")).is_err());
///     block_on(root) // a future in its own context reads and sets as usual
/// });
/// assert_eq!(seen, Some("ada"));
/// assert!(!strict::is_enabled());
/// assert_eq!(USER.get(), Some("ada"));
/// # });
/// ```
///
/// # Panics
///
/// If called while the thread is exiting.
pub fn run<R>(f: impl FnOnce() -> R) -> R {
    current::strict_base(f)
}

#[cold]
#[track_caller]
pub(crate) fn refused(name: &str) -> ! {
    panic!(
        "ctx: `{name}.set(..)` outside any task's context, on a thread in strict mode: the \
         value would stay in this worker thread's own context and be seen by the next task \
         that runs here unwrapped. Start the task with the ctx adapter's `spawn` \
         (`ctx_tokio::spawn`, ...), wrap its future with `.in_inherited_context()`, or give the \
         server ctx's per-request layer; use `ContextVar::sync_scope` for a one-off. Where \
         the task is a library's, on tokio, install `ctx_tokio::hooks::TaskHooks` on the \
         runtime (`isolate` or `inherit`): every task then has a context of its own, and \
         `TaskHooks::audit` lists the spawn sites that lack one without it"
    )
}
