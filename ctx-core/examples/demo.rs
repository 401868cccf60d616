//! A tour of ctx-vars: set/get, tokens, copies, `run`, and tasks that each keep their
//! own values. Runs on std alone (a ten-line round-robin executor stands in for a
//! runtime; the adapter crates do this for tokio, async-std and smol).
//!
//! `cargo run -p ctx-vars --example demo`

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};

use ctx_vars::{Context, FutureExt, context_var, copy_context, with_context};

#[context_var]
static USER: String;

#[context_var(name = "request.id")]
static REQUEST_ID: u64;

#[context_var]
static LEVEL: u32 = 3;

fn main() {
    println!("== set, get, defaults, tokens");
    println!("USER before any set: {:?}", USER.get());
    println!("LEVEL (default): {:?}", LEVEL.get());
    let token = USER.set("ada".into());
    println!("USER after set: {:?}", USER.get());
    USER.reset(token).expect("same variable, same context");
    println!("USER after reset: {:?}", USER.get());

    println!("\n== a copy is a snapshot; run() enters a context");
    USER.set("ada".into());
    let mut snapshot = copy_context();
    USER.set("grace".into());
    snapshot.run(|| {
        println!("inside the snapshot: USER = {:?}", USER.get());
        REQUEST_ID.set(7); // stays in `snapshot`
    });
    println!(
        "outside: USER = {:?}, REQUEST_ID = {:?}; the snapshot kept REQUEST_ID = {:?}",
        USER.get(),
        REQUEST_ID.get(),
        snapshot.get(&REQUEST_ID)
    );

    println!("\n== awaiting shares the caller's context (the first seed example)");
    run_tasks(vec![Box::pin(
        async {
            USER.set("main".into());
            sub().await;
            assert_eq!(USER.get().as_deref(), Some("sub"));
            println!("main sees {:?} after awaiting sub", USER.get());
        }
        .in_current_context(),
    )]);

    println!("\n== eight interleaved tasks keep their own values (the second seed example)");
    let tasks: Vec<Task> = (0..8u64)
        .map(|count| {
            // Each task starts in a copy of this context, taken here, at its creation.
            let task = async move {
                REQUEST_ID.set(count);
                Yield(2).await; // let every task set its value before any checks
                check(count).await;
                assert_eq!(REQUEST_ID.get(), Some(count + 1));
            };
            Box::pin(task.in_current_context()) as Task
        })
        .collect();
    run_tasks(tasks);
    println!("creator still sees REQUEST_ID = {:?}", REQUEST_ID.get());

    println!("\n== a thread inherits a copy; a plain std thread starts empty");
    let inherited = ctx_vars::thread::spawn(|| USER.get()).join().unwrap();
    let plain = std::thread::spawn(|| USER.get()).join().unwrap();
    println!("ctx_vars::thread::spawn sees {inherited:?}; std::thread::spawn sees {plain:?}");

    println!("\n== a scope for one call");
    let inner = LEVEL.sync_scope(0, || LEVEL.get());
    println!(
        "LEVEL inside sync_scope: {inner:?}, after: {:?}",
        LEVEL.get()
    );

    println!("\n== #[with_context]: every call runs in its own copy, captured at the call");
    let call = handle("grace", 42); // captured here, with the presets
    USER.set("changed after the call".into());
    run_tasks(vec![Box::pin(call)]);
    println!(
        "back in main: USER = {:?}, LEVEL = {:?}",
        USER.get(),
        LEVEL.get()
    );

    println!("\nthe current context holds: {:?}", Context::current());
}

#[with_context(USER = user.to_owned(), REQUEST_ID = id)]
async fn handle(user: &str, id: u64) {
    LEVEL.set(0); // stays in this call
    Yield(1).await;
    println!(
        "handle sees USER = {:?}, REQUEST_ID = {:?}, LEVEL = {:?}",
        USER.get(),
        REQUEST_ID.get(),
        LEVEL.get()
    );
}

async fn sub() {
    println!("sub sees {:?}", USER.get());
    USER.set("sub".into());
}

async fn check(count: u64) {
    let seen = REQUEST_ID.get();
    println!("task {count}: sees {seen:?}, sets {}", count + 1);
    assert_eq!(seen, Some(count));
    REQUEST_ID.set(count + 1);
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Polls every task in turn until all are done: the smallest possible executor.
fn run_tasks(mut tasks: Vec<Task>) {
    let mut cx = TaskContext::from_waker(Waker::noop());
    while !tasks.is_empty() {
        tasks.retain_mut(|task| task.as_mut().poll(&mut cx).is_pending());
    }
}

/// Yields to the executor `n` times.
struct Yield(u32);

impl Future for Yield {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        Poll::Pending
    }
}
