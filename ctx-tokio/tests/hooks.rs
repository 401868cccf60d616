//! `ctx_tokio::hooks`: every task of a runtime in a context of its own, through tokio's
//! task hooks. Built only with `--cfg tokio_unstable` and the `hooks` feature
//! (`cargo xtask ci` runs it so).

#![cfg(all(feature = "hooks", tokio_unstable))]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ctx_tokio::hooks::{Leak, TaskHooks};
use ctx_tokio::{Context, ContextVar};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::runtime::{Builder, Runtime};

static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
static LEFTOVER: ContextVar<u64> = ContextVar::new("leftover");

fn runtime(flavor: &str, hooks: TaskHooks) -> Runtime {
    let mut builder = match flavor {
        "multi_thread" => Builder::new_multi_thread(),
        _ => Builder::new_current_thread(),
    };
    builder.worker_threads(2).enable_all();
    hooks.install(&mut builder);
    builder.build().expect("runtime")
}

/// A library that knows nothing of ctx: it spawns with plain `tokio::spawn`.
mod library {
    use super::{LEFTOVER, REQUEST_ID};

    /// Reads the request id from a task of its own.
    pub(crate) async fn audit() -> Option<u64> {
        tokio::spawn(async {
            tokio::task::yield_now().await;
            REQUEST_ID.get()
        })
        .await
        .expect("audit task")
    }

    /// Sets a value in its task and leaves it there: a bug that, without isolation,
    /// lands in the worker thread's context for the next task. Returns what the task
    /// saw before setting it.
    pub(crate) async fn careless() -> Option<u64> {
        CARELESS_SPAWN_LINE.store(line!() + 1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async {
            let before = LEFTOVER.get();
            LEFTOVER.set(REQUEST_ID.get().unwrap_or_default());
            before
        })
        .await
        .expect("careless task")
    }

    /// Where `careless` spawns: the line of its `tokio::spawn`.
    pub(crate) static CARELESS_SPAWN_LINE: std::sync::atomic::AtomicU32 =
        std::sync::atomic::AtomicU32::new(0);
}

/// The handler: sets the request's id from its header, then reads it back through
/// plain `tokio::spawn`s, its own and the library's.
async fn handler(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let id: u64 = request.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    REQUEST_ID.set(id);
    let spawned = tokio::spawn(async { REQUEST_ID.get() }).await.unwrap();
    let audited = library::audit().await;
    let leftover = library::careless().await;
    let body = format!(
        "{id} {} {} {}",
        spawned.unwrap_or_default(),
        audited.unwrap_or_default(),
        leftover.map_or("-".to_owned(), |v| v.to_string())
    );
    Ok(Response::new(Full::new(Bytes::from(body))))
}

/// A hyper server as hyper's examples write it: a plain `tokio::spawn` per connection.
async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handler))
                    .await;
            });
        }
    });
    addr
}

/// Sends `n` requests, 32 at a time; each answer's four readings.
async fn drive(addr: SocketAddr, n: u64) -> Vec<(u64, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    let mut set = tokio::task::JoinSet::new();
    for id in 1..=n {
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
        let client = client.clone();
        set.spawn(async move {
            let _permit = permit;
            let request = Request::get(format!("http://{addr}/"))
                .header("x-request-id", id.to_string())
                .body(Empty::new())
                .unwrap();
            let response = client.request(request).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (id, String::from_utf8_lossy(&body).into_owned())
        });
    }
    set.join_all().await
}

fn every_library_task_sees_its_request(flavor: &str) {
    let rt = runtime(flavor, TaskHooks::inherit());
    Context::new().run(|| {
        let answers = rt.block_on(async { drive(serve().await, 1_000).await });
        assert_eq!(answers.len(), 1_000);
        for (id, body) in answers {
            let readings: Vec<&str> = body.split(' ').collect();
            assert_eq!(readings[..3], [&*id.to_string(); 3], "{body}");
        }
    });
}

