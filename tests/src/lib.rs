//! Shared helpers for ctx's integration and conformance tests.
//!
//! Every test body runs inside [`fresh`]: the test harness reuses threads, so a test must
//! never depend on (or leave values in) a thread's base context.

#![allow(
    clippy::missing_panics_doc,
    reason = "test helpers panic to fail the test"
)]

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread;

use ctx_vars::Context;

pub mod http;
pub mod runtime;
pub mod services;

/// The README's examples, compiled and run as doc tests, here where every crate they
/// use is a dependency.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Everything a `tracing-subscriber` writer was given, shared with the subscriber.
#[derive(Clone, Debug, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Runs `f` in a new, empty context and checks that the thread's own context is left
/// exactly as it was.
pub fn fresh<R>(f: impl FnOnce() -> R) -> R {
    let before = Context::current().len();
    let result = Context::new().run(f);
    assert_eq!(
        Context::current().len(),
        before,
        "a test leaked into the thread's context"
    );
    result
}

/// The seed's first example (PEP 567's asyncio example): `main` sets `"main"`, awaits
/// `sub`, which sees `"main"` and sets `"sub"`; `main` then sees `"sub"`.
pub async fn seed_main(var: &'static ctx_vars::ContextVar<String>) {
    var.set("main".into());
    seed_sub(var).await;
    assert_eq!(var.get().as_deref(), Some("sub"));
}

async fn seed_sub(var: &'static ctx_vars::ContextVar<String>) {
    assert_eq!(var.get().as_deref(), Some("main"));
    var.set("sub".into());
    assert_eq!(var.get().as_deref(), Some("sub"));
}

/// The message of a caught panic (`String` or `&str` payloads), or `""`.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|m| (*m).to_owned()))
        .unwrap_or_default()
}

/// Runs `f`, which must panic, and returns its panic message.
pub fn expect_panic<R>(f: impl FnOnce() -> R) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(payload) => panic_message(&*payload),
    }
}

/// Drives `fut` to completion on this thread, parking while it is pending.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// Polls `fut` once with a no-op waker.
pub fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut TaskContext::from_waker(Waker::noop()))
}

/// A future that returns `Pending` (waking itself) `n` times before completing.
pub fn yield_now(n: usize) -> YieldNow {
    YieldNow { left: n }
}

/// See [`yield_now`].
#[derive(Debug)]
pub struct YieldNow {
    left: usize,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.left == 0 {
            return Poll::Ready(());
        }
        self.left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A value that counts its drops and can run a closure when dropped.
pub struct Tracked {
    drops: Arc<AtomicUsize>,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Tracked {
    /// A value that adds one to `drops` when dropped.
    pub fn new(drops: &Arc<AtomicUsize>) -> Self {
        Tracked {
            drops: Arc::clone(drops),
            on_drop: None,
        }
    }

    /// A value that also runs `f` when dropped.
    pub fn on_drop(drops: &Arc<AtomicUsize>, f: impl FnOnce() + Send + Sync + 'static) -> Self {
        Tracked {
            drops: Arc::clone(drops),
            on_drop: Some(Box::new(f)),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked").finish_non_exhaustive()
    }
}

/// A minimal multi-threaded executor with no context support of its own: tasks move
/// between worker threads on every wake. It shows that ctx needs nothing from an
/// executor but the [`ctx_vars::WithContext`] wrapper.
#[derive(Debug)]
pub struct Pool {
    queue: mpsc::Sender<Arc<Task>>,
    workers: Vec<thread::JoinHandle<()>>,
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Task {
    future: Mutex<Option<BoxFuture>>,
    queue: Mutex<mpsc::Sender<Arc<Task>>>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        let queue = self.queue.lock().unwrap().clone();
        // The pool may be shutting down; a lost wake-up then is harmless.
        let _ = queue.send(self);
    }
}

impl Pool {
    /// A pool of `threads` workers.
    pub fn new(threads: usize) -> Self {
        let (queue, jobs) = mpsc::channel::<Arc<Task>>();
        let jobs = Arc::new(Mutex::new(jobs));
        let workers = (0..threads)
            .map(|_| {
                let jobs = Arc::clone(&jobs);
                thread::spawn(move || {
                    loop {
                        let next = jobs.lock().unwrap().recv();
                        let Ok(task) = next else { return };
                        let waker = Waker::from(Arc::clone(&task));
                        let mut slot = task.future.lock().unwrap();
                        if let Some(fut) = slot.as_mut() {
                            if fut
                                .as_mut()
                                .poll(&mut TaskContext::from_waker(&waker))
                                .is_ready()
                            {
                                *slot = None;
                            }
                        }
                    }
                })
            })
            .collect();
        Pool { queue, workers }
    }

    /// Runs `fut` on the pool as it is: no context is captured (like a runtime's own
    /// `spawn`). Returns a receiver for its output.
    pub fn spawn_raw<F>(&self, fut: F) -> mpsc::Receiver<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let task = Arc::new(Task {
            future: Mutex::new(Some(Box::pin(async move {
                let _ = tx.send(fut.await);
            }))),
            queue: Mutex::new(self.queue.clone()),
        });
        self.queue.send(task).expect("pool is running");
        rx
    }

    /// Waits for all workers after every sender is gone.
    pub fn shutdown(self) {
        drop(self.queue);
        // Tasks hold senders too; those still queued end when the workers drain them.
        for worker in self.workers {
            worker.join().unwrap();
        }
    }
}
