//! The spawn paths particular to one runtime: local tasks, join sets, handles,
//! builders, executors.

use ctx_tests::fresh;
use ctx_tests::runtime::Tokio;
use ctx_vars::{Context, context_var};

#[context_var]
static VAR: &'static str;

/// Spawns with `spawn` while `VAR` is "parent", changes it to "later", and checks that
/// each task saw "parent" and that its set ("child") stayed its own.
macro_rules! assert_inherits {
    ($spawn:expr, $join:expr) => {{
        VAR.set("parent");
        let handle = $spawn(async {
            let seen = VAR.get();
            VAR.set("child");
            seen
        });
        VAR.set("later");
        assert_eq!($join(handle).await, Some("parent"));
        assert_eq!(VAR.get(), Some("later"));
    }};
}

#[test]
fn tokio_spawn_local_and_local_set() {
    use ctx_tokio::LocalSetExt;
    fresh(|| {
        let rt = Tokio::current_thread();
        let local = tokio::task::LocalSet::new();
        local.ctx_block_on(rt.runtime(), async {
            assert_inherits!(
                ctx_tokio::spawn_local,
                |h: tokio::task::JoinHandle<_>| async { h.await.unwrap() }
            );
            let local = tokio::task::LocalSet::new();
            VAR.set("parent");
            let handle = local.ctx_spawn_local(async { VAR.get() });
            VAR.set("later");
            local.await;
            assert_eq!(handle.await.unwrap(), Some("parent"));
            VAR.set("for run_until");
            let nested = tokio::task::LocalSet::new();
            let run = nested.ctx_run_until(async {
                let seen = VAR.get();
                VAR.set("inside");
                seen
            });
            assert_eq!(run.await, Some("for run_until"));
            assert_eq!(VAR.get(), Some("for run_until"));
        });
    });
}

#[test]
fn tokio_join_set() {
    use ctx_tokio::JoinSetExt;
    fresh(|| {
        let rt = Tokio::multi_thread();
        let local = tokio::task::LocalSet::new();
        ctx_tokio::block_on(
            rt.runtime(),
            local.run_until(async {
                let mut set = tokio::task::JoinSet::new();
                VAR.set("parent");
                set.ctx_spawn(async {
                    let seen = VAR.get();
                    VAR.set("child");
                    seen
                });
                set.ctx_spawn_blocking(|| VAR.get());
                set.ctx_spawn_local(async { VAR.get() });
                VAR.set("later");
                let mut seen = Vec::new();
                while let Some(out) = set.join_next().await {
                    seen.push(out.unwrap());
                }
                assert_eq!(seen, [Some("parent"); 3]);
                assert_eq!(VAR.get(), Some("later"));
            }),
        );
    });
}

#[test]
fn tokio_handle_and_executor() {
    use ctx_tokio::HandleExt;
    fresh(|| {
        let rt = Tokio::multi_thread();
        let handle = rt.runtime().handle().clone();
        VAR.set("outside");
        let inside = handle.ctx_block_on(async {
            assert_inherits!(|fut| handle.ctx_spawn(fut), |h: tokio::task::JoinHandle<
                _,
            >| async {
                h.await.unwrap()
            });
            VAR.set("parent");
            let blocking = handle.ctx_spawn_blocking(|| VAR.get());
            let blocking_fn = ctx_tokio::task::spawn_blocking(|| VAR.get());
            VAR.set("later");
            assert_eq!(blocking.await.unwrap(), Some("parent"));
            assert_eq!(blocking_fn.await.unwrap(), Some("parent"));

            // An executor handed to a library: what it spawns inherits from whoever
            // calls `execute`.
            let executor = ctx_tokio::ContextExecutor::new();
            let (tx, rx) = tokio::sync::oneshot::channel();
            VAR.set("at execute");
            executor
                .clone()
                .execute(async move { tx.send(VAR.get()).unwrap() });
            assert_eq!(rx.await.unwrap(), Some("at execute"));
            VAR.get()
        });
        assert_eq!(inside, Some("at execute"));
        assert_eq!(VAR.get(), Some("outside"), "block_on ran in a copy");
    });
}

#[test]
fn async_std_local_blocking_and_builder() {
    fresh(|| {
        ctx_async_std::block_on(async {
            assert_inherits!(ctx_async_std::task::spawn_local, |h| h);
            assert_inherits!(ctx_async_std::task::spawn, |h| h);
            VAR.set("parent");
            let blocking = ctx_async_std::task::spawn_blocking(|| VAR.get());
            let named = ctx_async_std::task::Builder::new()
                .name("named".into())
                .spawn(async {
                    (
                        async_std::task::current().name().map(str::to_owned),
                        VAR.get(),
                    )
                })
                .unwrap();
            let local = ctx_async_std::task::Builder::new()
                .local(async { VAR.get() })
                .unwrap();
            VAR.set("later");
            assert_eq!(blocking.await, Some("parent"));
            assert_eq!(named.await, (Some("named".into()), Some("parent")));
            assert_eq!(local.await, Some("parent"));
        });
        VAR.set("outside");
        let seen = ctx_async_std::task::Builder::new().blocking(async {
            let seen = VAR.get();
            VAR.set("inside");
            seen
        });
        assert_eq!(seen, Some("outside"));
        assert_eq!(VAR.get(), Some("outside"));
    });
}

#[test]
fn smol_executors() {
    use ctx_smol::{ExecutorExt, LocalExecutorExt};
    fresh(|| {
        let executor = smol::Executor::new();
        let local = smol::LocalExecutor::new();
        VAR.set("parent");
        let task = executor.ctx_spawn(async { VAR.get() });
        let local_task = local.ctx_spawn(async { VAR.get() });
        let mut many = Vec::new();
        executor.ctx_spawn_many(
            (0..3).map(|i| async move {
                let seen = VAR.get();
                VAR.set(["a", "b", "c"][i]); // each task's own
                seen
            }),
            &mut many,
        );
        let mut local_many = Vec::new();
        local.ctx_spawn_many((0..2).map(|_| async { VAR.get() }), &mut local_many);
        VAR.set("later");
        smol::block_on(executor.run(local.run(async {
            assert_eq!(task.await, Some("parent"));
            assert_eq!(local_task.await, Some("parent"));
            for task in many {
                assert_eq!(task.await, Some("parent"));
            }
            for task in local_many {
                assert_eq!(task.await, Some("parent"));
            }
        })));
        assert_eq!(VAR.get(), Some("later"));
        assert!(Context::current().contains(&VAR));
    });
}