#[test]
fn inherit_every_library_task_sees_its_request_multi_thread() {
    every_library_task_sees_its_request("multi_thread");
}

#[test]
fn inherit_every_library_task_sees_its_request_current_thread() {
    every_library_task_sees_its_request("current_thread");
}

fn leaks_are_reported_and_seen_by_no_one(flavor: &str) {
    let leaks: Arc<Mutex<Vec<Leak>>> = Arc::default();
    let hooks = {
        let leaks = Arc::clone(&leaks);
        TaskHooks::isolate().on_leak(move |leak| leaks.lock().unwrap().push(leak.clone()))
    };
    let mut builder = match flavor {
        "multi_thread" => Builder::new_multi_thread(),
        _ => Builder::new_current_thread(),
    };
    builder
        .worker_threads(2)
        .enable_all()
        .on_thread_start(ctx_tokio::strict::enable);
    hooks.install(&mut builder);
    let rt = builder.build().unwrap();
    let answers = ctx_tokio::strict::block_on(&rt, async { drive(serve().await, 200).await });
    for (_, body) in &answers {
        // The careless task never saw another's leftover.
        assert!(body.ends_with(" -"), "{body}");
    }
    drop(rt);
    let leaks = leaks.lock().unwrap();
    let careless: Vec<&Leak> = leaks
        .iter()
        .filter(|leak| leak.variables == ["leftover"])
        .collect();
    assert_eq!(careless.len(), 200, "one report per careless task");
    let here = Location::caller().file();
    for leak in careless {
        assert_eq!(leak.spawned_at.file(), here);
        assert_eq!(
            leak.spawned_at.line(),
            library::CARELESS_SPAWN_LINE.load(Ordering::Relaxed)
        );
        assert!(leak.to_string().contains("spawned at"), "{leak}");
    }
}

#[test]
fn isolate_reports_a_leaking_task_with_its_spawn_location_multi_thread() {
    leaks_are_reported_and_seen_by_no_one("multi_thread");
}

#[test]
fn isolate_reports_a_leaking_task_with_its_spawn_location_current_thread() {
    leaks_are_reported_and_seen_by_no_one("current_thread");
}

/// A task's own `set`s, and their tokens, carry over from one poll to the next, on
/// whichever worker polls it; resetting restores what the task started with.
#[test]
fn sets_and_tokens_persist_across_polls_and_stay_in_their_task() {
    for (hooks, start) in [
        (TaskHooks::inherit(), Some(1000)),
        (TaskHooks::isolate(), None),
    ] {
        let rt = runtime("multi_thread", hooks);
        Context::new().with_value(&REQUEST_ID, 1000).run(|| {
            let seen = rt.block_on(async {
                let tasks: Vec<_> = (0..50u64)
                    .map(|i| {
                        tokio::spawn(async move {
                            let first = REQUEST_ID.get();
                            let token = REQUEST_ID.set(i);
                            let mut same = true;
                            for _ in 0..20 {
                                tokio::task::yield_now().await;
                                same &= REQUEST_ID.get() == Some(i);
                            }
                            let reset = REQUEST_ID.reset(token);
                            (first, same, reset, REQUEST_ID.get())
                        })
                    })
                    .collect();
                let mut seen = Vec::new();
                for task in tasks {
                    seen.push(task.await.unwrap());
                }
                seen
            });
            for (first, same, reset, last) in seen {
                assert_eq!(first, start);
                assert!(same, "a set is kept from poll to poll");
                assert_eq!(reset, Ok(()), "a token from an earlier poll resets");
                assert_eq!(last, start);
            }
            assert_eq!(REQUEST_ID.get(), Some(1000), "nothing leaks back");
        });
    }
}

