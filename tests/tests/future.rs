//! `WithContext` and `FutureExt`: futures that carry a context across polls and threads.

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use ctx_tests::{Pool, Tracked, block_on, fresh, poll_once, seed_main, yield_now};
use ctx_vars::{Context, ContextVar, FutureExt};

static VAR: ContextVar<String> = ContextVar::new("my_variable");
static COUNT: ContextVar<usize> = ContextVar::new("count");

/// The seed's first example: a set inside an awaited coroutine is visible to the caller.
#[test]
fn awaiting_shares_the_callers_context() {
    fresh(|| block_on(seed_main(&VAR).in_current_context()));
}

/// The seed's second example, on a multi-threaded executor that knows nothing of ctx:
/// eight tasks each keep their own value; all are set before any is checked.
#[test]
fn concurrent_tasks_keep_their_own_values() {
    async fn task(count: usize, all_set: Arc<AtomicUsize>) -> usize {
        COUNT.set(count);
        all_set.fetch_add(1, Ordering::SeqCst);
        while all_set.load(Ordering::SeqCst) < 8 {
            yield_now(1).await;
        }
        sub(count).await;
        assert_eq!(COUNT.get(), Some(count + 1));
        COUNT.get().unwrap()
    }
    async fn sub(count: usize) {
        assert_eq!(COUNT.get(), Some(count));
        COUNT.set(count + 1);
        assert_eq!(COUNT.get(), Some(count + 1));
    }
    fresh(|| {
        let pool = Pool::new(2);
        let all_set = Arc::new(AtomicUsize::new(0));
        let results: Vec<_> = (0..8)
            .map(|i| pool.spawn_raw(task(i, Arc::clone(&all_set)).in_current_context()))
            .collect();
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(result.recv().unwrap(), i + 1);
        }
        assert_eq!(COUNT.get(), None, "no task's set reached the spawner");
        pool.shutdown();
    });
}

/// API.md semantics 3, without a runtime: thousands of interleaved tasks moving between
/// worker threads each keep their own value across many yields.
#[test]
fn thousands_of_interleaved_tasks_keep_their_own_values() {
    fresh(|| {
        let pool = Pool::new(4);
        VAR.set("parent".into());
        let results: Vec<_> = (0..2000)
            .map(|i| {
                let fut = async move {
                    let mut mismatches = 0;
                    if VAR.get().as_deref() != Some("parent") {
                        mismatches += 1;
                    }
                    COUNT.set(i);
                    for step in 0..20 {
                        yield_now(1).await;
                        if COUNT.get() != Some(i + step) {
                            mismatches += 1;
                        }
                        COUNT.set(i + step + 1);
                    }
                    mismatches
                };
                pool.spawn_raw(fut.in_current_context())
            })
            .collect();
        let mismatches: usize = results.into_iter().map(|r| r.recv().unwrap()).sum();
        assert_eq!(mismatches, 0);
        pool.shutdown();
    });
}

#[test]
fn in_current_context_captures_at_the_call_not_at_first_poll() {
    fresh(|| {
        VAR.set("at call".into());
        let fut = async { VAR.get() }.in_current_context();
        VAR.set("at poll".into());
        assert_eq!(block_on(fut).as_deref(), Some("at call"));
    });
}

#[test]
fn sets_inside_stay_inside_and_persist_across_polls() {
    fresh(|| {
        VAR.set("outer".into());
        let mut fut = pin!(
            async {
                VAR.set("inner".into());
                yield_now(1).await;
                VAR.get()
            }
            .in_current_context()
        );
        assert_eq!(poll_once(fut.as_mut()), Poll::Pending);
        assert_eq!(VAR.get().as_deref(), Some("outer"), "no leak between polls");
        assert_eq!(fut.context().get(&VAR).map(String::as_str), Some("inner"));
        assert_eq!(poll_once(fut.as_mut()), Poll::Ready(Some("inner".into())));
        assert_eq!(VAR.get().as_deref(), Some("outer"));
    });
}

