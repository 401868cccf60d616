//! `ContextVar`: get, defaults, set, tokens and reset (PEP 567 rules).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use ctx_tests::fresh;
use ctx_vars::{Context, ContextVar, ResetError};

static NAME: ContextVar<String> = ContextVar::new("name");
static LEVEL: ContextVar<u32> = ContextVar::with_default("level", || 3);
static OTHER: ContextVar<u32> = ContextVar::new("other");

#[test]
fn unset_variable_reads_none_and_set_value_reads_back() {
    fresh(|| {
        assert_eq!(NAME.name(), "name");
        assert_eq!(NAME.get(), None);
        NAME.set("ada".into());
        assert_eq!(NAME.get().as_deref(), Some("ada"));
        NAME.set("grace".into());
        assert_eq!(NAME.get().as_deref(), Some("grace"));
        assert_eq!(OTHER.get(), None, "variables are independent");
    });
}

#[test]
fn default_is_read_but_is_never_a_value_in_the_context() {
    fresh(|| {
        assert_eq!(LEVEL.get(), Some(3));
        assert!(!Context::current().contains(&LEVEL));
        assert_eq!(Context::current().get(&LEVEL), None);
        assert!(Context::current().is_empty());

        let token = LEVEL.set(5);
        assert_eq!(token.old_value(), None, "a default is not an old value");
        assert_eq!(LEVEL.get(), Some(5));
        assert_eq!(Context::current().get(&LEVEL), Some(&5));
        LEVEL.reset(token).unwrap();
        assert_eq!(LEVEL.get(), Some(3));
        assert!(!Context::current().contains(&LEVEL));
    });
}

#[test]
fn get_or_fallback_wins_over_the_default() {
    fresh(|| {
        assert_eq!(LEVEL.get_or(9), 9);
        assert_eq!(OTHER.get_or(9), 9);
        LEVEL.set(1);
        assert_eq!(LEVEL.get_or(9), 1);
    });
}

#[test]
fn with_borrows_the_same_lookup_as_get() {
    fresh(|| {
        assert_eq!(NAME.with(|v| v.cloned()), None);
        assert_eq!(LEVEL.with(|v| v.copied()), Some(3));
        NAME.set("ada".into());
        assert_eq!(NAME.with(|v| v.map(String::len)), Some(3));
    });
}

#[test]
fn with_callback_may_set_and_replace_the_value_it_borrows() {
    fresh(|| {
        NAME.set("ada".into());
        let seen = NAME.with(|v| {
            let token = NAME.set("grace".into());
            assert_eq!(NAME.get().as_deref(), Some("grace"));
            NAME.reset(token).unwrap();
            NAME.set("linus".into());
            v.cloned()
        });
        assert_eq!(
            seen.as_deref(),
            Some("ada"),
            "the borrowed value outlives its replacement"
        );
        assert_eq!(NAME.get().as_deref(), Some("linus"));
        Context::new().run(|| NAME.with(|_| Context::new().run(|| NAME.set("x".into()))));
    });
}

#[test]
fn token_reports_old_value_and_var_name() {
    fresh(|| {
        let t1 = OTHER.set(1);
        assert_eq!(t1.old_value(), None);
        assert_eq!(t1.var_name(), "other");
        let t2 = OTHER.set(2);
        assert_eq!(t2.old_value(), Some(&1));
        assert!(format!("{t2:?}").contains("other"));
    });
}

#[test]
fn reset_restores_previous_value_or_absence() {
    fresh(|| {
        let t1 = OTHER.set(1);
        let t2 = OTHER.set(2);
        OTHER.reset(t2).unwrap();
        assert_eq!(OTHER.get(), Some(1));
        OTHER.reset(t1).unwrap();
        assert_eq!(OTHER.get(), None);
        assert!(!Context::current().contains(&OTHER));
    });
}

