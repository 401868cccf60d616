//! A tokio runtime set up for ctx in one place: strict worker threads, the task hooks
//! (when built with them), a `block_on` that runs the root future in a context of its
//! own on a strict base, and a drop that runs no task's destructor in the caller's
//! context. What `#[ctx_tokio::main]` and `#[ctx_tokio::test]` build.
//!
//! ```
//! use ctx_tokio::context_var;
//!
//! #[context_var]
//! static REQUEST_ID: u64;
//!
//! let runtime = ctx_tokio::runtime::Builder::new_multi_thread().build().unwrap();
//! let leaked = runtime.block_on(async {
//!     REQUEST_ID.set(7); // the root future has a context of its own
//!     // A `set` in a task with no context of its own is refused (strict mode); with
//!     // the hooks built in, every task has one, and this `set` stays in its task.
//!     tokio::spawn(async { REQUEST_ID.set(8) }).await.is_err()
//! });
//! assert_eq!(leaked, !cfg!(all(feature = "hooks", tokio_unstable)));
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::{Context, HandleExt, strict};

#[cfg(all(feature = "hooks", tokio_unstable))]
use crate::hooks::TaskHooks;

/// What each worker and blocking thread runs as it starts, after ctx's own start.
type OnStart = Arc<dyn Fn() + Send + Sync>;

/// Builds a [`Runtime`]: a tokio runtime with ctx's settings, consistent across both
/// flavors. By default: strict mode on every worker and blocking thread and in
/// [`Runtime::block_on`], `hooks::TaskHooks::inherit()` when ctx-tokio is built with its `hooks` feature and `--cfg tokio_unstable`, and
/// every tokio driver enabled (I/O, time), as `#[tokio::main]` does.
///
/// The names follow [`tokio::runtime::Builder`]'s; [`tokio`](Builder::tokio) reaches
/// its other settings.
pub struct Builder {
    tokio: tokio::runtime::Builder,
    strict: bool,
    on_thread_start: Option<OnStart>,
    #[cfg(all(feature = "hooks", tokio_unstable))]
    hooks: Option<TaskHooks>,
}

impl Builder {
    /// A multi-thread runtime's builder.
    #[cfg(feature = "rt-multi-thread")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rt-multi-thread")))]
    pub fn new_multi_thread() -> Builder {
        Builder::with(tokio::runtime::Builder::new_multi_thread())
    }

    /// A current-thread runtime's builder.
    pub fn new_current_thread() -> Builder {
        Builder::with(tokio::runtime::Builder::new_current_thread())
    }

    fn with(mut tokio: tokio::runtime::Builder) -> Builder {
        tokio.enable_all();
        Builder {
            tokio,
            strict: true,
            on_thread_start: None,
            #[cfg(all(feature = "hooks", tokio_unstable))]
            hooks: Some(TaskHooks::inherit()),
        }
    }

    /// Whether the worker and blocking threads, and [`Runtime::block_on`]'s thread,
    /// are in [strict mode](crate::strict) (by default, yes).
    pub fn strict(&mut self, enabled: bool) -> &mut Self {
        self.strict = enabled;
        self
    }

    /// The task hooks to install ([`TaskHooks::inherit`] by default); `None` for none.
    #[cfg(all(feature = "hooks", tokio_unstable))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "hooks", tokio_unstable))))]
    pub fn task_hooks(&mut self, hooks: Option<TaskHooks>) -> &mut Self {
        self.hooks = hooks;
        self
    }

    /// As [`tokio::runtime::Builder::worker_threads`].
    ///
    /// # Panics
    ///
    /// If `threads` is 0.
    pub fn worker_threads(&mut self, threads: usize) -> &mut Self {
        self.tokio.worker_threads(threads);
        self
    }

    /// Runs `f` on each worker and blocking thread as it starts, after ctx's own start
    /// (strict mode). Use this rather than the tokio builder's `on_thread_start`, which
    /// would replace ctx's.
    pub fn on_thread_start(&mut self, f: impl Fn() + Send + Sync + 'static) -> &mut Self {
        self.on_thread_start = Some(Arc::new(f));
        self
    }

    /// The tokio builder underneath, for the settings not mirrored here. Its
    /// `on_thread_start` and task hooks are set by [`build`](Builder::build): use
    /// [`on_thread_start`](Builder::on_thread_start) and `task_hooks` (chaining your
    /// hooks through `hooks::TaskHooks`) instead.
    pub fn tokio(&mut self) -> &mut tokio::runtime::Builder {
        &mut self.tokio
    }

    /// Builds the runtime.
    ///
    /// # Errors
    ///
    /// As [`tokio::runtime::Builder::build`].
    pub fn build(&mut self) -> io::Result<Runtime> {
        let (strict, user) = (self.strict, self.on_thread_start.clone());
        self.tokio.on_thread_start(move || {
            if strict {
                strict::enable();
            }
            if let Some(user) = &user {
                user();
            }
        });
        #[cfg(all(feature = "hooks", tokio_unstable))]
        if let Some(hooks) = &self.hooks {
            hooks.clone().install(&mut self.tokio);
        }
        Ok(Runtime {
            inner: Some(self.tokio.build()?),
            strict: self.strict,
        })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Builder");
        debug.field("strict", &self.strict);
        #[cfg(all(feature = "hooks", tokio_unstable))]
        debug.field("hooks", &self.hooks);
        debug.finish_non_exhaustive()
    }
}

/// A tokio runtime built by [`Builder`].
pub struct Runtime {
    /// Always `Some` until dropped.
    inner: Option<tokio::runtime::Runtime>,
    strict: bool,
}

impl Runtime {
    /// Runs `future` to completion in a copy of the caller's context (its sets do not
    /// leak out), on a new, empty [`strict`] base when the runtime is
    /// strict: as [`strict::block_on`], or
    /// [`block_on`](crate::block_on) when it is not.
    ///
    /// # Panics
    ///
    /// As [`tokio::runtime::Runtime::block_on`]: when called from inside an asynchronous
    /// context.
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        if self.strict {
            strict::block_on(self.inner(), future)
        } else {
            crate::block_on(self.inner(), future)
        }
    }

    /// [`tokio::runtime::Runtime::spawn`], in a copy of the caller's context.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle().ctx_spawn(future)
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        self.inner().handle()
    }

    /// The tokio runtime underneath.
    #[expect(
        clippy::missing_panics_doc,
        reason = "present from `build` until dropped"
    )]
    pub fn inner(&self) -> &tokio::runtime::Runtime {
        self.inner.as_ref().expect("present until dropped")
    }
}

impl Drop for Runtime {
    /// Drops the tokio runtime in an empty context of its own (see
    /// `hooks::shutdown`): the futures of tasks still pending are dropped there, never
    /// in the caller's context.
    fn drop(&mut self) {
        let inner = self.inner.take();
        Context::new().run(move || drop(inner));
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

/// The runtime `#[ctx_tokio::main]` and `#[ctx_tokio::test]` build: not for direct use.
#[doc(hidden)]
pub fn __for_attribute(multi_thread: bool, worker_threads: Option<usize>, strict: bool) -> Builder {
    #[cfg(feature = "rt-multi-thread")]
    let mut builder = if multi_thread {
        Builder::new_multi_thread()
    } else {
        Builder::new_current_thread()
    };
    #[cfg(not(feature = "rt-multi-thread"))]
    let mut builder = {
        assert!(
            !multi_thread,
            "ctx_tokio: a multi-thread runtime needs ctx-tokio's `rt-multi-thread` feature"
        );
        Builder::new_current_thread()
    };
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads);
    }
    builder.strict(strict);
    builder
}
