//! Each scenario is written once, generic over [`Runtime`], and run on tokio
//! (multi-thread with 4 workers, and current-thread), async-std and smol.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ctx_tests::runtime::{AsyncStd, Runtime, Smol, Tokio};
use ctx_tests::{Tracked, fresh, seed_main, yield_now};
use ctx_vars::{Context, FutureExt, context_var};
use tokio::sync::{Barrier, oneshot};

#[context_var]
static VAR: String;

#[context_var]
static COUNT: usize;

/// Local to its task, as a database transaction would be.
#[context_var(inherit = false)]
static TRANSACTION: Tracked;

/// The seed's first example: a set inside an awaited coroutine is seen by the caller.
fn seed_awaiting_shares_the_context<R: Runtime>(rt: &R) {
    rt.block_on(async { rt.spawn(seed_main(&VAR)).join.await });
}

/// The seed's second example: 8 tasks each keep their own count; every task has set its
/// count (and slept) before any checks.
fn seed_tasks_keep_their_own_values<R: Runtime>(rt: &R) {
    async fn sub(count: usize) {
        assert_eq!(COUNT.get(), Some(count));
        COUNT.set(count + 1);
        assert_eq!(COUNT.get(), Some(count + 1));
    }
    rt.block_on(async {
        let all_set = Arc::new(Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|count| {
                let all_set = Arc::clone(&all_set);
                let nap = rt.sleep(Duration::from_millis(1));
                rt.spawn(async move {
                    COUNT.set(count);
                    nap.await;
                    all_set.wait().await;
                    sub(count).await;
                    COUNT.get()
                })
            })
            .collect();
        for (count, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.join.await, Some(count + 1));
        }
        assert_eq!(COUNT.get(), None);
    });
}

/// A child sees its parent's values at the spawn call, not later ones; its own sets reach
/// neither the parent nor a sibling. The same for blocking jobs.
fn children_inherit_a_snapshot<R: Runtime>(rt: &R) {
    rt.block_on(async {
        VAR.set("before spawn".into());
        let (go, wait) = oneshot::channel::<()>();
        let child = rt.spawn(async move {
            wait.await.unwrap();
            let seen = VAR.get();
            VAR.set("child".into());
            COUNT.set(1);
            seen
        });
        let (go_blocking, wait_blocking) = std::sync::mpsc::channel::<()>();
        let blocking = rt.spawn_blocking(move || {
            wait_blocking.recv().unwrap();
            let seen = VAR.get();
            VAR.set("blocking".into());
            seen
        });
        VAR.set("after spawn".into());
        go.send(()).unwrap();
        go_blocking.send(()).unwrap();
        assert_eq!(child.join.await.as_deref(), Some("before spawn"));
        assert_eq!(blocking.await.as_deref(), Some("before spawn"));
        assert_eq!(VAR.get().as_deref(), Some("after spawn"));
        assert_eq!(COUNT.get(), None);

        let sibling = rt.spawn(async { (VAR.get(), COUNT.get()) });
        assert_eq!(sibling.join.await, (Some("after spawn".into()), None));
    });
}

