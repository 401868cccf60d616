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
            let this = this.project();
            drop_inner(this.inner, this.context);
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

    /// The inner future (or stream).
    ///
    /// # Panics
    ///
    /// If the inner future has completed: it is dropped inside its last poll.
    pub fn inner(&self) -> &F {
        self.inner.as_ref().expect(COMPLETED)
    }

    /// The inner future (or stream), mutably.
    ///
    /// # Panics
    ///
    /// If the inner future has completed.
    pub fn inner_mut(&mut self) -> &mut F {
        self.inner.as_mut().expect(COMPLETED)
    }

    /// The pinned inner future (or stream).
    ///
    /// # Panics
    ///
    /// If the inner future has completed.
    pub fn inner_pin_mut(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().inner.as_pin_mut().expect(COMPLETED)
    }

    /// Runs `f` on the pinned inner value with the context entered, as every poll of
    /// this wrapper does: how a poll-style trait of another library (actix-web's
    /// `MessageBody`, an `AsyncRead`) is implemented for a wrapped value. The inner value
    /// stays, whatever `f` returns.
    ///
    /// ```
    /// use std::pin::pin;
    /// use ctx_vars::{Context, ContextVar, WithContext};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let context = Context::new().with_value(&USER, "ada");
    /// let mut wrapped = pin!(WithContext::new(context, 7));
    /// let seen = wrapped.as_mut().run_pinned(|n| (*n, USER.get()));
    /// assert_eq!(seen, (7, Some("ada")));
    /// assert_eq!(USER.get(), None);
    /// ```
    ///
    /// # Panics
    ///
    /// If the inner future has completed (it is dropped inside its last poll).
    pub fn run_pinned<R>(self: Pin<&mut Self>, f: impl FnOnce(Pin<&mut F>) -> R) -> R {
        self.in_context(|inner| (f(inner), false))
    }

    /// Unwraps the inner future (or stream), dropping the context. Polling it from now
    /// on happens in whatever context is current.
    ///
    /// # Panics
    ///
    /// If the inner future has completed.
    pub fn into_inner(mut self) -> F {
        self.inner.take().expect(COMPLETED)
    }

    /// Unwraps both: the context, with the sets the inner future made so far, and the
    /// inner future (or stream).
    ///
    /// # Panics
    ///
    /// If the inner future has completed; use [`take_context`](WithContext::take_context)
    /// then.
    pub fn into_parts(mut self) -> (Context, F) {
        let inner = self.inner.take().expect(COMPLETED);
        (std::mem::take(&mut self.context), inner)
    }

    /// Takes the context out, with every set the inner future made: how a caller reads
    /// what a future left behind once it has completed (tokio's `take_value`).
    ///
    /// A future still running is dropped first, inside its context, so nothing it holds
    /// outlives the context. The wrapper is spent: polling it again panics, and a second
    /// call returns an empty context.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar, FutureExt};
    /// # fn block_on<F: std::future::Future + Unpin>(f: &mut F) -> F::Output {
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = std::pin::Pin::new(&mut *f).poll(&mut cx) { return v; } }
    /// # }
    ///
    /// static STATUS: ContextVar<u16> = ContextVar::new("status");
    ///
    /// let mut fut = std::pin::pin!(async { STATUS.set(404); }.with_context(Context::new()));
    /// block_on(&mut fut);
    /// let left = fut.as_mut().take_context();
    /// assert_eq!(left.get(&STATUS), Some(&404));
    /// ```
    pub fn take_context(self: Pin<&mut Self>) -> Context {
        let this = self.project();
        drop_inner(this.inner, this.context);
        std::mem::take(this.context)
    }

    /// Runs `f` on the pinned inner future with the context entered; drops the inner
    /// future there too, when `f` says it is finished.
    ///
    /// While the thread is exiting there is no context to enter: `f` runs as it is.
    #[inline]
    fn in_context<R>(self: Pin<&mut Self>, f: impl FnOnce(Pin<&mut F>) -> (R, bool)) -> R {
        let mut this = self.project();
        let _entered = current::enter(this.context);
        let inner = this.inner.as_mut().as_pin_mut().expect(POLLED_AFTER);
        let (out, finished) = f(inner);
        if finished {
            // Already inside the context: dropping here spares the drop of the wrapper
            // (a finished task's usual end) from entering it a second time.
            this.inner.set(None);
        }
        out
    }
}

/// Drops the inner future, if still there, inside its own context, so that values it
/// holds and guards it owns see the variables they were created with. While the thread
/// is exiting there is no context to enter: it is dropped as it is.
fn drop_inner<F>(mut inner: Pin<&mut Option<F>>, context: &mut Context) {
    if inner.is_none() {
        return;
    }
    let _entered = current::enter(context);
    inner.set(None);
}

const COMPLETED: &str = "ctx: WithContext's inner future was dropped when it completed";
const POLLED_AFTER: &str = "ctx: WithContext polled after it completed";

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

/// Every method runs with the context entered, as `poll` does for a future.
#[cfg(feature = "sink")]
impl<S: futures_sink::Sink<Item>, Item> futures_sink::Sink<Item> for WithContext<S> {
    type Error = S::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.in_context(|inner| (inner.poll_ready(cx), false))
    }

    fn start_send(self: Pin<&mut Self>, item: Item) -> Result<(), S::Error> {
        self.in_context(|inner| (inner.start_send(item), false))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.in_context(|inner| (inner.poll_flush(cx), false))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.in_context(|inner| (inner.poll_close(cx), false))
    }
}

/// A response body that is polled in its request's context: what
/// [`ContextLayer`](crate::ContextLayer) sends.
#[cfg(feature = "tower")]
impl<B: http_body::Body> http_body::Body for WithContext<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        // Kept after its end, like a stream's: hyper may ask `is_end_stream` again.
        self.in_context(|inner| (inner.poll_frame(cx), false))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), B::size_hint)
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
/// use ctx_vars::{Context, ContextVar, FutureExt};
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

    /// Runs this future in a copy of the current context, taken now (not at first poll):
    /// a full copy, for a future that the current task awaits itself (a `join!` branch
    /// that should not share the task's context).
    fn in_current_context(self) -> WithContext<Self> {
        WithContext::new(Context::current(), self)
    }

    /// Runs this future in the context a task spawned now would get, taken now: a copy
    /// of the current context without the variables that do not travel
    /// ([`Context::inherited`]). This is what the adapters' `spawn` functions do; use it
    /// for a future handed to an executor or a library that spawns it.
    fn in_inherited_context(self) -> WithContext<Self> {
        WithContext::new(Context::inherited(), self)
    }
}

impl<F: Future> FutureExt for F {}
