//! [`ContextMiddleware`]: the actix-web middleware that runs every request in a context
//! of its own.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use ctx_vars::{Context, ContextEnd, WithContext};
use pin_project_lite::pin_project;

use crate::ContextBody;

/// An actix-web middleware that runs every request's service call, response future and
/// response body in a fresh copy of one base context, with an optional hook that sets
/// variables from the request: ctx-vars' `ContextLayer`, for actix-web.
///
/// The base is what a task spawned when the middleware is built would inherit
/// ([`Context::inherited`]), or the context given to [`ContextMiddleware::with_context`].
/// actix-web builds each worker's app on that worker's thread, so a base built in the
/// app factory is that thread's context: to share values set before the server starts
/// (a configuration, a pool), take `Context::current()` before `HttpServer::new` and
/// hand a clone to `with_context` in the factory. Each request starts from a new copy of
/// the base, so nothing one request sets is ever seen by another.
///
/// Each request's context is [endable](Context::endable), and ends when its response body
/// has sent its last chunk (or is dropped). Errors that the wrapped service returns are
/// turned into responses by actix-web outside the middleware, so outside the request's
/// context.
///
/// Wrap the `App` (or a `Scope`) with it: `App::new().wrap(ContextMiddleware::new())`.
/// Middlewares wrapped after it run outside the request's context; wrap it last to have
/// them inside.
#[derive(Clone)]
pub struct ContextMiddleware<H = fn(&ServiceRequest)> {
    base: Context,
    hook: H,
}

impl ContextMiddleware {
    /// A middleware whose requests start from what a task spawned now would inherit
    /// ([`Context::inherited`]).
    pub fn new() -> Self {
        ContextMiddleware::with_context(Context::inherited())
    }

    /// A middleware whose requests start from a copy of `base`.
    pub fn with_context(base: Context) -> Self {
        ContextMiddleware { base, hook: |_| {} }
    }
}

impl Default for ContextMiddleware {
    fn default() -> Self {
        ContextMiddleware::new()
    }
}

impl<H> ContextMiddleware<H> {
    /// Runs `hook` with each request, inside the request's new context, before the
    /// wrapped service sees it: it can simply `set` variables.
    pub fn on_request<F>(self, hook: F) -> ContextMiddleware<F>
    where
        F: Fn(&ServiceRequest) + Clone,
    {
        ContextMiddleware {
            base: self.base,
            hook,
        }
    }
}

impl<S, B, H> Transform<S, ServiceRequest> for ContextMiddleware<H>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>>,
    H: Fn(&ServiceRequest) + Clone,
{
    type Response = ServiceResponse<ContextBody<B>>;
    type Error = S::Error;
    type Transform = ContextMiddlewareService<S, H>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ContextMiddlewareService {
            service,
            base: self.base.clone(),
            hook: self.hook.clone(),
        }))
    }
}

impl<H> fmt::Debug for ContextMiddleware<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextMiddleware")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The service [`ContextMiddleware`] wraps around the app.
pub struct ContextMiddlewareService<S, H = fn(&ServiceRequest)> {
    service: S,
    base: Context,
    hook: H,
}

impl<S, B, H> Service<ServiceRequest> for ContextMiddlewareService<S, H>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>>,
    H: Fn(&ServiceRequest),
{
    type Response = ServiceResponse<ContextBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let (mut context, end) = self.base.clone().endable();
        let future = context.run(|| {
            (self.hook)(&request);
            self.service.call(request)
        });
        ResponseFuture {
            inner: WithContext::new(context, future),
            end: Some(end),
        }
    }
}

impl<S, H> fmt::Debug for ContextMiddlewareService<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextMiddlewareService")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response future of a [`ContextMiddlewareService`]: the wrapped service's future
    /// in the request's context, whose response body then carries that context on.
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
    F: Future<Output = Result<ServiceResponse<B>, E>>,
{
    type Output = Result<ServiceResponse<ContextBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut inner = this.inner;
        // An error ends the request here, as the future's drop would.
        let response = std::task::ready!(inner.as_mut().poll(cx))?;
        // The handler is done; its context, with every set it made, goes on with the
        // body, and ends with it.
        let context = inner.take_context();
        let end = this.end.take();
        Poll::Ready(Ok(
            response.map_body(|_, body| ContextBody::new(context, body, end))
        ))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("context", self.inner.context())
            .finish_non_exhaustive()
    }
}
