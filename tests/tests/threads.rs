//! Threads: a plain thread starts empty; `ctx_vars::thread` inherits a copy.

use ctx_tests::fresh;
use ctx_vars::{Context, ContextVar};

static USER: ContextVar<String> = ContextVar::new("user");

#[test]
fn a_plain_thread_starts_with_an_empty_context() {
    fresh(|| {
        USER.set("ada".into());
        let (seen, len) = std::thread::spawn(|| (USER.get(), Context::current().len()))
            .join()
            .unwrap();
        assert_eq!(seen, None);
        assert_eq!(len, 0);
    });
}

#[test]
fn ctx_thread_spawn_inherits_a_copy_taken_at_the_call() {
    fresh(|| {
        USER.set("ada".into());
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let child = ctx_vars::thread::spawn(move || {
            wait.recv().unwrap();
            let seen = USER.get();
            USER.set("child".into());
            seen
        });
        USER.set("changed after spawn".into());
        go.send(()).unwrap();
        assert_eq!(child.join().unwrap().as_deref(), Some("ada"));
        assert_eq!(USER.get().as_deref(), Some("changed after spawn"));
    });
}

#[test]
fn builder_and_scoped_threads_inherit_too() {
    fresh(|| {
        USER.set("ada".into());
        let builder = std::thread::Builder::new().name("ctx-worker".into());
        let child = ctx_vars::thread::spawn_with(builder, || {
            (std::thread::current().name().map(str::to_owned), USER.get())
        })
        .unwrap();
        let (name, seen) = child.join().unwrap();
        assert_eq!(name.as_deref(), Some("ctx-worker"));
        assert_eq!(seen.as_deref(), Some("ada"));

        let local = String::from("borrowed");
        std::thread::scope(|s| {
            let child = ctx_vars::thread::spawn_scoped(s, || {
                USER.set(local.clone());
                USER.get()
            });
            assert_eq!(child.join().unwrap().as_deref(), Some("borrowed"));
        });
        assert_eq!(USER.get().as_deref(), Some("ada"));
    });
}

#[test]
fn many_threads_read_one_inherited_value() {
    fresh(|| {
        USER.set("shared".into());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                ctx_vars::thread::spawn(|| {
                    (0..10_000).all(|_| USER.with(|u| u.map(String::as_str) == Some("shared")))
                })
            })
            .collect();
        for thread in threads {
            assert!(thread.join().unwrap());
        }
    });
}
