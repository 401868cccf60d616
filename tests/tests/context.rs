//! `Context`: snapshots, `run`, the builder and introspection.

use std::any::Any;

use ctx_tests::fresh;
use ctx_vars::{Context, ContextVar, copy_context};

static A: ContextVar<u32> = ContextVar::new("a");
static B: ContextVar<String> = ContextVar::new("b");
static D: ContextVar<u32> = ContextVar::with_default("d", || 40);

#[test]
fn a_copy_is_a_snapshot_in_both_directions() {
    fresh(|| {
        A.set(1);
        let mut copy = copy_context();
        A.set(2);
        assert_eq!(
            copy.get(&A),
            Some(&1),
            "later sets in the source do not show in the copy"
        );
        copy.run(|| {
            assert_eq!(A.get(), Some(1));
            A.set(3);
            B.set("only in the copy".into());
        });
        assert_eq!(
            A.get(),
            Some(2),
            "sets in the copy do not show in the source"
        );
        assert_eq!(B.get(), None);
        assert_eq!(copy.get(&A), Some(&3));
        let clone = copy.clone();
        assert_eq!(clone.get(&B).map(String::as_str), Some("only in the copy"));
    });
}

#[test]
fn run_keeps_sets_inside_the_context_value() {
    fresh(|| {
        let mut ctx = Context::new();
        ctx.run(|| A.set(1));
        assert_eq!(A.get(), None, "the caller's context is untouched");
        assert_eq!(ctx.get(&A), Some(&1));
        ctx.run(|| {
            assert_eq!(A.get(), Some(1), "entering again sees earlier sets");
            A.set(2);
        });
        assert_eq!(ctx.get(&A), Some(&2));
    });
}

#[test]
fn nested_runs_restore_each_level() {
    fresh(|| {
        A.set(0);
        let mut one = Context::new().with_value(&A, 1);
        let mut two = Context::new().with_value(&A, 2);
        one.run(|| {
            assert_eq!(A.get(), Some(1));
            two.run(|| {
                assert_eq!(A.get(), Some(2));
                A.set(22);
            });
            assert_eq!(A.get(), Some(1));
            A.set(11);
        });
        assert_eq!(A.get(), Some(0));
        assert_eq!(one.get(&A), Some(&11));
        assert_eq!(two.get(&A), Some(&22));
    });
}

#[test]
fn run_restores_the_previous_context_on_panic() {
    fresh(|| {
        A.set(1);
        let mut ctx = Context::new();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ctx.run(|| {
                A.set(2);
                panic!("boom");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(A.get(), Some(1));
        assert_eq!(
            ctx.get(&A),
            Some(&2),
            "sets made before the panic stay in the context"
        );
    });
}

#[test]
fn run_returns_the_closures_value() {
    fresh(|| {
        assert_eq!(
            Context::new()
                .with_value(&A, 5)
                .run(|| A.get().unwrap() * 2),
            10
        );
    });
}

#[test]
fn contains_len_is_empty_and_get_see_set_values_only() {
    fresh(|| {
        let empty = Context::new();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert!(!empty.contains(&A));
        assert!(!empty.contains(&D), "a default is not contained");
        assert_eq!(empty.get(&D), None);

        let ctx = Context::default()
            .with_value(&A, 1)
            .with_value(&B, "x".into());
        assert_eq!(ctx.len(), 2);
        assert!(!ctx.is_empty());
        assert!(ctx.contains(&A) && ctx.contains(&B));
        assert_eq!(ctx.get(&B).map(String::as_str), Some("x"));

        let ctx = ctx.with_value(&A, 2);
        assert_eq!(ctx.len(), 2, "replacing a value does not add an entry");
        assert_eq!(ctx.get(&A), Some(&2));
    });
}

#[test]
fn iter_yields_every_entry_with_its_name() {
    fresh(|| {
        let ctx = Context::new().with_value(&A, 7).with_value(&B, "x".into());
        let iter = ctx.iter();
        assert_eq!(iter.len(), 2);
        let mut entries: Vec<(&str, String)> = iter
            .map(|(var, value): (_, &(dyn Any + Send + Sync))| {
                let shown = if var.is(&A) {
                    value.downcast_ref::<u32>().unwrap().to_string()
                } else {
                    assert!(var.is(&B));
                    value.downcast_ref::<String>().unwrap().clone()
                };
                (var.name(), shown)
            })
            .collect();
        entries.sort();
        assert_eq!(entries, [("a", "7".to_string()), ("b", "x".to_string())]);
        assert_eq!(format!("{ctx:?}").len(), r#"{"a", "b"}"#.len());
        assert_eq!(Context::new().iter().count(), 0);
    });
}

#[test]
fn current_and_copy_context_are_copies_of_the_current_context() {
    fresh(|| {
        A.set(3);
        let current = Context::current();
        let copied = copy_context();
        assert_eq!(current.get(&A), Some(&3));
        assert_eq!(copied.get(&A), Some(&3));
        A.set(4);
        assert_eq!(current.get(&A), Some(&3));
    });
}

#[test]
fn wrap_runs_the_closure_in_the_context() {
    fresh(|| {
        A.set(1);
        let wrapped = Context::current().wrap(|| {
            A.set(2);
            A.get()
        });
        A.set(5);
        assert_eq!(wrapped(), Some(2));
        assert_eq!(A.get(), Some(5));
        // Callbacks on another thread run in the captured context.
        let callback = Context::current().wrap(|| A.get());
        assert_eq!(std::thread::spawn(callback).join().unwrap(), Some(5));
    });
}

#[test]
fn many_variables_in_one_context() {
    fresh(|| {
        let vars: Vec<&'static ContextVar<usize>> = (0..2000)
            .map(|_| &*Box::leak(Box::new(ContextVar::new("many"))))
            .collect();
        for (i, var) in vars.iter().enumerate() {
            var.set(i);
        }
        let snapshot = Context::current();
        assert_eq!(snapshot.len(), 2000);
        for (i, var) in vars.iter().enumerate().step_by(2) {
            var.set(i * 10);
        }
        for (i, var) in vars.iter().enumerate() {
            let expected = if i % 2 == 0 { i * 10 } else { i };
            assert_eq!(var.get(), Some(expected));
            assert_eq!(snapshot.get(var), Some(&i));
        }
    });
}
