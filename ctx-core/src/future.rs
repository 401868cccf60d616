//! [`WithContext`]: a future (or stream) that runs in its own [`Context`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use pin_project_lite::pin_project;

use crate::Context;
use crate::current;

pin_project! {
    /// A future (or stream) that runs in its own [`Context`]: the context is current
    /// during every poll of the inner future, and while it is dropped.
    ///
    /// Sets made by the inner future stay in this context, and are seen by its later
    /// polls; they never leak to whoever polls it. Created by [`Context::scope`],
    /// [`ContextVar::scope`](crate::ContextVar::scope) and [`FutureExt`].
    #[must_use = "futures do nothing unless polled"]
    pub struct WithContext<F> {
        // `None` only while the inner future is being dropped.
        #[pin]
        inner: Option<F>,
        context: Context,
    }

    impl<F> PinnedDrop for WithContext<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.inner.is_none() {
                return;
            }
            // Drop the inner future inside its own context, so that values it holds and
            // guards it owns see the variables they were created with. While the thread
            // is exiting there is no context to enter: drop it as it is.
            match current::enter(this.context) {
                Ok(_entered) => this.inner.set(None),
                Err(_) => this.inner.set(None),
            }
        }
    }
}

impl<F> WithContext<F> {
    /// Wraps `inner` (a future or a stream) to run in `context`.
    ///
    /// For futures, [`Context::scope`] and [`FutureExt`] read better; this is the way to
    /// wrap a stream.
    pub fn new(context: Context, inner: F) -> Self {
        WithContext {
            inner: Some(inner),
            context,
        }
    }

    /// The context the inner future runs in, with the sets it has made so far.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Runs `f` on the pinned inner future with the context entered; drops the inner
    /// future there too, when `f` says it is finished.
    fn in_context<R>(self: Pin<&mut Self>, f: impl FnOnce(Pin<&mut F>) -> (R, bool)) -> R {
        let mut this = self.project();
        let _entered = current::enter(this.context).unwrap_or_else(|_| {
            panic!("ctx: WithContext polled while the thread is exiting (thread-locals destroyed)")
        });
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("ctx: WithContext polled after it completed");
        let (out, finished) = f(inner);
        if finished {
            // Already inside the context: dropping here spares the drop of the wrapper
            // (a finished task's usual end) from entering it a second time.
            this.inner.set(None);
        }
        out
    }
}

impl<F: Future> Future for WithContext<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        self.in_context(|inner| {
            let poll = inner.poll(cx);
            let finished = poll.is_ready();
            (poll, finished)
        })
    }
}

#[cfg(feature = "stream")]
impl<S: futures_core::Stream> futures_core::Stream for WithContext<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        // A stream may be polled again after it ends: keep it.
        self.in_context(|inner| (inner.poll_next(cx), false))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.as_ref().map_or((0, Some(0)), S::size_hint)
    }
}

#[cfg(feature = "stream")]
impl<F: futures_core::FusedFuture> futures_core::FusedFuture for WithContext<F> {
    fn is_terminated(&self) -> bool {
        self.inner.as_ref().is_none_or(F::is_terminated)
    }
}

impl<F: fmt::Debug> fmt::Debug for WithContext<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithContext")
            .field("inner", &self.inner)
            .field("context", &self.context)
            .finish()
    }
}

/// Attaches a [`Context`] to any future: the extension trait behind
/// `fut.in_current_context()`.
///
/// ```
/// use ctx_core::{Context, ContextVar, FutureExt};
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
/// # Context::new().run(|| {
/// USER.set("ada");
/// let fut = async { USER.get() }.in_current_context(); // captured here
/// USER.set("grace");
/// assert_eq!(block_on(fut), Some("ada"));
/// # });
/// ```
pub trait FutureExt: Future + Sized {
    /// Runs this future in `context`.
    fn with_context(self, context: Context) -> WithContext<Self> {
        WithContext::new(context, self)
    }

    /// Runs this future in a copy of the current context, taken now (not at first poll).
    fn in_current_context(self) -> WithContext<Self> {
        WithContext::new(Context::current(), self)
    }
}

impl<F: Future> FutureExt for F {}