/// More tasks holding contexts at once than the store has places of its own for: the
/// rest share its maps, and every task still finds its own context, poll after poll.
/// A task spawned from an endable context (a request's) that outlives it: after the
/// end it keeps what it set itself, and nothing it inherited; a task spawned from the
/// context after its end inherits nothing; its values are dropped at the end even while
/// the task sleeps.
#[test]
fn a_task_that_outlives_its_request_keeps_only_what_it_set() {
    for flavor in ["multi_thread", "current_thread"] {
        let rt = runtime(flavor, TaskHooks::inherit());
        let (request, end) = Context::new().with_value(&REQUEST_ID, 1).endable();
        let dropped = Arc::new(AtomicUsize::new(0));
        let probe = DropProbe(Arc::clone(&dropped));
        let request = request.with_value(&PROBE, probe);
        let (during, after) = Context::new().run(|| {
            rt.block_on(async {
                let (ready_tx, ready) = tokio::sync::oneshot::channel();
                let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
                let task = Context::clone(&request).run(|| {
                    tokio::spawn(async move {
                        let during = (REQUEST_ID.get(), PROBE.with(|p| p.is_some()));
                        LEFTOVER.set(5);
                        ready_tx.send(()).unwrap();
                        go_rx.await.unwrap();
                        let after = (REQUEST_ID.get(), PROBE.with(|p| p.is_some()));
                        (during, after, LEFTOVER.get())
                    })
                });
                ready.await.unwrap();
                // On one thread the task is stored, waiting, and the end strips it at
                // once. On several, its poll may still be under way: it is stripped as
                // that poll ends. Either way, before its next poll.
                end.end();
                assert_eq!(
                    dropped.load(Ordering::SeqCst),
                    0,
                    "the request still holds it"
                );
                drop(request);
                if flavor == "multi_thread" {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    while dropped.load(Ordering::SeqCst) == 0
                        && std::time::Instant::now() < deadline
                    {
                        tokio::task::yield_now().await;
                    }
                }
                assert_eq!(
                    dropped.load(Ordering::SeqCst),
                    1,
                    "{flavor}: released at the end, before the task's next poll"
                );
                go.send(()).unwrap();
                let (during, after, own) = task.await.unwrap();
                assert_eq!(own, Some(5), "{flavor}: its own set is kept");
                (during, after)
            })
        });
        assert_eq!(during, (Some(1), true), "{flavor}");
        assert_eq!(after, (None, false), "{flavor}");
    }
}

#[test]
fn a_task_spawned_from_an_ended_context_inherits_nothing() {
    let rt = runtime("multi_thread", TaskHooks::inherit());
    let (request, end) = Context::new().with_value(&REQUEST_ID, 1).endable();
    drop(end);
    let seen = Context::new().run(|| {
        rt.block_on(async {
            let task = Context::clone(&request).run(|| tokio::spawn(async { REQUEST_ID.get() }));
            task.await.unwrap()
        })
    });
    assert_eq!(seen, None);
}

/// Counts its drops.
struct DropProbe(Arc<AtomicUsize>);
impl Drop for DropProbe {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
static PROBE: ContextVar<DropProbe> = ContextVar::new("probe");

#[test]
fn thousands_of_tasks_holding_contexts_at_once_each_keep_their_own() {
    const TASKS: u64 = 10_000;
    let rt = runtime("multi_thread", TaskHooks::inherit());
    Context::new().with_value(&REQUEST_ID, 7).run(|| {
        let wrong = rt.block_on(async {
            let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
            let tasks: Vec<_> = (0..TASKS)
                .map(|i| {
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        LEFTOVER.set(i);
                        // Every task is alive, its context stored, before any goes on.
                        barrier.wait().await;
                        tokio::task::yield_now().await;
                        (REQUEST_ID.get(), LEFTOVER.get()) != (Some(7), Some(i))
                    })
                })
                .collect();
            let mut wrong = 0;
            for task in tasks {
                wrong += u32::from(task.await.unwrap());
            }
            wrong
        });
        assert_eq!(wrong, 0);
    });
}

