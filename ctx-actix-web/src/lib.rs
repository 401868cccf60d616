//! ctx context variables in [actix-web](actix_web): every request, its handler and its
//! response body run in a context of their own.
//!
//! actix-web is not built on tower, so ctx-vars' `ContextLayer` does not fit it; this
//! crate is its counterpart, an actix-web middleware. Wrap the app in
//! [`ContextMiddleware`], optionally with a hook that sets variables from the request:
//!
//! ```no_run
//! use actix_web::dev::ServiceRequest;
//! use actix_web::{App, HttpServer, web};
//! use ctx_actix_web::ContextMiddleware;
//! use ctx_vars::context_var;
//!
//! #[context_var]
//! static USER: String;
//!
//! /// Sets the request's variables from its headers, inside its new context.
//! fn from_headers(request: &ServiceRequest) {
//!     if let Some(user) = request.headers().get("x-user").and_then(|v| v.to_str().ok()) {
//!         USER.set(user.to_owned());
//!     }
//! }
//!
//! async fn hello() -> String {
//!     // After awaits, in tasks spawned with `ctx_actix_web::rt::spawn`, in
//!     // `ctx_actix_web::web::block`: the request's own values.
//!     let user = ctx_actix_web::web::block(|| USER.get()).await.unwrap();
//!     format!("hello {}", user.unwrap_or_else(|| "stranger".into()))
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     actix_web::rt::System::new().block_on(async {
//!         HttpServer::new(|| {
//!             // Each worker thread builds its app here: a `set` on it outside any
//!             // request's context now panics instead of leaking into later requests.
//!             ctx_vars::strict::enable();
//!             App::new()
//!                 .route("/", web::get().to(hello))
//!                 .wrap(ContextMiddleware::new().on_request(from_headers))
//!         })
//!         .bind(("127.0.0.1", 8080))?
//!         .run()
//!         .await
//!     })
//! }
//! ```
//!
//! # Tasks and blocking jobs
//!
//! Each actix-web worker is a thread with a tokio runtime and a `LocalSet`: the handler
//! and everything it awaits run on that thread, inside the request's context.
//! `actix_web::rt::spawn` (tokio's `spawn_local`) and `actix_web::web::block` (tokio's
//! `spawn_blocking`) know nothing of ctx: the task or job they start runs in the worker
//! thread's own context, sees none of the request's values, and a `set` there stays on
//! the thread for the next request to see (or panics, in [strict mode](ctx_vars::strict)).
//! Use this crate's functions of the same names instead, which carry a copy of the
//! caller's context:
//!
//! | actix-web | ctx-actix-web |
//! |---|---|
//! | `actix_web::rt::spawn` | [`ctx_actix_web::rt::spawn`](rt::spawn) |
//! | `actix_web::web::block` | [`ctx_actix_web::web::block`](web::block) |
//!
//! Work handed to a plain `std::thread` or another runtime takes the context along with
//! `ctx_vars::thread::spawn`, a ctx runtime adapter, or [`Context::wrap`](ctx_vars::Context::wrap).
//!
//! # Baggage from other services
//!
//! actix-web's headers are not the `http` crate's `HeaderMap` that ctx-opentelemetry's
//! `ContextBaggage::extract` takes; its `extract_from` takes any header lookup:
//!
//! ```
//! use actix_web::dev::ServiceRequest;
//! use ctx_actix_web::ContextMiddleware;
//! use ctx_opentelemetry::ContextBaggage;
//! use ctx_vars::context_var;
//!
//! #[context_var]
//! static TENANT: String;
//!
//! let baggage = ContextBaggage::new().var("tenant", &TENANT);
//! let middleware = ContextMiddleware::new().on_request(move |request: &ServiceRequest| {
//!     baggage.extract_from(|name| request.headers().get_all(name).map(|v| v.as_bytes()));
//! });
//! # drop(middleware);
//! ```
//!
//! # The response body
//!
//! A streaming body is polled by actix-web after the handler has returned. The middleware
//! wraps it ([`ContextBody`]) so that every chunk is produced in the request's context,
//! with every value the handler set; the request's context [ends](ctx_vars::Context::endable)
//! when the body has sent its last chunk or is dropped.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod middleware;
pub mod rt;
pub mod web;

pub use body::ContextBody;
pub use middleware::{ContextMiddleware, ContextMiddlewareService, ResponseFuture};
