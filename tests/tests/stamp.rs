//! `Stamp`: whether a context still holds exactly the values it held, holding none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ctx_tests::fresh;
use ctx_vars::{Context, ContextVar};

static A: ContextVar<u32> = ContextVar::new("a");
static LOCAL: ContextVar<u32> = ContextVar::new("local").inherit(false);

#[test]
fn a_stamp_matches_until_a_write() {
    fresh(|| {
        let empty = Context::current().stamp();
        assert!(empty.is_current());
        A.set(1);
        assert!(!empty.is_current());
        let one = Context::current().stamp();
        assert!(one.is_current());
        assert!(one.matches(&Context::current()));
        // Written in place: the context is nobody else's.
        A.set(2);
        assert!(!one.is_current());
        let two = Context::current().stamp();
        // Written while a copy shares it.
        let copy = Context::current();
        assert!(two.matches(&copy));
        LOCAL.set(3);
        assert!(!two.is_current());
        assert!(two.matches(&copy));
        let three = Context::current().stamp();
        A.sync_scope(4, || assert!(!three.is_current()));
        // Conservative: the same values, put back, no longer match.
        assert!(!three.is_current());
        assert_eq!(A.get(), Some(2));
    });
}

#[test]
fn a_stamp_does_not_match_another_context() {
    fresh(|| {
        A.set(1);
        let outer = Context::current().stamp();
        Context::new().with_value(&A, 1).run(|| {
            assert!(!outer.is_current());
        });
        Context::new().run(|| assert!(!outer.is_current()));
        assert!(outer.is_current());
        let empty = Context::new().stamp();
        assert!(empty.matches(&Context::new()));
        assert!(!empty.is_current());
    });
}

#[test]
fn a_stamp_keeps_no_value_alive() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    static FLAG: ContextVar<Flag> = ContextVar::new("flag");
    fresh(|| {
        let dropped = Arc::new(AtomicBool::new(false));
        let ctx = Context::new().with_value(&FLAG, Flag(Arc::clone(&dropped)));
        let stamp = ctx.stamp();
        assert!(stamp.matches(&ctx));
        drop(ctx);
        assert!(dropped.load(Ordering::SeqCst));
        // The stamp outlives its context and matches no new one.
        let again = Context::new().with_value(&A, 1);
        assert!(!stamp.matches(&again));
    });
}

#[test]
fn a_copy_without_local_values_has_a_stamp_of_its_own() {
    fresh(|| {
        A.set(1);
        LOCAL.set(2);
        let full = Context::current().stamp();
        let inherited = Context::inherited();
        assert!(!full.matches(&inherited));
        // Built once and shared by every spawn from this context: the same values.
        assert_eq!(inherited.stamp(), Context::inherited().stamp());
        assert!(full.is_current());
        // Without local values, a spawn's copy is the context itself.
        Context::new().with_value(&A, 1).run(|| {
            let own = Context::current().stamp();
            assert!(own.matches(&Context::inherited()));
        });
    });
}