#[test]
fn with_context_and_scopes_run_in_the_given_context() {
    fresh(|| {
        let ctx = Context::new().with_value(&VAR, "given".into());
        assert_eq!(
            block_on(async { VAR.get() }.with_context(ctx.clone())).as_deref(),
            Some("given")
        );
        assert_eq!(
            block_on(ctx.scope(async { VAR.get() })).as_deref(),
            Some("given")
        );

        VAR.set("outer".into());
        COUNT.set(1);
        let seen = block_on(VAR.scope("scoped".into(), async {
            COUNT.set(2);
            (VAR.get(), COUNT.get())
        }));
        assert_eq!(seen, (Some("scoped".into()), Some(2)));
        assert_eq!(VAR.get().as_deref(), Some("outer"));
        assert_eq!(COUNT.get(), Some(1));
    });
}

#[test]
fn a_poll_that_panics_restores_the_pollers_context() {
    fresh(|| {
        VAR.set("poller".into());
        let fut = async {
            VAR.set("task".into());
            panic!("boom");
        }
        .in_current_context();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| block_on(fut)));
        assert!(caught.is_err());
        assert_eq!(VAR.get().as_deref(), Some("poller"));
    });
}

#[test]
fn a_dropped_future_is_dropped_inside_its_own_context() {
    fresh(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, seen_in_drop) = std::sync::mpsc::channel();
        VAR.set("task".into());
        let mut fut = Box::pin(
            async move {
                let _held = Tracked::on_drop(&drops, move || {
                    tx.send(VAR.get()).unwrap();
                });
                VAR.set("set by task".into());
                yield_now(1).await;
            }
            .in_current_context(),
        );
        assert_eq!(poll_once(fut.as_mut()), Poll::Pending);
        VAR.set("poller".into());
        drop(fut);
        assert_eq!(seen_in_drop.recv().unwrap().as_deref(), Some("set by task"));
        assert_eq!(
            VAR.get().as_deref(),
            Some("poller"),
            "restored after the drop"
        );
    });
}

#[test]
fn a_never_polled_future_is_dropped_inside_its_context_too() {
    fresh(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, seen_in_drop) = std::sync::mpsc::channel();
        let held = Tracked::on_drop(&drops, move || tx.send(VAR.get()).unwrap());
        let fut = Context::new()
            .with_value(&VAR, "ctx".into())
            .scope(async move {
                drop(held);
            });
        drop(fut);
        assert_eq!(seen_in_drop.recv().unwrap().as_deref(), Some("ctx"));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn streams_are_polled_in_their_context() {
    use futures_core::Stream;

    struct Counter(u32);
    impl Stream for Counter {
        type Item = Option<String>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Option<Self::Item>> {
            if self.0 == 0 {
                return Poll::Ready(None);
            }
            self.0 -= 1;
            Poll::Ready(Some(VAR.get()))
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (self.0 as usize, Some(self.0 as usize))
        }
    }
    fresh(|| {
        let mut stream = pin!(ctx_vars::WithContext::new(
            Context::new().with_value(&VAR, "stream".into()),
            Counter(2)
        ));
        assert_eq!(stream.size_hint(), (2, Some(2)));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for _ in 0..2 {
            assert_eq!(
                stream.as_mut().poll_next(&mut cx),
                Poll::Ready(Some(Some("stream".into())))
            );
        }
        assert_eq!(stream.as_mut().poll_next(&mut cx), Poll::Ready(None));
        assert_eq!(VAR.get(), None);
    });
}

#[test]
fn with_context_keeps_send_and_shows_its_context() {
    fn assert_send<T: Send>(_: &T) {}
    fresh(|| {
        let fut = async { VAR.get() }.in_current_context();
        assert_send(&fut);
        let fut = std::future::ready(1).with_context(Context::new().with_value(&COUNT, 3));
        assert_eq!(fut.context().get(&COUNT), Some(&3));
        assert_eq!(block_on(fut), 1);
        assert!(
            format!("{:?}", std::future::ready(1).in_current_context()).contains("WithContext")
        );
    });
}

#[test]
fn a_finished_future_is_dropped_at_completion_inside_its_context() {
    fresh(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, seen_in_drop) = std::sync::mpsc::channel();
        let held = Tracked::on_drop(&drops, move || tx.send(VAR.get()).unwrap());
        let mut fut = Box::pin(
            Context::new()
                .with_value(&VAR, "task".into())
                .scope(async move {
                    let _held = &held;
                }),
        );
        assert_eq!(poll_once(fut.as_mut()), Poll::Ready(()));
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped in the final poll");
        assert_eq!(seen_in_drop.recv().unwrap().as_deref(), Some("task"));
        let again =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(fut.as_mut())));
        let payload = again.unwrap_err();
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|m| (*m).to_owned()))
            .unwrap_or_default();
        assert!(message.contains("polled after it completed"), "{message}");
        drop(fut);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn the_inner_future_can_be_reached_and_taken_back_out() {
    /// Ready with its number at once.
    struct Number(u32);
    impl std::future::Future for Number {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<u32> {
            Poll::Ready(self.0)
        }
    }
    fresh(|| {
        let ctx = Context::new().with_value(&COUNT, 1);
        let mut fut = Number(5).with_context(ctx.clone());
        assert_eq!(fut.inner().0, 5);
        fut.inner_mut().0 = 6;
        assert_eq!(fut.into_inner().0, 6);

        let (context, inner) = Number(7).with_context(ctx).into_parts();
        assert_eq!(context.get(&COUNT), Some(&1));
        assert_eq!(block_on(inner), 7);

        let mut fut = Box::pin(Number(8).with_context(Context::new()));
        fut.as_mut().inner_pin_mut().0 = 9;
        assert_eq!(block_on(fut), 9);
    });
}

