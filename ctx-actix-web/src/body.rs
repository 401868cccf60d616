//! [`ContextBody`]: a response body produced in its request's context.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use ctx_vars::{Context, ContextEnd};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of a [`ContextMiddlewareService`](crate::ContextMiddlewareService):
    /// every chunk is produced, and the body dropped, in its request's context, which it
    /// [ends](Context::endable) once the last chunk is sent (or when it is dropped before).
    pub struct ContextBody<B> {
        // `None` once dropped (in the context) or taken whole.
        #[pin]
        inner: Option<B>,
        context: Context,
        end: Option<ContextEnd>,
    }

    impl<B> PinnedDrop for ContextBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut inner = this.inner;
            if inner.is_some() {
                // Values the body holds see the variables they were made with.
                this.context.run(|| inner.set(None));
            }
        }
    }
}

impl<B> ContextBody<B> {
    pub(crate) fn new(context: Context, body: B, end: Option<ContextEnd>) -> Self {
        ContextBody {
            inner: Some(body),
            context,
            end,
        }
    }

    /// The request's context, with what its handler set.
    pub fn context(&self) -> &Context {
        &self.context
    }
}

impl<B: MessageBody> MessageBody for ContextBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.inner.as_ref().map_or(BodySize::Sized(0), B::size)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let next = this.context.run(|| inner.poll_next(cx));
        if let Poll::Ready(None | Some(Err(_))) = next {
            // The last chunk was sent, or the body failed: the request is over.
            drop(this.end.take());
        }
        next
    }

    fn try_into_bytes(mut self) -> Result<Bytes, Self> {
        // Not pinned yet: the body can still be moved out, as actix-web does for bodies
        // it can send whole.
        let Some(inner) = self.inner.take() else {
            return Ok(Bytes::new());
        };
        match self.context.run(|| inner.try_into_bytes()) {
            // Dropping `self` ends the request.
            Ok(bytes) => Ok(bytes),
            Err(inner) => {
                self.inner = Some(inner);
                Err(self)
            }
        }
    }
}

impl<B> fmt::Debug for ContextBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextBody")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}