#[test]
fn reset_out_of_order_restores_each_tokens_own_before() {
    fresh(|| {
        let t1 = OTHER.set(1);
        let t2 = OTHER.set(2);
        OTHER.reset(t1).unwrap();
        assert_eq!(OTHER.get(), None, "t1's before is absent");
        assert!(!Context::current().contains(&OTHER));
        OTHER.reset(t2).unwrap();
        assert_eq!(OTHER.get(), Some(1), "t2's before is 1");
    });
}

#[test]
fn reset_with_another_variables_token_is_wrong_var_and_changes_nothing() {
    fresh(|| {
        let token = LEVEL.set(7);
        OTHER.set(1);
        let before = Context::current();
        assert_eq!(OTHER.reset(token), Err(ResetError::WrongVar));
        assert_eq!(LEVEL.get(), Some(7));
        assert_eq!(OTHER.get(), Some(1));
        assert_eq!(Context::current().len(), before.len());
    });
}

#[test]
fn reset_in_another_context_is_wrong_context_and_changes_nothing() {
    fresh(|| {
        let token = OTHER.set(1);
        // A copy is a different context, even with the same values.
        let mut copy = Context::current();
        let error = copy.run(|| {
            OTHER.set(2);
            let error = OTHER.reset(token).unwrap_err();
            assert_eq!(OTHER.get(), Some(2));
            error
        });
        assert_eq!(error, ResetError::WrongContext);
        assert_eq!(OTHER.get(), Some(1));

        // A token from a context that never set anything.
        let foreign = Context::new().run(|| OTHER.set(5));
        assert_eq!(
            Context::new().run(|| OTHER.reset(foreign)),
            Err(ResetError::WrongContext)
        );
        assert_eq!(OTHER.get(), Some(1));
    });
}

#[test]
fn tokens_created_in_a_context_reset_when_it_is_entered_again() {
    fresh(|| {
        let mut ctx = Context::new();
        let token = ctx.run(|| OTHER.set(1));
        assert_eq!(OTHER.get(), None);
        ctx.run(|| {
            assert_eq!(OTHER.get(), Some(1));
            OTHER.reset(token).unwrap();
        });
        assert!(ctx.is_empty());
    });
}

#[test]
fn reset_errors_say_what_to_do() {
    fresh(|| {
        let wrong_var = ResetError::WrongVar.to_string();
        let wrong_ctx = ResetError::WrongContext.to_string();
        assert!(wrong_var.contains("different ContextVar"), "{wrong_var}");
        assert!(wrong_ctx.contains("different Context"), "{wrong_ctx}");
        let _: &dyn std::error::Error = &ResetError::WrongVar;
    });
}

#[test]
fn set_scoped_resets_on_drop_and_can_be_disarmed() {
    fresh(|| {
        OTHER.set(1);
        {
            let guard = OTHER.set_scoped(2);
            assert_eq!(guard.token().old_value(), Some(&1));
            assert_eq!(OTHER.get(), Some(2));
        }
        assert_eq!(OTHER.get(), Some(1));
        OTHER.set_scoped(3).reset().unwrap();
        assert_eq!(OTHER.get(), Some(1));
        let token = OTHER.set_scoped(4).into_token();
        assert_eq!(OTHER.get(), Some(4));
        OTHER.reset(token).unwrap();
        assert_eq!(OTHER.get(), Some(1));
    });
}

#[test]
fn set_scoped_resets_on_panic() {
    fresh(|| {
        let caught = std::panic::catch_unwind(|| {
            let _guard = OTHER.set_scoped(9);
            panic!("boom");
        });
        assert!(caught.is_err());
        assert_eq!(OTHER.get(), None);
    });
}

#[test]
fn reset_guard_dropped_in_another_context_panics_with_advice() {
    fresh(|| {
        let guard = OTHER.set_scoped(1);
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Context::new().run(move || drop(guard));
        }))
        .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("different Context"), "{message}");
        assert_eq!(OTHER.get(), Some(1), "nothing changed");
    });
}