#[test]
fn take_context_returns_what_the_future_set() {
    fresh(|| {
        let mut fut = Box::pin(
            async {
                COUNT.set(2);
                yield_now(1).await;
                COUNT.set(3);
            }
            .with_context(Context::new()),
        );
        assert_eq!(poll_once(fut.as_mut()), Poll::Pending);
        assert_eq!(poll_once(fut.as_mut()), Poll::Ready(()));
        let left = fut.as_mut().take_context();
        assert_eq!(left.get(&COUNT), Some(&3));
        assert!(fut.as_mut().take_context().is_empty(), "spent");
        assert_eq!(COUNT.get(), None);
    });
}

#[test]
fn take_context_drops_an_unfinished_future_inside_its_context() {
    fresh(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, seen_in_drop) = std::sync::mpsc::channel();
        let held = Tracked::on_drop(&drops, move || tx.send(VAR.get()).unwrap());
        let mut fut = Box::pin(
            async move {
                let _held = held;
                VAR.set("inside".into());
                std::future::pending::<()>().await;
            }
            .with_context(Context::new()),
        );
        assert_eq!(poll_once(fut.as_mut()), Poll::Pending);
        let left = fut.as_mut().take_context();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(seen_in_drop.recv().unwrap().as_deref(), Some("inside"));
        assert_eq!(left.get(&VAR).map(String::as_str), Some("inside"));
        let message = ctx_tests::expect_panic(|| poll_once(fut.as_mut()));
        assert!(message.contains("polled after it completed"), "{message}");
    });
}

#[test]
fn a_sink_runs_every_call_in_its_context() {
    use futures_sink::Sink;

    /// Records the value of `COUNT` at every call.
    #[derive(Default)]
    struct Recorder(Vec<(&'static str, Option<usize>)>);
    impl Sink<()> for Recorder {
        type Error = std::convert::Infallible;
        fn poll_ready(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.0.push(("ready", COUNT.get()));
            Poll::Ready(Ok(()))
        }
        fn start_send(mut self: Pin<&mut Self>, (): ()) -> Result<(), Self::Error> {
            self.0.push(("send", COUNT.get()));
            COUNT.set(COUNT.get().unwrap_or(0) + 1);
            Ok(())
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.0.push(("flush", COUNT.get()));
            Poll::Ready(Ok(()))
        }
        fn poll_close(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.0.push(("close", COUNT.get()));
            Poll::Ready(Ok(()))
        }
    }
    fresh(|| {
        let context = Context::new().with_value(&COUNT, 10);
        let mut sink = Box::pin(ctx_vars::WithContext::new(context, Recorder::default()));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(sink.as_mut().poll_ready(&mut cx).is_ready());
        sink.as_mut().start_send(()).unwrap();
        assert!(sink.as_mut().poll_flush(&mut cx).is_ready());
        assert!(sink.as_mut().poll_close(&mut cx).is_ready());
        assert_eq!(COUNT.get(), None, "nothing leaks to the caller");
        assert_eq!(sink.context().get(&COUNT), Some(&11));
        assert_eq!(
            sink.inner().0,
            [
                ("ready", Some(10)),
                ("send", Some(10)),
                ("flush", Some(11)),
                ("close", Some(11))
            ]
        );
    });
}
