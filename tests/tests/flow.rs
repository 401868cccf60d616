//! Flow policy: which values travel into spawned work, and the builders for what does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use ctx_tests::{Tracked, block_on, fresh};
use ctx_vars::{Context, ContextVar, FutureExt, context_var};

#[context_var]
static REQUEST_ID: u64;

#[context_var(inherit = false)]
static TRANSACTION: u64;

static CONNECTION: ContextVar<String> = ContextVar::new("connection").inherit(false);

static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3).inherit(false);

#[test]
fn the_policy_is_declared_with_the_variable() {
    assert!(REQUEST_ID.inherits());
    assert!(!TRANSACTION.inherits());
    assert!(!CONNECTION.inherits());
    assert!(!RETRIES.inherits());
    assert!(format!("{TRANSACTION:?}").contains("inherit: false"));
}

#[test]
fn a_local_variable_reads_writes_and_resets_like_any_other() {
    fresh(|| {
        assert_eq!(RETRIES.get(), Some(3), "defaults work the same");
        let token = TRANSACTION.set(1);
        assert_eq!(TRANSACTION.get(), Some(1));
        assert_eq!(TRANSACTION.with(|v| v.copied()), Some(1));
        let inner = TRANSACTION.set(2);
        assert_eq!(inner.old_value(), Some(&1));
        TRANSACTION.reset(inner).unwrap();
        assert_eq!(TRANSACTION.get(), Some(1));
        TRANSACTION.reset(token).unwrap();
        assert_eq!(TRANSACTION.get(), None);
        assert!(Context::current().is_empty());
    });
}

#[test]
fn spawns_inherit_everything_but_local_variables() {
    fresh(|| {
        REQUEST_ID.set(7);
        TRANSACTION.set(1);
        CONNECTION.set("db-1".into());

        let spawned = Context::inherited();
        assert_eq!(spawned.get(&REQUEST_ID), Some(&7));
        assert!(!spawned.contains(&TRANSACTION));
        assert!(!spawned.contains(&CONNECTION));
        assert_eq!(spawned.len(), 1);

        // PEP 567's copy_context is a full copy.
        let copy = Context::current();
        assert_eq!(copy.get(&TRANSACTION), Some(&1));
        assert_eq!(copy.len(), 3);
        assert_eq!(ctx_vars::copy_context().len(), 3);
        assert_eq!(copy.clone().into_inherited().len(), 1);

        let thread = ctx_vars::thread::spawn(|| (REQUEST_ID.get(), TRANSACTION.get()));
        assert_eq!(thread.join().unwrap(), (Some(7), None));
        std::thread::scope(|s| {
            let scoped = ctx_vars::thread::spawn_scoped(s, || CONNECTION.get());
            assert_eq!(scoped.join().unwrap(), None);
        });

        // A future handed to an executor, against one the task awaits itself.
        let handed = async { (REQUEST_ID.get(), TRANSACTION.get()) }.in_inherited_context();
        let awaited = async { (REQUEST_ID.get(), TRANSACTION.get()) }.in_current_context();
        assert_eq!(block_on(handed), (Some(7), None));
        assert_eq!(block_on(awaited), (Some(7), Some(1)));
        assert_eq!(
            block_on(async { TRANSACTION.get() }),
            Some(1),
            "awaiting shares"
        );
    });
}

#[test]
fn iteration_and_length_cover_both_kinds() {
    fresh(|| {
        REQUEST_ID.set(7);
        TRANSACTION.set(1);
        let ctx = Context::current();
        let mut names: Vec<_> = ctx.iter().map(|(var, _)| var.name()).collect();
        names.sort_unstable();
        assert_eq!(names, ["REQUEST_ID", "TRANSACTION"]);
        assert_eq!(ctx.iter().len(), 2);
        let (_, tx) = ctx.iter().find(|(var, _)| var.is(&TRANSACTION)).unwrap();
        assert_eq!(tx.downcast_ref::<u64>(), Some(&1));
        assert!(format!("{ctx:?}").contains("TRANSACTION"));
    });
}

