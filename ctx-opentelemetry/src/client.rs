//! [`InjectLayer`]: a client-side tower layer that sends the current context's marked
//! variables with every request.

use std::task::{Context as TaskContext, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::ContextBaggage;

/// A tower [`Layer`] for HTTP clients that writes the marked variables set in the
/// current context into every outgoing request ([`ContextBaggage::inject`]), made by
/// [`ContextBaggage::layer`].
///
/// The values are read when the request is handed to the client (`call`), in the
/// context of the code that sends it: a request sent from a task spawned with ctx's
/// adapters carries that task's values. It wraps any `Service<http::Request<B>>`, such
/// as hyper-util's legacy client. reqwest's client is not a tower service: there, call
/// [`ContextBaggage::inject`] on the request's headers (`request.headers_mut()` is an
/// `http::HeaderMap`), in a reqwest-middleware `Middleware` for every request, or let
/// reqwest-tracing inject through [`ContextBaggage::propagator`].
#[derive(Clone, Debug)]
pub struct InjectLayer {
    baggage: ContextBaggage,
}

impl ContextBaggage {
    /// A client layer that sends these variables with every request.
    pub fn layer(&self) -> InjectLayer {
        InjectLayer {
            baggage: self.clone(),
        }
    }
}

impl<S> Layer<S> for InjectLayer {
    type Service = InjectService<S>;

    fn layer(&self, inner: S) -> InjectService<S> {
        InjectService {
            inner,
            baggage: self.baggage.clone(),
        }
    }
}

/// The service [`InjectLayer`] produces.
#[derive(Clone, Debug)]
pub struct InjectService<S> {
    inner: S,
    baggage: ContextBaggage,
}

impl<S, B> Service<http::Request<B>> for InjectService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        self.baggage.inject(request.headers_mut());
        self.inner.call(request)
    }
}