#[test]
fn inherit_copies_the_spawners_context_and_adapters_keep_working() {
    let rt = runtime("multi_thread", TaskHooks::inherit());
    Context::new().with_value(&REQUEST_ID, 7).run(|| {
        let (plain, nested, adapter, after) = ctx_tokio::block_on(&rt, async {
            let plain = tokio::spawn(async {
                let seen = REQUEST_ID.get();
                REQUEST_ID.set(8); // stays in this task
                let nested = tokio::spawn(async { REQUEST_ID.get() }).await.unwrap();
                (seen, nested)
            });
            let adapter = ctx_tokio::spawn(async { REQUEST_ID.get() });
            let (plain, nested) = plain.await.unwrap();
            (plain, nested, adapter.await.unwrap(), REQUEST_ID.get())
        });
        assert_eq!(plain, Some(7));
        assert_eq!(nested, Some(8), "a task's child copies the task's context");
        assert_eq!(adapter, Some(7));
        assert_eq!(after, Some(7), "nothing leaks back");
    });
}

#[test]
fn your_own_hooks_are_chained() {
    let counts: Arc<[AtomicUsize; 4]> = Arc::default();
    let seen_in_poll = Arc::new(Mutex::new(Vec::new()));
    let hooks = {
        let (c1, c2, c3, c4) = (
            Arc::clone(&counts),
            Arc::clone(&counts),
            Arc::clone(&counts),
            Arc::clone(&counts),
        );
        let seen = Arc::clone(&seen_in_poll);
        TaskHooks::inherit()
            .on_task_spawn(move |_| {
                c1[0].fetch_add(1, Ordering::Relaxed);
            })
            .on_before_task_poll(move |_| {
                c2[1].fetch_add(1, Ordering::Relaxed);
                // In the task's context already.
                seen.lock().unwrap().push(REQUEST_ID.get());
            })
            .on_after_task_poll(move |_| {
                c3[2].fetch_add(1, Ordering::Relaxed);
            })
            .on_task_terminate(move |_| {
                c4[3].fetch_add(1, Ordering::Relaxed);
            })
    };
    let rt = runtime("current_thread", hooks);
    Context::new().with_value(&REQUEST_ID, 3).run(|| {
        rt.block_on(async {
            tokio::spawn(async { tokio::task::yield_now().await })
                .await
                .unwrap();
        });
    });
    drop(rt);
    let counts: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(counts, [1, 2, 2, 1]);
    assert_eq!(*seen_in_poll.lock().unwrap(), [Some(3), Some(3)]);
}

/// A hooked runtime started inside `block_in_place` polls its tasks on the thread that
/// is polling the outer task: the polls nest, and the outer task keeps its context.
#[test]
fn a_runtime_inside_block_in_place_leaves_the_outer_task_its_context() {
    let outer = runtime("multi_thread", TaskHooks::inherit());
    let seen = outer.block_on(async {
        tokio::spawn(async {
            REQUEST_ID.set(5);
            let inner_saw = tokio::task::block_in_place(|| {
                let inner = runtime("current_thread", TaskHooks::inherit());
                inner.block_on(async { tokio::spawn(async { REQUEST_ID.get() }).await.unwrap() })
            });
            let same_poll = REQUEST_ID.get();
            // The next poll is woken from outside this one. A wake from inside it (a
            // `yield_now` here, where the worker gave its core away) lets another worker
            // poll the task before tokio runs this poll's after-poll hook, which stores
            // its context: a race of the hooks themselves, not of the nesting tested here.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            (inner_saw, same_poll, REQUEST_ID.get())
        })
        .await
        .unwrap()
    });
    assert_eq!(seen, (Some(5), Some(5), Some(5)));
}

