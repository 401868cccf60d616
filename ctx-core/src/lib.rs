//! Context variables for async Rust: Python's [PEP 567] `contextvars`, on any executor.
//!
//! A [`ContextVar`] is "a thread-local for tasks": a request id, the current user, a
//! deadline, set once and read anywhere down the call tree. Its value lives in the
//! current [`Context`]. Awaiting a future shares the caller's context; a task spawned
//! through a ctx adapter (or a future wrapped with [`FutureExt::in_current_context`])
//! starts with a copy of its creator's context, so its own sets never leak back to the
//! creator or to its siblings.
//!
//! ```
//! use ctx_vars::{Context, ContextVar, FutureExt};
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let mut f = std::pin::pin!(f);
//! #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
//! #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
//! # }
//!
//! static USER: ContextVar<String> = ContextVar::new("user");
//!
//! async fn handler() -> Option<String> {
//!     USER.get() // no parameter passing needed
//! }
//!
//! # Context::new().run(|| {
//! USER.set("ada".into());
//! let task = handler().in_current_context(); // what a spawn captures
//! USER.set("grace".into());
//! assert_eq!(block_on(task).as_deref(), Some("ada"));
//! assert_eq!(block_on(handler()).as_deref(), Some("grace"));
//! # });
//! ```
//!
//! A variable declared [`inherit(false)`](ContextVar::inherit) (or
//! `#[context_var(inherit = false)]`) is local to its task: awaited code sees it, spawned
//! work does not. Spawns capture [`Context::inherited`]; [`Context::current`] stays
//! PEP 567's full copy. See "Flow policy" on [`ContextVar`].
//!
//! This crate is executor-independent; `ctx-tokio`, `ctx-async-std` and `ctx-smol` add
//! `spawn` functions that carry the context. How the pieces work:
//!
//! - Every thread has a current context. [`Context::run`] and each poll of a
//!   [`WithContext`] make theirs current by pointing at it where it is: nothing is
//!   copied or moved, and a set made inside lands in it.
//! - A [`Context`] is a persistent map: a copy is one reference count, and writes to a
//!   map nobody else holds happen in place.
//!
//! [PEP 567]: https://peps.python.org/pep-0567/

#![cfg_attr(docsrs, feature(doc_cfg))]

mod context;
mod current;
mod default;
mod end;
mod error;
mod future;
#[cfg(feature = "tower")]
mod layer;
mod map;
#[cfg(feature = "futures")]
mod spawn;
mod stamp;
mod token;
mod value;
mod var;

pub mod observer;
pub mod strict;
pub mod thread;

pub use context::{Context, Entry, VarInfo, copy_context};
pub use end::{ContextEnd, EndSignal, EndWatcher};
pub use error::{AccessError, ResetError};
pub use future::{FutureExt, WithContext};
#[cfg(feature = "tower")]
pub use layer::{ContextLayer, ContextService, NoHook, RequestHook, ResponseBody, ResponseFuture};
#[cfg(feature = "futures")]
pub use spawn::ContextSpawn;
pub use stamp::Stamp;
pub use token::{ResetGuard, Token};
pub use var::ContextVar;

#[cfg(feature = "macros")]
pub use ctx_macros::{context_var, with_context};

/// What the macros' expansions name, by absolute path. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::{Context, ContextVar, WithContext};
    pub use ::core::future::Future;

    /// What a `#[with_context(VAR = value)]` preset may name.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not a `ContextVar`",
        label = "a `#[with_context]` preset sets a `ContextVar`",
        note = "declare it with `#[context_var] static NAME: Type;`"
    )]
    pub trait Preset<T> {
        /// The variable itself.
        fn var(&self) -> &ContextVar<T>;
    }

    impl<T: Send + Sync + 'static> Preset<T> for ContextVar<T> {
        #[inline]
        fn var(&self) -> &ContextVar<T> {
            self
        }
    }

    /// `context` with the preset `var = value`. The value's type is a parameter of its
    /// own, so that naming something other than a variable is exactly one error.
    #[inline]
    pub fn preset<T, V>(context: Context, var: &V, value: T) -> Context
    where
        T: Send + Sync + 'static,
        V: Preset<T> + ?Sized,
    {
        context.with_value(var.var(), value)
    }

    /// `fut` in `context`; the explicit `Output` lets an `async` block use `?`.
    #[inline]
    pub fn scope_async<F, Output>(context: Context, fut: F) -> WithContext<F>
    where
        F: Future<Output = Output>,
    {
        WithContext::new(context, fut)
    }

    /// `f` in `context`.
    #[inline]
    pub fn scope_sync<R>(mut context: Context, f: impl FnOnce() -> R) -> R {
        context.run(f)
    }
}