#[test]
fn default_is_built_at_most_once_under_concurrent_first_access() {
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    static SLOW: ContextVar<Vec<u8>> = ContextVar::with_default("slow", || {
        BUILDS.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(20));
        vec![1, 2, 3]
    });
    fresh(|| {
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    SLOW.get()
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), Some(vec![1, 2, 3]));
        }
        assert_eq!(SLOW.get(), Some(vec![1, 2, 3]));
        assert_eq!(BUILDS.load(Ordering::SeqCst), 1);
    });
}

/// Two defaults that read each other, first read on two threads at once: each builder
/// waits until the other has started, so both builds are in progress when each reads
/// the other's variable. Before, both waited on each other forever.
#[test]
fn default_builders_that_read_each_other_across_threads_do_not_deadlock() {
    static BOTH_BUILDING: Barrier = Barrier::new(2);
    static PING: ContextVar<u32> = ContextVar::with_default("ping", || {
        BOTH_BUILDING.wait();
        PONG.get().map_or(1, |pong| pong + 10)
    });
    static PONG: ContextVar<u32> = ContextVar::with_default("pong", || {
        BOTH_BUILDING.wait();
        PING.get().map_or(2, |ping| ping + 10)
    });
    fresh(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        for var in [&PING, &PONG] {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(var.get()).unwrap());
        }
        let timeout = std::time::Duration::from_secs(60);
        let first = rx.recv_timeout(timeout).expect("no deadlock");
        let second = rx.recv_timeout(timeout).expect("no deadlock");
        // One builder saw no default for the other (the cycle's closing read), and the
        // other built on its result, exactly as when one thread builds both.
        let (ping, pong) = (PING.get().unwrap(), PONG.get().unwrap());
        assert!(
            (ping, pong) == (1, 11) || (ping, pong) == (12, 2),
            "{ping} {pong}"
        );
        let mut seen = [first.unwrap(), second.unwrap()];
        seen.sort_unstable();
        let mut expected = [ping, pong];
        expected.sort_unstable();
        assert_eq!(seen, expected, "every reader got the one built value");
    });
}

/// Three builders in a ring across three threads: the thread that closes the cycle
/// sees no default for the variable it waits on, the others finish on its result.
#[test]
fn a_ring_of_default_builders_across_three_threads_completes() {
    static ALL_BUILDING: Barrier = Barrier::new(3);
    static A: ContextVar<u32> = ContextVar::with_default("a", || {
        ALL_BUILDING.wait();
        B.get().map_or(1, |b| b + 1)
    });
    static B: ContextVar<u32> = ContextVar::with_default("b", || {
        ALL_BUILDING.wait();
        C.get().map_or(1, |c| c + 1)
    });
    static C: ContextVar<u32> = ContextVar::with_default("c", || {
        ALL_BUILDING.wait();
        A.get().map_or(1, |a| a + 1)
    });
    fresh(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        for var in [&A, &B, &C] {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(var.get()).unwrap());
        }
        for _ in 0..3 {
            let got = rx.recv_timeout(std::time::Duration::from_secs(60));
            assert!(got.expect("no deadlock").is_some());
        }
        let mut values = [A.get().unwrap(), B.get().unwrap(), C.get().unwrap()];
        values.sort_unstable();
        assert_eq!(values, [1, 2, 3]);
    });
}

#[test]
fn default_builder_may_read_and_set_variables() {
    static INNER: ContextVar<u32> = ContextVar::new("inner");
    static SELF_READING: ContextVar<u32> =
        ContextVar::with_default("self_reading", || SELF_READING.get().unwrap_or(10) + 1);
    static OTHER_READING: ContextVar<u32> = ContextVar::with_default("other_reading", || {
        let token = INNER.set(1);
        let seen = INNER.get().unwrap() + LEVEL.get().unwrap();
        INNER.reset(token).unwrap();
        seen
    });
    fresh(|| {
        // Its own default is not available while it is being built: no deadlock.
        assert_eq!(SELF_READING.get(), Some(11));
        assert_eq!(OTHER_READING.get(), Some(4));
        assert_eq!(INNER.get(), None);
    });
}