/// A user's poll hook that panics must not leave the thread inside the task's context:
/// the panic leaves the runtime, and the caller's thread is in its own context again.
#[test]
fn a_panicking_user_poll_hook_leaves_the_thread_in_its_own_context() {
    for hook in ["before", "after"] {
        let seen = std::thread::spawn(move || {
            let panics = move |_: &tokio::runtime::TaskMeta<'_>| {
                if REQUEST_ID.get() == Some(2) {
                    panic!("user hook");
                }
            };
            let hooks = match hook {
                "before" => TaskHooks::inherit().on_before_task_poll(panics),
                _ => TaskHooks::inherit().on_after_task_poll(panics),
            };
            let runtime = runtime("current_thread", hooks);
            REQUEST_ID.set(1);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runtime.block_on(async {
                    let task = async {
                        REQUEST_ID.set(2);
                        tokio::task::yield_now().await;
                    };
                    let _ = tokio::spawn(task).await;
                });
            }));
            assert!(outcome.is_err(), "{hook}: the hook's panic leaves block_on");
            let seen = REQUEST_ID.get();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(runtime)));
            seen
        })
        .join()
        .unwrap();
        assert_eq!(seen, Some(1), "{hook}: the caller's own value");
    }
}

/// A task spawned through a retained handle onto a runtime that has shut down is never
/// polled, and tokio reports its end before its spawn: nothing may be kept for it.
#[test]
fn a_spawn_onto_a_shut_down_runtime_keeps_no_context() {
    static HELD: ContextVar<Arc<()>> = ContextVar::new("held");
    let runtime = runtime("current_thread", TaskHooks::inherit());
    let handle = runtime.handle().clone();
    drop(runtime);
    let value = Arc::new(());
    let weak = Arc::downgrade(&value);
    Context::new().with_value(&HELD, value).run(|| {
        drop(handle.spawn(async {}));
    });
    assert!(
        weak.upgrade().is_none(),
        "the store still holds the spawner's context"
    );
    drop(handle);
}

/// Tasks still pending when a current-thread runtime is dropped: their futures are
/// dropped without any hook, and `hooks::shutdown` drops them in an empty context, not
/// the caller's.
#[test]
fn pending_tasks_dropped_at_shutdown_never_see_the_callers_context() {
    struct Probe(std::sync::mpsc::Sender<Option<u64>>);
    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.send(REQUEST_ID.get()).unwrap();
            LEFTOVER.set(99);
        }
    }
    std::thread::spawn(|| {
        let runtime = runtime("current_thread", TaskHooks::inherit());
        let (tx, rx) = std::sync::mpsc::channel();
        REQUEST_ID.set(1);
        runtime.block_on(async {
            let probe = Probe(tx);
            drop(tokio::spawn(async move {
                let _probe = probe;
                std::future::pending::<()>().await;
            }));
            tokio::task::yield_now().await;
        });
        ctx_tokio::hooks::shutdown(runtime);
        assert_eq!(
            rx.recv().unwrap(),
            None,
            "the pending task saw the caller's value"
        );
        assert_eq!(
            LEFTOVER.get(),
            None,
            "its set landed in the caller's context"
        );
    })
    .join()
    .unwrap();
}

