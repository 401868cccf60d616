//! [`InjectMiddleware`]: reqwest-middleware's counterpart of [`InjectLayer`](crate::InjectLayer).

use http::Extensions;
use reqwest_middleware::reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next, Result};

use crate::ContextBaggage;

/// A [reqwest-middleware](reqwest_middleware) [`Middleware`] that writes the marked
/// variables set in the current context into every request ([`ContextBaggage::inject`]),
/// made by [`ContextBaggage::middleware`].
///
/// The values are read when the request is sent, in the context of the task that awaits
/// `send()`: a request sent from a task spawned with ctx's adapters carries that task's
/// values, whatever context built the client. A request sent from a task spawned
/// without the context (plain `tokio::spawn`) carries none: spawn with
/// `ctx_tokio::spawn`, or wrap the future with
/// [`FutureExt::in_current_context`](ctx_vars::FutureExt::in_current_context).
///
/// ```no_run
/// use ctx_opentelemetry::ContextBaggage;
/// use ctx_vars::context_var;
/// use reqwest_middleware::ClientBuilder;
/// use reqwest_middleware::reqwest::Client;
///
/// #[context_var]
/// static TENANT: String;
/// #[context_var]
/// static REQUEST_ID: u64;
///
/// # async fn call() -> reqwest_middleware::Result<()> {
/// let baggage = ContextBaggage::new()
///     .var("tenant", &TENANT)
///     .header("x-request-id", &REQUEST_ID);
/// let client = ClientBuilder::new(Client::new())
///     .with(baggage.middleware())
///     .build();
///
/// TENANT.set("acme".to_owned());
/// REQUEST_ID.set(7);
/// // Sent with `baggage: tenant=acme` and `x-request-id: 7`.
/// client.get("http://127.0.0.1:8080/").send().await?;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
#[derive(Clone, Debug)]
pub struct InjectMiddleware {
    baggage: ContextBaggage,
}

impl ContextBaggage {
    /// A reqwest-middleware [`Middleware`] that sends these variables with every request.
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn middleware(&self) -> InjectMiddleware {
        InjectMiddleware {
            baggage: self.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for InjectMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        // Before the first await: the context is the one polling `send()`.
        self.baggage.inject(request.headers_mut());
        next.run(request, extensions).await
    }
}
