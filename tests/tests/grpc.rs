//! Request context through gRPC: two tonic services on loopback, A calling B from a
//! spawned task, with ctx-vars' `ContextLayer` on each server and ctx-opentelemetry's
//! client layer on A's channel. Values travel as gRPC metadata (`baggage` and
//! `x-request-id`), are set per call, and are read in B's unary handler, in a task it
//! spawns, and in every message of its server-streaming response. The service is
//! written by hand over a UTF-8 text codec: no protobuf, no code generation.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::{Buf, BufMut};
use ctx_opentelemetry::InjectService;
use ctx_tests::fresh;
use ctx_tests::services::{REQUEST_ID, TENANT, USER_ID, VIA, baggage, seen};
use ctx_vars::ContextLayer;
use futures_core::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{NamedService, ServerStreamingService, UnaryService};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tower_layer::Layer;
use tower_service::Service;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Messages are UTF-8 text, one per gRPC frame.
#[derive(Clone, Copy, Debug, Default)]
struct Text;

impl Codec for Text {
    type Encode = String;
    type Decode = String;
    type Encoder = Text;
    type Decoder = Text;

    fn encoder(&mut self) -> Text {
        Text
    }

    fn decoder(&mut self) -> Text {
        Text
    }
}

impl Encoder for Text {
    type Item = String;
    type Error = Status;

    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for Text {
    type Item = String;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

/// B's unary method: the handler's reading, then a spawned task's.
#[derive(Clone, Copy)]
struct Who;

impl UnaryService<String> for Who {
    type Response = String;
    type Future = BoxFuture<Result<Response<String>, Status>>;

    fn call(&mut self, _: Request<String>) -> Self::Future {
        Box::pin(async {
            let spawned = ctx_tokio::spawn(async { seen() }).await.expect("task");
            Ok(Response::new(format!("{}\n{spawned}", seen())))
        })
    }
}

/// B's server-streaming method: `MESSAGES` messages, each read when the server polls
/// the response stream (after the handler has returned), with a pending poll between
/// them so that other calls run in between.
#[derive(Clone, Copy)]
struct Count;

const MESSAGES: u8 = 3;

struct Readings {
    sent: u8,
    pending: bool,
}

impl Stream for Readings {
    type Item = Result<String, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if self.sent == MESSAGES {
            return Poll::Ready(None);
        }
        self.pending = !self.pending;
        if self.pending {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.sent += 1;
        Poll::Ready(Some(Ok(seen())))
    }
}

impl ServerStreamingService<String> for Count {
    type Response = String;
    type ResponseStream = Readings;
    type Future = BoxFuture<Result<Response<Readings>, Status>>;

    fn call(&mut self, _: Request<String>) -> Self::Future {
        Box::pin(async {
            Ok(Response::new(Readings {
                sent: 0,
                pending: false,
            }))
        })
    }
}

/// A service's methods, routed by hand as tonic's generated code does.
trait Methods: Clone + Send + Sync + 'static {
    const NAME: &'static str;

    /// The response to a call of `method`, or `None` for a method it does not have.
    fn call(&mut self, method: &str, request: http::Request<Body>) -> Option<HttpFuture>;
}

type HttpFuture = BoxFuture<http::Response<Body>>;

/// A [`Methods`] as the service tonic's server takes.
#[derive(Clone)]
struct Routed<M>(M);

impl<M: Methods> NamedService for Routed<M> {
    const NAME: &'static str = M::NAME;
}

impl<M: Methods> Service<http::Request<Body>> for Routed<M> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let prefix = format!("/{}/", M::NAME);
        let method = request
            .uri()
            .path()
            .strip_prefix(&prefix)
            .map(str::to_owned);
        let response = match self.0.call(method.as_deref().unwrap_or(""), request) {
            Some(response) => response,
            None => Box::pin(async { Status::unimplemented("no such method").into_http() }),
        };
        Box::pin(async move { Ok(response.await) })
    }
}

/// Service B: `Who` (unary) and `Count` (server-streaming).
#[derive(Clone, Copy)]
struct ServiceB;

impl Methods for ServiceB {
    const NAME: &'static str = "ctx.test.B";

    fn call(&mut self, method: &str, request: http::Request<Body>) -> Option<HttpFuture> {
        let mut grpc = tonic::server::Grpc::new(Text);
        match method {
            "Who" => Some(Box::pin(async move { grpc.unary(Who, request).await })),
            "Count" => Some(Box::pin(async move {
                grpc.server_streaming(Count, request).await
            })),
            _ => None,
        }
    }
}

/// A's client for B: every call carries the values of the context that makes it.
type ClientB = Grpc<InjectService<Channel>>;