#[test]
fn sync_scope_of_a_local_variable_is_undone_with_every_write_inside() {
    fresh(|| {
        REQUEST_ID.set(7);
        TRANSACTION.set(1);
        TRANSACTION.sync_scope(2, || {
            assert_eq!(TRANSACTION.get(), Some(2));
            assert_eq!(Context::inherited().get(&TRANSACTION), None);
            // A write to the other map inside the scope is undone too.
            REQUEST_ID.set(8);
            TRANSACTION.set(3);
            REQUEST_ID.sync_scope(9, || {
                assert_eq!((REQUEST_ID.get(), TRANSACTION.get()), (Some(9), Some(3)));
                TRANSACTION.set(4);
            });
            assert_eq!((REQUEST_ID.get(), TRANSACTION.get()), (Some(8), Some(3)));
        });
        assert_eq!((REQUEST_ID.get(), TRANSACTION.get()), (Some(7), Some(1)));
        assert_eq!(Context::current().len(), 2);
    });
}

#[test]
fn without_leaves_out_one_variable_of_either_kind() {
    fresh(|| {
        let ctx = Context::new()
            .with_value(&REQUEST_ID, 7)
            .with_value(&TRANSACTION, 1)
            .with_value(&CONNECTION, "db-1".to_owned());
        let job = ctx.clone().without(&REQUEST_ID).without(&CONNECTION);
        assert_eq!(job.len(), 1);
        assert_eq!(job.get(&TRANSACTION), Some(&1));
        assert_eq!(ctx.len(), 3, "the original is a separate snapshot");
        // Leaving out a variable that was never set, even never written anywhere.
        static NEVER: ContextVar<u8> = ContextVar::new("never");
        assert_eq!(job.clone().without(&NEVER).len(), 1);
    });
}

#[test]
fn a_local_value_is_dropped_with_the_context_that_set_it_not_kept_by_spawns() {
    static HELD: ContextVar<Tracked> = ContextVar::new("held").inherit(false);
    fresh(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (go, wait) = mpsc::channel::<()>();
        let worker = Context::new().run(|| {
            HELD.set(Tracked::new(&drops));
            ctx_vars::thread::spawn(move || {
                wait.recv().unwrap();
                HELD.with(|held| held.is_some())
            })
        });
        // The context that set it is gone; the thread still runs.
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        go.send(()).unwrap();
        assert!(!worker.join().unwrap());
    });
}

/// The capture-at-dispatch pattern: a job carries the context of the request that
/// enqueued it, and long-lived workers run each job in it.
#[test]
fn job_queue_runs_each_job_in_the_context_it_was_enqueued_from() {
    type Job = (
        Context,
        Box<dyn FnOnce() -> (Option<u64>, Option<u64>) + Send>,
    );
    fresh(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (results, done) = mpsc::channel();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        // Workers started at boot, in no request's context.
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let queue = Arc::clone(&queue);
                let results = results.clone();
                std::thread::spawn(move || {
                    loop {
                        let next = queue.lock().unwrap().recv();
                        let Ok((context, job)) = next else { return };
                        results.send(context.wrap(job)()).unwrap();
                    }
                })
            })
            .collect();
        drop(results);
        for request in 0..100u64 {
            Context::new().run(|| {
                REQUEST_ID.set(request);
                TRANSACTION.set(request); // must not reach the job
                let job = || (REQUEST_ID.get(), TRANSACTION.get());
                jobs.send((Context::inherited(), Box::new(job))).unwrap();
            });
        }
        drop(jobs);
        let mut seen: Vec<_> = done.iter().collect();
        for worker in workers {
            worker.join().unwrap();
        }
        seen.sort_unstable();
        let expected: Vec<_> = (0..100).map(|request| (Some(request), None)).collect();
        assert_eq!(seen, expected);
    });
}

#[test]
fn a_variable_with_a_new_policy_is_a_new_variable() {
    fresh(|| {
        let inherited: ContextVar<u8> = ContextVar::new("v");
        inherited.set(1);
        let local = inherited.inherit(false);
        assert_eq!(local.get(), None, "values are not shared across policies");
        local.set(2);
        assert_eq!(local.get(), Some(2));
    });
}
