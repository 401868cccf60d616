//! `ContextSpawn`: `futures`' own executors (`ThreadPool`, `LocalPool`) spawning in the
//! caller's context, as ctx's runtime adapters do.

use std::sync::mpsc;

use ctx_tests::fresh;
use ctx_vars::{Context, ContextSpawn, ContextVar};
use futures_executor::{LocalPool, ThreadPool};
use futures_task::{LocalSpawn, Spawn, SpawnError};

static USER: ContextVar<&str> = ContextVar::new("user");
static TRANSACTION: ContextVar<u32> = ContextVar::new("transaction").inherit(false);

/// What a task sees, and what it sets, which must stay in the task.
async fn task(seen: mpsc::Sender<(Option<&'static str>, Option<u32>)>) {
    seen.send((USER.get(), TRANSACTION.get())).unwrap();
    USER.set("mallory");
}

#[test]
fn a_thread_pool_runs_each_task_in_a_copy_of_its_spawners_context() {
    fresh(|| {
        let pool = ContextSpawn::new(ThreadPool::builder().pool_size(2).create().unwrap());
        let (tx, rx) = mpsc::channel();
        for user in ["ada", "grace", "edsger"] {
            Context::new()
                .with_value(&USER, user)
                .with_value(&TRANSACTION, 1)
                .run(|| {
                    pool.spawn_obj(Box::new(task(tx.clone())).into()).unwrap();
                    assert_eq!(USER.get(), Some(user), "the task's set stays in the task");
                });
        }
        drop(tx);
        let mut seen: Vec<_> = rx.iter().collect();
        seen.sort();
        // Each its spawner's user; the non-inheritable transaction stays behind.
        assert_eq!(
            seen,
            [
                (Some("ada"), None),
                (Some("edsger"), None),
                (Some("grace"), None)
            ]
        );
        assert!(pool.status().is_ok());
    });
}

#[test]
fn a_local_pool_too() {
    fresh(|| {
        let mut pool = LocalPool::new();
        let spawner = ContextSpawn::new(pool.spawner());
        let (tx, rx) = mpsc::channel();
        Context::new().with_value(&USER, "ada").run(|| {
            spawner
                .spawn_local_obj(Box::pin(task(tx.clone())).into())
                .unwrap();
        });
        // Run from a context of its own: the task still sees its spawner's.
        Context::new()
            .with_value(&USER, "runner")
            .run(|| pool.run());
        assert_eq!(rx.try_recv(), Ok((Some("ada"), None)));
        assert!(spawner.status_local().is_ok());
        drop(pool);
        // A spawner whose pool is gone says so, as the one it wraps does.
        let refused: Result<(), SpawnError> = spawner.spawn_local_obj(Box::pin(async {}).into());
        assert!(refused.is_err_and(|e| e.is_shutdown()));
    });
}
