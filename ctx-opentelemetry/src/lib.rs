//! ctx context variables across service boundaries: W3C `baggage` in and out, through
//! OpenTelemetry's propagators or straight on `http` headers.
//!
//! Mark the variables that travel once, on a [`ContextBaggage`]; then
//!
//! - on the server, hand it to [`ContextLayer::on_request`](ctx_vars::ContextLayer::on_request):
//!   each request's context gets the values its caller sent;
//! - on the client, wrap the client in [`ContextBaggage::layer`]: each request carries the
//!   values of the context that sends it; for reqwest, add `ContextBaggage::middleware`
//!   to a reqwest-middleware client (feature `reqwest`);
//! - where OpenTelemetry already injects and extracts (reqwest-tracing, tonic
//!   interceptors, a global propagator), install [`ContextBaggage::propagator`] beside
//!   the trace context propagator;
//! - to have OpenTelemetry's own current context follow ctx into every task and thread,
//!   turn on the [`bridge`] once.
//!
//! ```
//! use ctx_vars::{ContextLayer, context_var};
//! use ctx_opentelemetry::ContextBaggage;
//! use opentelemetry::propagation::TextMapCompositePropagator;
//!
//! #[context_var]
//! static TENANT: String;
//! #[context_var]
//! static REQUEST_ID: u64;
//!
//! let baggage = ContextBaggage::new()
//!     .var("tenant", &TENANT)
//!     .header("x-request-id", &REQUEST_ID);
//!
//! // Server: every request's context starts with what its caller sent.
//! let server_layer = ContextLayer::new().on_request(baggage.clone());
//! // Client: every request sends what its sender's context holds.
//! let client_layer = baggage.layer();
//! // OpenTelemetry: with the trace context propagator, as the global one.
//! let propagator = TextMapCompositePropagator::new(vec![Box::new(baggage.propagator())]);
//! # let _ = (server_layer, client_layer, propagator);
//! ```
//!
//! Only what is marked is set from the wire, and only through the variable's own parser:
//! a header cannot set a variable the service did not mark. Entries received for keys
//! that no variable is marked for are forwarded with outgoing requests, as the format
//! asks. A malformed header, or one over the format's limits (8 192 bytes, 180
//! entries), sets nothing; a value that does not parse is skipped. Both log a warning
//! (target `ctx_opentelemetry`), and the request goes on.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod bridge;
mod client;
mod propagator;
#[cfg(feature = "reqwest")]
mod reqwest;
pub mod w3c;
mod wire;

pub use client::{InjectLayer, InjectService};
pub use propagator::BaggagePropagator;
#[cfg(feature = "reqwest")]
pub use reqwest::InjectMiddleware;
pub use wire::ContextBaggage;
