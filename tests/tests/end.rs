//! Endable contexts: `Context::endable`, `ContextEnd`, `EndSignal`, `changed_since`, and
//! `ContextLayer` ending each request's context with its response body.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use ctx_tests::fresh;
use ctx_vars::{Context, ContextLayer, ContextVar, EndSignal};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body, Bytes, Frame};
use tower_layer::Layer;
use tower_service::Service;

static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
static OWN: ContextVar<u64> = ContextVar::new("own");
static LOCAL: ContextVar<u64> = ContextVar::new("local").inherit(false);

#[test]
fn an_endable_context_carries_its_signal_into_copies_and_children() {
    fresh(|| {
        let (request, end) = Context::new().with_value(&REQUEST_ID, 1).endable();
        // The signal is not a variable.
        assert_eq!(request.len(), 1);
        assert_eq!(request.iter().count(), 1);
        assert_eq!(format!("{request:?}"), r#"{"request_id"}"#);
        let mut copy = request.clone();
        copy.run(|| {
            let spawned = Context::inherited();
            assert!(spawned.end_signal().is_some(), "travels with spawns");
            assert!(!Context::current().is_ended());
        });
        assert!(Context::new().end_signal().is_none());
        assert!(!end.signal().is_ended());
        drop(end);
        assert!(copy.is_ended() && request.is_ended());
        assert_eq!(copy.get(&REQUEST_ID), Some(&1), "ending changes no value");
    });
}

#[test]
fn an_empty_endable_context_is_empty() {
    fresh(|| {
        let (context, _end) = Context::new().endable();
        assert!(context.is_empty());
        assert_eq!(context.len(), 0);
    });
}

#[test]
fn callbacks_run_once_at_the_end_in_an_empty_context_or_at_once_after_it() {
    fresh(|| {
        let (request, end) = Context::new().with_value(&REQUEST_ID, 1).endable();
        let signal = request.end_signal().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = |name: &'static str| {
            let seen = Arc::clone(&seen);
            move || seen.lock().unwrap().push((name, REQUEST_ID.get()))
        };
        signal.on_end(record("first"));
        signal.on_end(record("second"));
        // Ended from inside the request's own context: the callbacks still see none.
        Context::clone(&request).run(|| end.end());
        signal.on_end(record("late"));
        assert_eq!(
            *seen.lock().unwrap(),
            [("first", None), ("second", None), ("late", None)]
        );
    });
}

#[test]
fn a_panicking_callback_lets_the_others_run_then_goes_on() {
    fresh(a_panicking_callback);
}

fn a_panicking_callback() {
    let (context, end) = Context::new().endable();
    let signal = context.end_signal().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    signal.on_end(|| panic!("callback"));
    let counter = Arc::clone(&ran);
    signal.on_end(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| end.end()));
    assert!(outcome.is_err(), "the panic goes on");
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(signal.is_ended());
}

#[test]
fn a_nested_endable_context_ends_with_its_outer_one() {
    fresh(a_nested_endable_context);
}

fn a_nested_endable_context() {
    let (outer, outer_end) = Context::new().endable();
    // Children made and gone (a request context per call, inside a long-lived one):
    // the outer signal lets go of them as it goes.
    for _ in 0..1000 {
        let (child, child_end) = outer.clone().endable();
        drop((child, child_end));
    }
    let (inner, inner_end) = outer.clone().endable();
    let (other, _other_end) = Context::new().endable();
    assert!(!inner.is_ended());
    drop(outer_end);
    assert!(inner.is_ended() && outer.is_ended());
    assert!(!other.is_ended());
    drop(inner_end); // ending again is harmless
    assert!(inner.is_ended());
}

#[test]
fn changed_since_keeps_what_was_set_after_the_copy() {
    fresh(|| {
        let (request, _end) = Context::new().with_value(&REQUEST_ID, 1).endable();
        let mut task = request.clone();
        assert!(task.changed_since(&request).is_empty());
        task.run(|| {
            OWN.set(2);
            LOCAL.set(3);
        });
        let own = task.changed_since(&request);
        assert_eq!(own.get(&OWN), Some(&2));
        assert_eq!(own.get(&LOCAL), Some(&3));
        assert_eq!(own.get(&REQUEST_ID), None);
        assert!(
            own.end_signal().is_none(),
            "the request's signal stays behind"
        );
        // Set again to an equal value: the task's own now.
        task.run(|| REQUEST_ID.set(1));
        assert_eq!(task.changed_since(&request).get(&REQUEST_ID), Some(&1));
    });
}

