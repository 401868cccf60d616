//! [`ContextLayer`]: a tower layer that runs every HTTP request in a context of its own.
//!
//! It lives here, behind the `tower` feature, rather than in one adapter: a layer wraps
//! service futures and knows nothing of the runtime that polls them, so one layer serves
//! hyper and axum on tokio, smol or async-std alike. Each adapter forwards the feature.
//!
//! A response's body is polled by the server after the handler's future has finished
//! (a streaming body, most visibly), so the layer wraps the body too: it runs in the
//! request's context until the last frame is sent and the body is dropped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{Context, ContextEnd, WithContext};

/// A tower [`Layer`] that runs every HTTP request's service call, response future and
/// response body in a fresh copy of one base context, with an optional hook that sets
/// variables from the request.
///
/// The base is what a task spawned when the layer is built would inherit
/// ([`Context::inherited`]), or the context you give [`ContextLayer::with_context`]:
/// values set before the server starts, such as a configuration or a pool, are seen by
/// every request. Each request starts from a new copy of that base, so nothing one
/// request sets (a user, a request id) is ever seen by another, whichever connection or
/// worker thread serves it. The response body is wrapped in the request's context
/// ([`ResponseBody`]), so a streaming body reads the request's values as its handler
/// did.
///
/// Each request's context is [endable](Context::endable), and ends when its response
/// body has sent its last frame (or is dropped): tasks that a library spawns during the
/// request and that outlive it (a pooled connection, a database driver) stop seeing the
/// request's values then, under ctx-tokio's task hooks.
///
/// The hook runs inside the request's context, before the inner service is called, so
/// it can simply `set` variables:
///
/// ```
/// # use std::convert::Infallible;
/// # use std::future::Future;
/// # use std::task::{Context as Cx, Poll};
/// use ctx_vars::{ContextLayer, context_var};
/// use http::{Request, Response};
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// #[context_var]
/// static REQUEST_ID: String;
///
/// /// A service that reads the request id without being handed it.
/// struct Handler;
/// impl Service<Request<()>> for Handler {
///     type Response = Response<Option<String>>;
///     type Error = Infallible;
///     type Future = std::future::Ready<Result<Self::Response, Infallible>>;
///     fn poll_ready(&mut self, _: &mut Cx<'_>) -> Poll<Result<(), Infallible>> {
///         Poll::Ready(Ok(()))
///     }
///     fn call(&mut self, _: Request<()>) -> Self::Future {
///         std::future::ready(Ok(Response::new(REQUEST_ID.get())))
///     }
/// }
///
/// let layer = ContextLayer::new().on_request(|request: &Request<()>| {
///     if let Some(id) = request.headers().get("x-request-id") {
///         REQUEST_ID.set(id.to_str().unwrap_or_default().to_owned());
///     }
/// });
/// let mut service = layer.layer(Handler);
/// let request = Request::builder().header("x-request-id", "r-1").body(()).unwrap();
/// let fut = std::pin::pin!(service.call(request));
/// let Poll::Ready(Ok(response)) = fut.poll(&mut Cx::from_waker(std::task::Waker::noop()))
/// else { unreachable!() };
/// assert_eq!(response.body().inner().as_deref(), Some("r-1"));
/// assert_eq!(REQUEST_ID.get(), None); // the caller's context is untouched
/// ```
///
/// A complete axum service, with worker threads in [strict mode](crate::strict) so that a
/// `set` anywhere outside a request's context panics instead of leaking:
///
/// ```no_run
/// use axum::{Router, extract::Request, routing::get};
/// use ctx_vars::{ContextLayer, context_var};
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
///         .on_thread_start(ctx_vars::strict::enable)
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
/// `hyper_util::service::TowerToHyperService`. With tonic, add it to the server,
/// `tonic::transport::Server::builder().layer(ContextLayer::new())`: gRPC metadata are
/// the request's headers, and a server-streaming response's messages are produced in the
/// call's context.
#[derive(Clone)]
pub struct ContextLayer<H = NoHook> {
    base: Context,
    hook: H,
}

impl ContextLayer {
    /// A layer whose requests start from what a task spawned now would inherit: the
    /// current context without the variables that do not travel
    /// ([`Context::inherited`]).
    pub fn new() -> Self {
        ContextLayer::with_context(Context::inherited())
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

impl<S, H, ReqBody, ResBody> Service<http::Request<ReqBody>> for ContextService<S, H>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    H: RequestHook<http::Request<ReqBody>>,
{
    type Response = http::Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> ResponseFuture<S::Future> {
        let (mut context, end) = self.base.clone().endable();
        let inner = &mut self.inner;
        let hook = &self.hook;
        let future = context.run(|| {
            hook.on_request(&request);
            inner.call(request)
        });
        ResponseFuture {
            inner: WithContext::new(context, future),
            end: Some(end),
        }
    }
}

pin_project! {
    /// The response future of a [`ContextService`]: the inner service's future in the
    /// request's context, whose response body then carries that context on.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: WithContext<F>,
        // Ends the request's context when dropped: after `inner`, which is dropped in it.
        end: Option<ContextEnd>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut inner = this.inner;
        // An error ends the request here, as the future's drop would.
        let response = ready!(inner.as_mut().poll(cx))?;
        // The handler's future is done; its context, with every set it made, goes on
        // with the body, and ends with it.
        let context = inner.take_context();
        let end = this.end.take();
        Poll::Ready(Ok(response.map(|body| ResponseBody {
            inner: WithContext::new(context, body),
            end,
        })))
    }
}

pin_project! {
    /// The response body of a [`ContextService`]: polled (and dropped) in its request's
    /// context, which it [ends](Context::endable) once its last frame is sent, or when it
    /// is dropped before.
    pub struct ResponseBody<B> {
        #[pin]
        inner: WithContext<B>,
        end: Option<ContextEnd>,
    }
}

impl<B> ResponseBody<B> {
    /// The request's context.
    pub fn context(&self) -> &Context {
        self.inner.context()
    }

    /// The body it wraps.
    ///
    /// # Panics
    ///
    /// As [`WithContext::inner`].
    pub fn inner(&self) -> &B {
        self.inner.inner()
    }
}

impl<B: http_body::Body> http_body::Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // The last frame was sent, or the body failed: the request is over.
            drop(this.end.take());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("context", self.inner.context())
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("context", self.inner.context())
            .finish_non_exhaustive()
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