/// A's unary method: sets `via`, then calls B (unary and streaming) from a spawned task.
#[derive(Clone)]
struct Relay {
    b: ClientB,
}

impl UnaryService<String> for Relay {
    type Response = String;
    type Future = BoxFuture<Result<Response<String>, Status>>;

    fn call(&mut self, _: Request<String>) -> Self::Future {
        let mut b = self.b.clone();
        Box::pin(async move {
            VIA.set("a".to_owned());
            let from_b = ctx_tokio::spawn(async move {
                b.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let who = b
                    .unary(Request::new(String::new()), path("B", "Who"), Text)
                    .await?
                    .into_inner();
                b.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let mut count = b
                    .server_streaming(Request::new(String::new()), path("B", "Count"), Text)
                    .await?
                    .into_inner();
                let mut lines = vec![who];
                while let Some(message) = count.message().await? {
                    lines.push(message);
                }
                Ok::<_, Status>(lines.join("\n"))
            })
            .await
            .expect("task")?;
            Ok(Response::new(format!("{}\n{from_b}", seen())))
        })
    }
}

/// Service A: `Relay` (unary).
#[derive(Clone)]
struct ServiceA {
    relay: Relay,
}

impl Methods for ServiceA {
    const NAME: &'static str = "ctx.test.A";

    fn call(&mut self, method: &str, request: http::Request<Body>) -> Option<HttpFuture> {
        let (mut grpc, relay) = (tonic::server::Grpc::new(Text), self.relay.clone());
        match method {
            "Relay" => Some(Box::pin(async move { grpc.unary(relay, request).await })),
            _ => None,
        }
    }
}

fn path(service: &str, method: &str) -> http::uri::PathAndQuery {
    format!("/ctx.test.{service}/{method}")
        .parse()
        .expect("a path")
}

/// Serves `methods` on loopback, with the request-context layer; its address.
async fn serve<M: Methods>(methods: M) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let server = Server::builder()
        .layer(ContextLayer::new().on_request(baggage()))
        .add_service(Routed(methods))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(async move { server.await.expect("serves") });
    addr
}

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("an endpoint")
        .connect()
        .await
        .expect("connects")
}

/// Starts B, then A with its client for B; A's address.
async fn start() -> SocketAddr {
    let b = serve(ServiceB).await;
    let client = Grpc::new(baggage().layer().layer(channel(b).await));
    serve(ServiceA {
        relay: Relay { b: client },
    })
    .await
}

#[test]
fn b_sees_what_a_received_and_set_in_its_handler_its_tasks_and_every_streamed_message() {
    fresh(|| {
        // ctx-tokio's runtime: strict workers, so that a value set outside a call's
        // context would panic.
        let rt = ctx_tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .expect("tokio runtime");
        let (calls, mismatches) = rt.block_on(async {
            let a = Grpc::new(channel(start().await).await);
            let permits = Arc::new(tokio::sync::Semaphore::new(32));
            let mut calls = tokio::task::JoinSet::new();
            for i in 0..1_000u64 {
                let permit = Arc::clone(&permits).acquire_owned().await.expect("open");
                let mut a = a.clone();
                calls.spawn(async move {
                    let _permit = permit;
                    let mut request = Request::new(String::new());
                    let metadata = request.metadata_mut();
                    let baggage = format!("tenant=tenant%20{i}%20%C3%A9,user.id={i}");
                    metadata.insert("baggage", baggage.parse().expect("ASCII"));
                    let id = (1_000_000 + i).to_string();
                    metadata.insert("x-request-id", id.parse().expect("ASCII"));
                    a.ready().await.expect("A ready");
                    let body = a
                        .unary(request, path("A", "Relay"), Text)
                        .await
                        .expect("A answers")
                        .into_inner();
                    let expected = format!("tenant {i} é/{i}/{id}/a");
                    // A, B's handler, B's task, then each streamed message.
                    let lines: Vec<&str> = body.lines().collect();
                    let wrong = lines.iter().filter(|line| **line != expected).count();
                    wrong + usize::from(lines.len() != 3 + usize::from(MESSAGES))
                });
            }
            let (mut done, mut mismatches) = (0, 0);
            while let Some(joined) = calls.join_next().await {
                mismatches += joined.expect("call");
                done += 1;
            }
            (done, mismatches)
        });
        assert_eq!(calls, 1_000);
        assert_eq!(mismatches, 0);
        // The values never reached the test's own context.
        assert_eq!(
            (TENANT.get(), USER_ID.get(), REQUEST_ID.get()),
            (None, None, None)
        );
    });
}
