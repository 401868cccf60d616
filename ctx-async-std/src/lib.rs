//! ctx context variables on async-std: every way a task starts carries the caller's
//! context.
//!
//! async-std is discontinued upstream in favour of smol (see `ctx-smol`); this crate is
//! deliberately thin, for code that still runs on it. The functions mirror async-std's
//! names and signatures, so switching is a path change: `async_std::task::spawn` →
//! `ctx_async_std::task::spawn`. Each captures [`Context::inherited`] *at the call*; the
//! task runs in that copy. Everything from `ctx-vars` is re-exported.
//!
//! ```
//! use ctx_async_std::context_var;
//!
//! #[context_var]
//! static REQUEST_ID: u64;
//!
//! ctx_async_std::Context::new().run(|| {
//!     REQUEST_ID.set(7);
//!     let seen = ctx_async_std::block_on(async {
//!         ctx_async_std::spawn(async { REQUEST_ID.get() }).await
//!     });
//!     assert_eq!(seen, Some(7));
//! });
//! ```
//!
//! A task started by a library calling `async_std::task::spawn` itself is not wrapped;
//! wrap the future you hand it with [`FutureExt::in_inherited_context`].

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::future::Future;
use std::io;

use async_std::task::JoinHandle;

pub use ctx_vars::*;

/// [`async_std::task::spawn`], with the task running in a copy of the caller's context.
pub fn spawn<F, T>(future: F) -> JoinHandle<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    async_std::task::spawn(future.in_inherited_context())
}

/// [`async_std::task::spawn_local`], with the task running in a copy of the caller's
/// context.
pub fn spawn_local<F, T>(future: F) -> JoinHandle<T>
where
    F: Future<Output = T> + 'static,
    T: 'static,
{
    async_std::task::spawn_local(future.in_inherited_context())
}

/// [`async_std::task::spawn_blocking`], with the closure running in a copy of the
/// caller's context.
pub fn spawn_blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    async_std::task::spawn_blocking(Context::inherited().wrap(f))
}

/// [`async_std::task::block_on`], with the future running in a copy of the caller's
/// context: sets inside it do not leak out after it returns.
pub fn block_on<F, T>(future: F) -> T
where
    F: Future<Output = T>,
{
    async_std::task::block_on(future.in_current_context())
}

/// The async-std paths: `ctx_async_std::task::spawn` for `async_std::task::spawn`.
pub mod task {
    pub use crate::{block_on, spawn, spawn_blocking, spawn_local};

    /// [`async_std::task::Builder`], spawning in a copy of the caller's context.
    #[derive(Debug, Default)]
    pub struct Builder {
        inner: async_std::task::Builder,
    }

    impl Builder {
        /// A builder with no name.
        pub fn new() -> Builder {
            Builder::default()
        }

        /// Names the task.
        #[must_use]
        pub fn name(self, name: String) -> Builder {
            Builder {
                inner: self.inner.name(name),
            }
        }

        /// [`async_std::task::Builder::spawn`], in a copy of the caller's context.
        ///
        /// # Errors
        ///
        /// As async-std's: when the task cannot be spawned.
        pub fn spawn<F, T>(self, future: F) -> super::io::Result<super::JoinHandle<T>>
        where
            F: super::Future<Output = T> + Send + 'static,
            T: Send + 'static,
        {
            self.inner
                .spawn(super::FutureExt::in_inherited_context(future))
        }

        /// [`async_std::task::Builder::local`], in a copy of the caller's context.
        ///
        /// # Errors
        ///
        /// As async-std's: when the task cannot be spawned.
        pub fn local<F, T>(self, future: F) -> super::io::Result<super::JoinHandle<T>>
        where
            F: super::Future<Output = T> + 'static,
            T: 'static,
        {
            self.inner
                .local(super::FutureExt::in_inherited_context(future))
        }

        /// [`async_std::task::Builder::blocking`], in a copy of the caller's context.
        pub fn blocking<F, T>(self, future: F) -> T
        where
            F: super::Future<Output = T>,
        {
            self.inner
                .blocking(super::FutureExt::in_current_context(future))
        }
    }
}
