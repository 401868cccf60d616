//! [`ContextLayer`]: a tower layer that runs every request in a context of its own.
//!
//! It lives here, behind the `tower` feature, rather than in one adapter: a layer wraps
//! service futures and knows nothing of the runtime that polls them, so one layer serves
//! hyper and axum on tokio, smol or async-std alike. Each adapter forwards the feature.

use std::fmt;
use std::task::{Context as TaskContext, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::{Context, WithContext};

/// A tower [`Layer`] that runs every request's service call and future in a fresh copy
/// of one base context, with an optional hook that sets variables from the request.
///
/// The base is the context current when the layer is built (or the one you give
/// [`ContextLayer::with_context`]): values set before the server starts, such as a
/// configuration or a pool, are seen by every request. Each request starts from a new
/// copy of that base, so nothing one request sets (a user, a request id) is ever seen
/// by another, whichever connection or worker thread serves it.
///
/// The hook runs inside the request's context, before the inner service is called, so
/// it can simply `set` variables:
///
/// ```
/// # use std::convert::Infallible;
/// # use std::task::{Context as Cx, Poll};
/// use ctx_core::{ContextLayer, context_var};
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// #[context_var]
/// static REQUEST_ID: String;
///
/// struct Request {
///     id: String,
/// }
///
/// /// A service that reads the request id without being handed it.
/// struct Handler;
/// impl Service<Request> for Handler {
///     type Response = Option<String>;
///     type Error = Infallible;
///     type Future = std::future::Ready<Result<Option<String>, Infallible>>;
///     fn poll_ready(&mut self, _: &mut Cx<'_>) -> Poll<Result<(), Infallible>> {
///         Poll::Ready(Ok(()))
///     }
///     fn call(&mut self, _: Request) -> Self::Future {
///         std::future::ready(Ok(REQUEST_ID.get()))
///     }
/// }
///
/// let layer = ContextLayer::new().on_request(|request: &Request| {
///     REQUEST_ID.set(request.id.clone());
/// });
/// let mut service = layer.layer(Handler);
/// # let fut = service.call(Request { id: "r-1".into() });
/// # let mut fut = std::pin::pin!(fut);
/// # let out = fut.as_mut().poll(&mut Cx::from_waker(std::task::Waker::noop()));
/// # assert_eq!(out, Poll::Ready(Ok(Some("r-1".to_string()))));
/// # use std::future::Future;
/// assert_eq!(REQUEST_ID.get(), None); // the caller's context is untouched
/// ```
///
/// A complete axum service, with worker threads in [strict mode](crate::strict) so that a
/// `set` anywhere outside a request's context panics instead of leaking:
///
/// ```no_run
/// use axum::{Router, extract::Request, routing::get};
/// use ctx_core::{ContextLayer, context_var};
///
/// #[context_var]
/// static USER: String;
///
/// #[context_var(name = "request.id")]
/// static REQUEST_ID: String;
///
/// /// Sets the request's variables from its headers, inside its new context.
/// fn from_headers(request: &Request) {
///     let header = |name| request.headers().get(name)?.to_str().ok().map(str::to_owned);
///     if let Some(user) = header("x-user") {
///         USER.set(user);
///     }
///     if let Some(id) = header("x-request-id") {
///         REQUEST_ID.set(id);
///     }
/// }
///
/// async fn handler() -> String {
///     // No parameters needed: anything called from here reads the request's values.
///     audit().await;
///     format!("hello {}", USER.get().unwrap_or_else(|| "stranger".into()))
/// }
///
/// async fn audit() {
///     println!("request {:?} by {:?}", REQUEST_ID.get(), USER.get());
/// }
///
/// fn main() -> std::io::Result<()> {
///     let runtime = tokio::runtime::Builder::new_multi_thread()
///         .enable_all()
///         .on_thread_start(ctx_core::strict::enable)
///         .build()?;
///     runtime.block_on(async {
///         let app = Router::new()
///             .route("/", get(handler))
///             .layer(ContextLayer::new().on_request(from_headers));
///         let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///         axum::serve(listener, app).await
///     })
/// }
/// ```
///
/// With plain hyper, wrap the service given to the connection builder through
/// `hyper_util::service::TowerToHyperService`.
#[derive(Clone)]
pub struct ContextLayer<H = NoHook> {
    base: Context,
    hook: H,
}

impl ContextLayer {
    /// A layer whose requests start from a copy of the context current now.
    pub fn new() -> Self {
        ContextLayer::with_context(Context::current())
    }

    /// A layer whose requests start from a copy of `base`.
    pub fn with_context(base: Context) -> Self {
        ContextLayer { base, hook: NoHook }
    }
}

impl Default for ContextLayer {
    fn default() -> Self {
        ContextLayer::new()
    }
}

impl<H> ContextLayer<H> {
    /// Runs `hook` with each request, inside the request's new context, before the
    /// inner service sees it.
    pub fn on_request<F>(self, hook: F) -> ContextLayer<F> {
        ContextLayer {
            base: self.base,
            hook,
        }
    }
}

impl<S, H: Clone> Layer<S> for ContextLayer<H> {
    type Service = ContextService<S, H>;

    fn layer(&self, inner: S) -> ContextService<S, H> {
        ContextService {
            inner,
            base: self.base.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl<H> fmt::Debug for ContextLayer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextLayer")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The service [`ContextLayer`] produces.
#[derive(Clone)]
pub struct ContextService<S, H = NoHook> {
    inner: S,
    base: Context,
    hook: H,
}

impl<S, H, R> Service<R> for ContextService<S, H>
where
    S: Service<R>,
    H: RequestHook<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = WithContext<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> WithContext<S::Future> {
        let mut context = self.base.clone();
        let inner = &mut self.inner;
        let hook = &self.hook;
        let future = context.run(|| {
            hook.on_request(&request);
            inner.call(request)
        });
        WithContext::new(context, future)
    }
}

impl<S: fmt::Debug, H> fmt::Debug for ContextService<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextService")
            .field("inner", &self.inner)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What [`ContextLayer::on_request`] accepts: any `Fn(&Request)` that can be cloned.
pub trait RequestHook<R>: Clone {
    /// Called with each request, inside its new context.
    fn on_request(&self, request: &R);
}

impl<R, F: Fn(&R) + Clone> RequestHook<R> for F {
    fn on_request(&self, request: &R) {
        self(request);
    }
}

/// The hook of a [`ContextLayer`] without one.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHook;

impl<R> RequestHook<R> for NoHook {
    fn on_request(&self, _: &R) {}
}