/// A service answering with `body()`, recording the request's end signal.
#[derive(Clone)]
struct Echo<B> {
    body: fn() -> B,
    signal: Signal,
}

impl<B> Service<http::Request<()>> for Echo<B> {
    type Response = http::Response<B>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<http::Response<B>, Infallible>>;
    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        *self.signal.lock().unwrap() = Context::current().end_signal();
        std::future::ready(Ok(http::Response::new((self.body)())))
    }
}

fn ready<T>(fut: impl Future<Output = T>) -> T {
    match pin!(fut).poll(&mut TaskContext::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("not ready"),
    }
}

/// Where a request's end signal is put.
type Signal = Arc<Mutex<Option<EndSignal>>>;

/// `Echo` behind a `ContextLayer`.
fn layered<B>(body: fn() -> B) -> (ctx_vars::ContextService<Echo<B>>, Signal) {
    let signal = Arc::new(Mutex::new(None));
    let service = ContextLayer::new().layer(Echo {
        body,
        signal: Arc::clone(&signal),
    });
    (service, signal)
}

#[test]
fn the_layer_ends_a_request_when_its_body_has_sent_its_last_frame() {
    fresh(|| {
        let (mut service, signal) = layered(|| Full::new(Bytes::from_static(b"hi")));
        let response = ready(service.call(http::Request::new(()))).unwrap();
        let signal = signal
            .lock()
            .unwrap()
            .clone()
            .expect("an endable request context");
        let mut body = response.into_body();
        assert!(!signal.is_ended(), "the body is still to be sent");
        let frame = ready(body.frame()).unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hi");
        assert!(!signal.is_ended());
        assert!(ready(body.frame()).is_none());
        assert!(
            signal.is_ended(),
            "ended at the last frame, before the drop"
        );
        assert!(body.is_end_stream());
    });
}

#[test]
fn the_layer_ends_a_request_whose_body_is_dropped_unsent() {
    fresh(|| {
        let (mut service, signal) = layered(|| StreamBody::new(Pending));
        let response = ready(service.call(http::Request::new(()))).unwrap();
        let signal = signal.lock().unwrap().clone().unwrap();
        drop(response);
        assert!(signal.is_ended());
    });
}

#[test]
fn the_layer_ends_a_request_whose_response_future_is_dropped() {
    fresh(|| {
        let (mut service, signal) = layered(|| Full::new(Bytes::new()));
        drop(service.call(http::Request::new(())));
        assert!(signal.lock().unwrap().clone().unwrap().is_ended());
    });
}

/// A body stream that never yields a frame.
struct Pending;

impl futures_core::Stream for Pending {
    type Item = Result<Frame<Bytes>, Infallible>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut TaskContext<'_>,
    ) -> Poll<Option<Self::Item>> {
        Poll::Pending
    }
}

/// Records the keys it is told.
#[derive(Default)]
struct Recorder(Mutex<Vec<u64>>);

impl ctx_vars::EndWatcher for Recorder {
    fn ended(&self, key: u64) {
        assert_eq!(REQUEST_ID.get(), None, "told in an empty context");
        self.0.lock().unwrap().push(key);
    }
}

#[test]
fn watchers_are_told_their_keys_at_the_end_unless_gone() {
    fresh(|| {
        let (request, end) = Context::new().with_value(&REQUEST_ID, 1).endable();
        let signal = request.end_signal().unwrap();
        let kept = Arc::new(Recorder::default());
        let gone = Arc::new(Recorder::default());
        signal.watch(&kept, 1);
        signal.watch(&kept, 2);
        signal.watch(&gone, 3);
        drop(gone);
        Context::clone(&request).run(|| end.end());
        signal.watch(&kept, 4); // after the end: at once
        assert_eq!(*kept.0.lock().unwrap(), [1, 2, 4]);
    });
}