#[test]
fn a_panicking_default_builder_is_retried() {
    static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
    static FLAKY: ContextVar<usize> = ContextVar::with_default("flaky", || {
        if ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("first build fails");
        }
        7
    });
    fresh(|| {
        assert!(std::panic::catch_unwind(|| FLAKY.get()).is_err());
        assert_eq!(FLAKY.get(), Some(7));
    });
}

#[test]
fn variables_need_not_be_statics() {
    fresh(|| {
        let a: ContextVar<u8> = ContextVar::new("local");
        let b: ContextVar<u8> = ContextVar::new("local");
        a.set(1);
        assert_eq!(a.get(), Some(1));
        assert_eq!(b.get(), None, "same name, different variable");
        assert!(format!("{a:?}").contains("local"));
    });
}

#[test]
fn token_and_context_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ctx_vars::Token<String>>();
    assert_send_sync::<Context>();
    assert_send_sync::<ContextVar<String>>();
    assert_send_sync::<ResetError>();
}

#[test]
fn values_of_every_shape_read_back_through_their_own_variable() {
    #[derive(Debug, Clone, PartialEq)]
    #[repr(align(64))]
    struct Aligned([u8; 3]);
    #[derive(Debug, Clone, PartialEq)]
    struct Unit;

    static ZST: ContextVar<Unit> = ContextVar::new("zst");
    static BYTE: ContextVar<u8> = ContextVar::new("byte");
    static WIDE: ContextVar<u128> = ContextVar::new("wide");
    static ALIGNED: ContextVar<Aligned> = ContextVar::new("aligned");
    static TEXT: ContextVar<String> = ContextVar::new("text");
    static LIST: ContextVar<Vec<u64>> = ContextVar::new("list");
    static CALLBACK: ContextVar<Arc<dyn Fn(u32) -> u32 + Send + Sync>> =
        ContextVar::new("callback");
    static BIG: ContextVar<[u64; 64]> = ContextVar::new("big");
    fresh(|| {
        ZST.set(Unit);
        BYTE.set(7);
        WIDE.set(u128::MAX - 1);
        ALIGNED.set(Aligned([1, 2, 3]));
        TEXT.set("text".into());
        LIST.set(vec![1, 2, 3]);
        CALLBACK.set(Arc::new(|x| x * 2));
        BIG.set([9; 64]);
        let snapshot = Context::current();
        assert_eq!(ZST.get(), Some(Unit));
        assert_eq!(BYTE.get(), Some(7));
        assert_eq!(WIDE.get(), Some(u128::MAX - 1));
        assert_eq!(ALIGNED.get(), Some(Aligned([1, 2, 3])));
        assert!(ALIGNED.with(|a| std::ptr::from_ref(a.unwrap()).is_aligned()));
        assert_eq!(TEXT.get().as_deref(), Some("text"));
        assert_eq!(LIST.with(|l| l.map(|l| l.iter().sum::<u64>())), Some(6));
        assert_eq!(CALLBACK.get().map(|f| f(21)), Some(42));
        assert_eq!(BIG.get().map(|b| b.iter().sum::<u64>()), Some(9 * 64));
        assert_eq!(snapshot.get(&WIDE), Some(&(u128::MAX - 1)));
        let token = TEXT.set("more".into());
        assert_eq!(token.old_value().map(String::as_str), Some("text"));
    });
}