/// API.md semantics 3 at scale: 10 000 tasks, each with its own value across 20 yields
/// and a hop through the blocking pool, and no mismatch.
fn ten_thousand_tasks_stay_isolated<R: Runtime>(rt: &R) {
    let mismatches = rt.block_on(async {
        VAR.set("parent".into());
        let tasks: Vec<_> = (0..10_000usize)
            .map(|i| {
                rt.spawn(async move {
                    let mut mismatches = usize::from(VAR.get().as_deref() != Some("parent"));
                    COUNT.set(i);
                    for _ in 0..20 {
                        yield_now(1).await;
                        mismatches += usize::from(COUNT.get() != Some(i));
                    }
                    let hop = R::spawn_blocking_in_task(move || COUNT.get() != Some(i)).await;
                    mismatches + usize::from(hop) + usize::from(COUNT.get() != Some(i))
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.join.await;
        }
        total
    });
    assert_eq!(mismatches, 0);
}

/// A cancelled task's future is dropped inside its own context; a panicking task leaves
/// the worker clean for the next one.
fn cancellation_and_panics<R: Runtime>(rt: &R) {
    rt.block_on(async {
        VAR.set("parent".into());
        let drops = Arc::new(AtomicUsize::new(0));
        let (seen_tx, seen_rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel();
        let task = rt.spawn({
            let drops = Arc::clone(&drops);
            async move {
                VAR.set("task".into());
                let _guard = Tracked::on_drop(&drops, move || {
                    let _ = seen_tx.send(VAR.get());
                });
                started_tx.send(()).unwrap();
                std::future::pending::<()>().await;
            }
        });
        started_rx.await.unwrap();
        (task.cancel)().await;
        assert_eq!(seen_rx.await.unwrap().as_deref(), Some("task"));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(VAR.get().as_deref(), Some("parent"));

        for _ in 0..4 {
            let panicking = rt.spawn(async {
                VAR.set("panicking".into());
                yield_now(1).await;
                panic!("task panics on purpose");
            });
            let joined = std::panic::AssertUnwindSafe(panicking.join);
            let caught = futures_join_catch(joined).await;
            assert!(caught.is_err());
            let next = rt.spawn(async { VAR.get() });
            assert_eq!(next.join.await.as_deref(), Some("parent"));
            let raw = rt.spawn_raw(async { VAR.get() });
            assert_eq!(raw.await, None, "the worker's own context is still empty");
        }
    });
}

/// Awaits `fut`, catching a panic it resumes.
async fn futures_join_catch<F: std::future::Future>(
    fut: std::panic::AssertUnwindSafe<F>,
) -> std::thread::Result<F::Output> {
    let mut fut = std::pin::pin!(fut.0);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(out)) => std::task::Poll::Ready(Ok(out)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    })
    .await
}

/// `join!` branches share their task's context, as awaited coroutines do in asyncio;
/// `in_current_context` gives each branch its own copy.
fn join_branches_share_unless_scoped<R: Runtime>(rt: &R) {
    rt.block_on(async {
        let (tx, rx) = oneshot::channel::<()>();
        let setter = async {
            VAR.set("from branch a".into());
            tx.send(()).unwrap();
        };
        let reader = async {
            rx.await.unwrap();
            VAR.get()
        };
        let ((), seen) = tokio::join!(setter, reader);
        assert_eq!(seen.as_deref(), Some("from branch a"), "shared");
        assert_eq!(
            VAR.get().as_deref(),
            Some("from branch a"),
            "and seen by the task"
        );

        VAR.set("task".into());
        let (tx, rx) = oneshot::channel::<()>();
        let setter = async {
            VAR.set("isolated a".into());
            tx.send(()).unwrap();
        }
        .in_current_context();
        let reader = async {
            rx.await.unwrap();
            VAR.get()
        }
        .in_current_context();
        let ((), seen) = tokio::join!(setter, reader);
        assert_eq!(seen.as_deref(), Some("task"), "isolated");
        assert_eq!(VAR.get().as_deref(), Some("task"));
    });
}

/// The documented gap: the runtime's own `spawn` does not carry the context; wrapping
/// the future closes it.
fn raw_spawn_is_the_gap_and_in_current_context_closes_it<R: Runtime>(rt: &R) {
    rt.block_on(async {
        VAR.set("creator".into());
        assert_eq!(
            rt.spawn_raw(async { VAR.get() }).await,
            None,
            "not inherited"
        );
        let wrapped = rt.spawn_raw(async { VAR.get() }.in_current_context());
        assert_eq!(wrapped.await.as_deref(), Some("creator"));
    });
}

/// `block_on` runs in a copy: nothing set inside leaks out after it returns.
fn block_on_does_not_leak<R: Runtime>(rt: &R) {
    VAR.set("outside".into());
    let inside = rt.block_on(async {
        let seen = VAR.get();
        VAR.set("inside".into());
        seen
    });
    assert_eq!(inside.as_deref(), Some("outside"));
    assert_eq!(VAR.get().as_deref(), Some("outside"));
    assert_eq!(Context::current().len(), 1);
}

/// A variable declared `inherit = false` is seen by awaited code and `join!` branches,
/// never by spawned tasks or blocking jobs: 300 background jobs spawned while a
/// transaction is open neither see it nor keep it alive.
fn local_variables_stay_with_their_task<R: Runtime>(rt: &R) {
    async fn awaited() -> bool {
        TRANSACTION.with(|tx| tx.is_some())
    }
    let drops = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        VAR.set("request".into());
        let all_spawned = Arc::new(Barrier::new(301));
        let jobs = Context::new()
            .with_value(&TRANSACTION, Tracked::new(&drops))
            .scope(async {
                assert!(awaited().await, "awaited code sees it");
                let (in_branch, ()) = tokio::join!(awaited(), async {});
                assert!(in_branch, "so do join! branches");
                VAR.set("request".into());
                let jobs: Vec<_> = (0..300)
                    .map(|_| {
                        let all_spawned = Arc::clone(&all_spawned);
                        rt.spawn(async move {
                            all_spawned.wait().await;
                            (VAR.get(), TRANSACTION.with(|tx| tx.is_some()))
                        })
                    })
                    .collect();
                let blocking = rt.spawn_blocking(|| TRANSACTION.with(|tx| tx.is_some()));
                let in_task = R::spawn_blocking_in_task(|| TRANSACTION.with(|tx| tx.is_some()));
                assert!(!blocking.await, "blocking jobs do not inherit it");
                assert!(!in_task.await);
                jobs
            })
            .await;
        // The transaction's context is gone, and no job holds its value.
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "no spawned job keeps it alive"
        );
        all_spawned.wait().await;
        for job in jobs {
            assert_eq!(job.join.await, (Some("request".into()), false));
        }
    });
}

macro_rules! on_every_runtime {
    ($($scenario:ident),* $(,)?) => {
        on_every_runtime!(@runtime tokio_multi_thread, Tokio::multi_thread(); $($scenario),*);
        on_every_runtime!(@runtime tokio_current_thread, Tokio::current_thread(); $($scenario),*);
        on_every_runtime!(@runtime async_std, AsyncStd; $($scenario),*);
        on_every_runtime!(@runtime smol, Smol; $($scenario),*);
    };
    (@runtime $module:ident, $runtime:expr; $($scenario:ident),*) => {
        mod $module {
            use super::*;
            $(
                #[test]
                fn $scenario() {
                    let runtime = $runtime;
                    fresh(|| super::$scenario(&runtime));
                }
            )*
        }
    };
}

on_every_runtime!(
    seed_awaiting_shares_the_context,
    seed_tasks_keep_their_own_values,
    children_inherit_a_snapshot,
    ten_thousand_tasks_stay_isolated,
    cancellation_and_panics,
    join_branches_share_unless_scoped,
    raw_spawn_is_the_gap_and_in_current_context_closes_it,
    block_on_does_not_leak,
    local_variables_stay_with_their_task,
);
