//! An axum service whose every request runs in a context of its own: the request id
//! and user come from headers once, in `ContextLayer`, and every log line under the
//! request carries them, in the handler, after awaits and in a spawned task, with no
//! parameter passing.
//!
//! `cargo run -p ctx-tokio --example axum`
//!
//! In your own `Cargo.toml`: `ctx-tokio = { version = "0.1", features = ["tower"] }`,
//! `ctx-tracing = "0.1"`, `axum`, `tokio`, `tracing` and `tracing-subscriber`.

use std::time::Duration;

use axum::Router;
use axum::http::Request;
use axum::routing::get;
use ctx_tokio::{ContextLayer, context_var};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[context_var]
static REQUEST_ID: String;

#[context_var]
static USER: String = "anonymous".to_owned();

/// Sets the request's values in its fresh context: the layer calls it once per request.
fn from_headers<B>(request: &Request<B>) {
    let header = |name| {
        request
            .headers()
            .get(name)?
            .to_str()
            .ok()
            .map(str::to_owned)
    };
    if let Some(id) = header("x-request-id") {
        REQUEST_ID.set(id);
    }
    if let Some(user) = header("x-user") {
        USER.set(user);
    }
}

async fn hello() -> String {
    tracing::info!("handling"); // … handling REQUEST_ID=r-1 USER=ada
    tokio::time::sleep(Duration::from_millis(5)).await;
    // A task spawned through ctx-tokio starts with a copy of the request's context.
    let audit = ctx_tokio::spawn(async { tracing::info!("audited") });
    audit.await.expect("the audit task");
    format!("hello {}", USER.get().unwrap_or_default())
}

#[ctx_tokio::main]
async fn main() -> std::io::Result<()> {
    let fields = ctx_tracing::ContextFields::new()
        .display(&REQUEST_ID)
        .display(&USER);
    tracing_subscriber::fmt()
        .map_event_format(|format| fields.wrap(format))
        .init();

    let app = Router::new()
        .route("/", get(hello))
        .layer(ContextLayer::new().on_request(from_headers));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    ctx_tokio::spawn(async move { axum::serve(listener, app).await });

    // Two requests, as two users: each handler sees only its own.
    for (id, user) in [("r-1", "ada"), ("r-2", "grace")] {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!(
            "GET / HTTP/1.1\r\nhost: {addr}\r\nx-request-id: {id}\r\nx-user: {user}\r\n\
             connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let body = response.rsplit("\r\n\r\n").next().unwrap_or_default();
        assert_eq!(body, format!("hello {user}"));
        println!("{id}: {body}");
    }
    Ok(())
}
