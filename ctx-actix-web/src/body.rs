//! [`ContextBody`]: a response body produced in its request's context.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use ctx_vars::{Context, ContextEnd, WithContext};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of a [`ContextMiddlewareService`](crate::ContextMiddlewareService):
    /// every chunk is produced, and the body dropped, in its request's context, which it
    /// [ends](Context::endable) once the last chunk is sent (or when it is dropped before).
    pub struct ContextBody<B> {
        #[pin]
        inner: WithContext<B>,
        // Ends the request's context when dropped: after `inner`, which is dropped in it.
        end: Option<ContextEnd>,
    }
}

impl<B> ContextBody<B> {
    pub(crate) fn new(context: Context, body: B, end: Option<ContextEnd>) -> Self {
        ContextBody {
            inner: WithContext::new(context, body),
            end,
        }
    }

    /// The request's context, with what its handler set.
    pub fn context(&self) -> &Context {
        self.inner.context()
    }
}

impl<B: MessageBody> MessageBody for ContextBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.inner.inner().size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let next = this.inner.run_pinned(|body| body.poll_next(cx));
        if let Poll::Ready(None | Some(Err(_))) = next {
            // The last chunk was sent, or the body failed: the request is over.
            drop(this.end.take());
        }
        next
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        // Not pinned yet: the body can still be moved out, as actix-web does for bodies
        // it can send whole.
        let ContextBody { inner, end } = self;
        let (mut context, body) = inner.into_parts();
        match context.run(|| body.try_into_bytes()) {
            // `end` drops here: the request is over.
            Ok(bytes) => Ok(bytes),
            Err(body) => Err(ContextBody::new(context, body, end)),
        }
    }
}

impl<B> fmt::Debug for ContextBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextBody")
            .field("context", self.inner.context())
            .finish_non_exhaustive()
    }
}