/// The audit lists each spawn site whose work would run without its spawner's values,
/// once, with its file and line: plain spawns from a context holding values, and plain
/// `spawn_blocking`s; not ctx's own spawns, nor plain spawns from an empty context.
#[test]
fn the_audit_reports_each_unwrapped_spawn_site_once() {
    use ctx_tokio::hooks::{SpawnKind, Unwrapped};
    for (flavor, hooks) in [
        ("multi_thread", TaskHooks::isolate()),
        ("current_thread", TaskHooks::inherit()),
    ] {
        let found: Arc<Mutex<Vec<Unwrapped>>> = Arc::default();
        let sink = Arc::clone(&found);
        let rt = runtime(
            flavor,
            hooks.on_unwrapped(move |site| sink.lock().unwrap().push(site.clone())),
        );
        let expected = Context::new().run(|| {
            REQUEST_ID.set(1);
            ctx_tokio::block_on(&rt, async {
                let mut lines = Vec::new();
                for _ in 0..3 {
                    let (line, task) = (line!(), tokio::spawn(async {}));
                    task.await.unwrap();
                    lines.push((SpawnKind::Task, line));
                    let (line, task) = (line!(), tokio::task::spawn_blocking(|| {}));
                    task.await.unwrap();
                    lines.push((SpawnKind::Blocking, line));
                    let mut set = tokio::task::JoinSet::new();
                    let line = (line!(), set.spawn(async {})).0;
                    set.join_next().await.unwrap().unwrap();
                    lines.push((SpawnKind::Task, line));
                    // Not reported: ctx's own, and plain ones from an empty context.
                    ctx_tokio::spawn(async {}).await.unwrap();
                    ctx_tokio::spawn_blocking(|| {}).await.unwrap();
                    let handle = tokio::runtime::Handle::current();
                    ctx_tokio::HandleExt::ctx_spawn_blocking(&handle, || {})
                        .await
                        .unwrap();
                    let mut set = tokio::task::JoinSet::new();
                    ctx_tokio::JoinSetExt::ctx_spawn_blocking(&mut set, || {});
                    set.join_next().await.unwrap().unwrap();
                    let empty = Context::new().run(|| tokio::spawn(async {}));
                    empty.await.unwrap();
                }
                lines.sort_unstable_by_key(|&(_, line)| line);
                lines.dedup();
                lines
            })
        });
        // tokio reports a task's end after its output can be joined; dropping the
        // runtime waits for every worker and blocking thread.
        drop(rt);
        let mut found: Vec<_> = found
            .lock()
            .unwrap()
            .iter()
            .map(|site| {
                assert_eq!(site.spawned_at.file(), file!(), "{site}");
                let variables: &[&str] = match site.kind {
                    SpawnKind::Task => &["request_id"],
                    _ => &[],
                };
                assert_eq!(site.variables, variables, "{site}");
                (site.kind, site.spawned_at.line())
            })
            .collect();
        found.sort_unstable_by_key(|&(_, line)| line);
        assert_eq!(found, expected, "{flavor}: each site once, nothing else");
    }
}

/// `#[ctx_tokio::test]` installs `inherit` by default in a build with the hooks: a
/// plain task reads the root future's values, and its own `set` stays in it (strict
/// mode has nothing to refuse: every task has a context of its own).
async fn plain_tasks_inherit_and_keep_their_sets() {
    REQUEST_ID.set(3);
    let seen = tokio::spawn(async { REQUEST_ID.get() }).await.unwrap();
    assert_eq!(seen, Some(3));
    tokio::spawn(async { LEFTOVER.set(1) }).await.unwrap();
    let after = tokio::spawn(async { LEFTOVER.get() }).await.unwrap();
    assert_eq!(after, None);
}

#[ctx_tokio::test]
async fn the_test_attribute_installs_inherit_current_thread() {
    plain_tasks_inherit_and_keep_their_sets().await;
}

#[ctx_tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_attribute_installs_inherit_multi_thread() {
    plain_tasks_inherit_and_keep_their_sets().await;
}

/// The builder with `isolate`: strict mode (on by default) reports the task that ends
/// with a value set, on both flavors.
#[test]
fn the_builder_with_isolate_reports_a_leaking_task_on_both_flavors() {
    for multi_thread in [true, false] {
        // tokio reports a task's end after its output can be joined: wait for it.
        let (sink, leaks) = std::sync::mpsc::channel::<Leak>();
        let sink = Mutex::new(sink);
        let hooks = TaskHooks::isolate().on_leak(move |leak| {
            let _ = sink.lock().unwrap().send(leak.clone());
        });
        let mut builder = if multi_thread {
            ctx_tokio::runtime::Builder::new_multi_thread()
        } else {
            ctx_tokio::runtime::Builder::new_current_thread()
        };
        let runtime = builder.task_hooks(Some(hooks)).build().unwrap();
        let (line, task) = Context::new()
            .run(|| runtime.block_on(async { (line!(), tokio::spawn(async { LEFTOVER.set(1) })) }));
        runtime.block_on(async { task.await.unwrap() });
        let leak = leaks
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the leak is reported");
        assert_eq!(leak.variables, ["leftover"], "multi_thread: {multi_thread}");
        assert_eq!(leak.spawned_at.line(), line);
        drop(runtime);
        assert!(leaks.try_recv().is_err(), "reported once");
    }
}