/// Values of small plain types (integers, `&'static str`, `Duration`, `Instant`, …) are
/// stored inline, without an allocation; each reads back through every way in, and a
/// copy of the context keeps them as they were.
#[test]
fn small_plain_values_read_back_every_way() {
    use std::time::{Duration, Instant, SystemTime};

    static ID: ContextVar<u64> = ContextVar::new("id");
    static NAME: ContextVar<&'static str> = ContextVar::new("name");
    static DEADLINE: ContextVar<Instant> = ContextVar::new("deadline");
    static TIMEOUT: ContextVar<Duration> = ContextVar::new("timeout");
    static AT: ContextVar<SystemTime> = ContextVar::new("at");
    static FLAG: ContextVar<bool> = ContextVar::new("flag");
    static RATIO: ContextVar<f64> = ContextVar::new("ratio");
    static PARENT: ContextVar<Option<u64>> = ContextVar::new("parent");
    static SIGN: ContextVar<char> = ContextVar::new("sign");
    static UNIT: ContextVar<()> = ContextVar::new("unit");
    fresh(|| {
        let deadline = Instant::now() + Duration::from_secs(3);
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_234_567_891);
        ID.set(u64::MAX);
        NAME.set("ada");
        DEADLINE.set(deadline);
        TIMEOUT.set(Duration::new(5, 999_999_999));
        AT.set(at);
        FLAG.set(true);
        RATIO.set(-0.5);
        PARENT.set(Some(3));
        SIGN.set('λ');
        UNIT.set(());
        let snapshot = Context::current();
        assert_eq!(ID.get(), Some(u64::MAX));
        assert_eq!(NAME.with(|name| name.copied()), Some("ada"));
        assert_eq!(DEADLINE.get(), Some(deadline));
        assert_eq!(
            TIMEOUT.get_or(Duration::ZERO),
            Duration::new(5, 999_999_999)
        );
        assert_eq!(AT.try_get(), Ok(Some(at)));
        assert_eq!(FLAG.get(), Some(true));
        assert_eq!(RATIO.get(), Some(-0.5));
        assert_eq!(PARENT.get(), Some(Some(3)));
        assert_eq!(SIGN.get(), Some('λ'));
        assert_eq!(UNIT.get(), Some(()));
        assert_eq!(snapshot.get(&NAME), Some(&"ada"));
        let (_, id) = snapshot.iter().find(|(var, _)| var.is(&ID)).unwrap();
        assert_eq!(id.downcast_ref::<u64>(), Some(&u64::MAX));
        let token = ID.set(1);
        assert_eq!(token.old_value(), Some(&u64::MAX));
        assert_eq!(ID.sync_scope(2, || ID.get()), Some(2));
        assert_eq!(
            snapshot.get(&ID),
            Some(&u64::MAX),
            "the copy kept its value"
        );
        ID.reset(token).unwrap();
        assert_eq!(ID.get(), Some(u64::MAX));
        let seen = snapshot.clone().run(|| {
            ID.set(5);
            ID.get()
        });
        assert_eq!(seen, Some(5));
        assert_eq!(ID.get(), Some(u64::MAX), "a copy's set stays in the copy");
    });
}

/// A small value that changes behind `&` (an atomic) is shared, never copied: every
/// copy of the context sees the change.
#[test]
fn a_value_that_changes_behind_a_reference_is_shared_by_copies() {
    use std::sync::atomic::AtomicU64;

    static PROGRESS: ContextVar<AtomicU64> = ContextVar::new("progress");
    fresh(|| {
        PROGRESS.set(AtomicU64::new(10));
        let snapshot = Context::current();
        PROGRESS.with(|p| p.unwrap().store(90, Ordering::Relaxed));
        let in_copy = snapshot
            .clone()
            .run(|| PROGRESS.with(|p| p.unwrap().load(Ordering::Relaxed)));
        assert_eq!(in_copy, 90);
        let spawned = ctx_vars::thread::spawn(|| {
            PROGRESS.with(|p| p.unwrap().fetch_add(1, Ordering::Relaxed))
        });
        assert_eq!(spawned.join().unwrap(), 90);
        assert_eq!(snapshot.get(&PROGRESS).unwrap().load(Ordering::Relaxed), 91);
    });
}
