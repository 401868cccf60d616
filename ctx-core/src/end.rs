//! Contexts that end: a request's values, for the tasks that outlive the request.
//!
//! A task spawned while a request is served may live on after it: a pooled HTTP
//! connection opened by the first request that needed it, a database driver started on
//! first use. If it inherited the request's context, every line it logs later, for
//! whichever request it then serves, carries the first request's id: a wrong value,
//! worse than none. A context made [endable](Context::endable) can be *ended*, and
//! whoever hands its values to such tasks (ctx-tokio's task hooks) stops showing them
//! once it has: the task keeps only what it set itself.
//!
//! [`ContextLayer`](crate::ContextLayer) makes every request's context endable, and
//! ends it when the response body has been sent (or dropped).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::Context;
use crate::map::HIDDEN;
use crate::value::Value;

/// Ends an [endable](Context::endable) context: when [`end`](ContextEnd::end) is called
/// or the `ContextEnd` is dropped, whichever comes first.
///
/// Ending changes no value in any context: code running in the context goes on reading
/// its values. It tells those who watch the context's [`EndSignal`] that the values are
/// no longer meant for anyone new (see [`Context::endable`]).
#[must_use = "dropping a ContextEnd ends its context at once"]
pub struct ContextEnd {
    signal: EndSignal,
}

/// Whether an [endable](Context::endable) context has ended, and a way to be told when
/// it does. Cloning is one reference count.
#[derive(Clone)]
pub struct EndSignal {
    inner: Arc<Inner>,
}

/// Told when an [endable](Context::endable) context ends, with the key it was
/// [watching](EndSignal::watch) it under: for code that follows many things that end
/// with one context (the tasks of a runtime), without a callback allocated for each.
pub trait EndWatcher: Send + Sync {
    /// The context ended. Runs on the thread that ended it, in an empty context.
    fn ended(&self, key: u64);
}

/// What waits for the end.
enum Waiting {
    Callback(Box<dyn FnOnce() + Send>),
    Watcher(Weak<dyn EndWatcher>, u64),
    /// An endable context made from this one: ends with it.
    Child(Weak<Inner>),
}

impl Waiting {
    fn run(self) {
        match self {
            Waiting::Callback(f) => f(),
            Waiting::Watcher(watcher, key) => {
                if let Some(watcher) = watcher.upgrade() {
                    watcher.ended(key);
                }
            }
            Waiting::Child(child) => {
                if let Some(inner) = child.upgrade() {
                    EndSignal { inner }.end();
                }
            }
        }
    }
}

struct Inner {
    ended: AtomicBool,
    /// Run once, at the end. Set to `None` by the end under the lock, so that nothing
    /// is added after.
    waiting: Mutex<Option<Vec<Waiting>>>,
}

impl Context {
    /// This context made endable, and the [`ContextEnd`] that ends it.
    ///
    /// Copies of the context, and the contexts of tasks spawned from it, carry its
    /// [`EndSignal`] ([`Context::end_signal`]). Ending is for the tasks that outlive the
    /// work the context was made for: ctx-tokio's task hooks give a task spawned from an
    /// endable context its values only until the context ends, and after that only
    /// what the task set itself. Code that runs *in* the context itself, and tasks
    /// spawned with ctx's own `spawn` functions (which carry a context because you asked
    /// them to), are not affected.
    ///
    /// Making an endable context endable again nests: the inner one ends when either
    /// ends.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    ///
    /// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
    ///
    /// let (request, end) = Context::new().with_value(&REQUEST_ID, 7).endable();
    /// let signal = request.end_signal().unwrap();
    /// assert!(!request.is_ended());
    /// end.end();
    /// assert!(signal.is_ended() && request.is_ended());
    /// assert_eq!(request.get(&REQUEST_ID), Some(&7)); // values are not touched
    /// ```
    pub fn endable(self) -> (Context, ContextEnd) {
        let signal = EndSignal {
            inner: Arc::new(Inner {
                ended: AtomicBool::new(false),
                waiting: Mutex::new(Some(Vec::new())),
            }),
        };
        if let Some(outer) = self.end_signal() {
            outer.wait(Waiting::Child(Arc::downgrade(&signal.inner)));
        }
        let mut context = self;
        let _outer = context
            .map
            .insert(HIDDEN, "ctx.end", Value::new(signal.clone()));
        (context, ContextEnd { signal })
    }

    /// The [`EndSignal`] of the [endable](Context::endable) context this one was made
    /// or copied from, if any.
    #[inline]
    pub fn end_signal(&self) -> Option<EndSignal> {
        self.signal().cloned()
    }

    /// Whether this context was copied from an [endable](Context::endable) context that
    /// has ended.
    #[inline]
    pub fn is_ended(&self) -> bool {
        self.signal().is_some_and(EndSignal::is_ended)
    }

    /// The end signal this context holds, borrowed.
    #[inline]
    fn signal(&self) -> Option<&EndSignal> {
        self.map.get(HIDDEN)?.as_any().downcast_ref::<EndSignal>()
    }

    /// The variables whose values in this context are not the very values `earlier`
    /// holds: what was set (or set again) in this context since it was copied from
    /// `earlier`. Values equal but set anew count as changed; a variable removed since
    /// is absent from both. The result is a new context (its tokens are its own).
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    ///
    /// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
    /// static CONNECTION: ContextVar<u32> = ContextVar::new("connection");
    ///
    /// let inherited = Context::new().with_value(&REQUEST_ID, 7);
    /// let mut task = inherited.clone();
    /// task.run(|| CONNECTION.set(3));
    /// let own = task.changed_since(&inherited);
    /// assert_eq!(own.get(&CONNECTION), Some(&3));
    /// assert_eq!(own.get(&REQUEST_ID), None);
    /// ```
    pub fn changed_since(&self, earlier: &Context) -> Context {
        Context {
            map: self.map.changed_since(&earlier.map),
            id: 0,
        }
    }
}

impl ContextEnd {
    /// Ends the context now (dropping the `ContextEnd` does the same): see [`EndSignal::on_end`].
    ///
    /// # Panics
    ///
    /// If a callback given to [`EndSignal::on_end`] panics, once every other callback
    /// has run.
    pub fn end(self) {
        // The drop does it.
    }

    /// The signal this ends.
    pub fn signal(&self) -> &EndSignal {
        &self.signal
    }
}

impl Drop for ContextEnd {
    fn drop(&mut self) {
        self.signal.end();
    }
}

impl EndSignal {
    /// Whether the context has ended.
    #[inline]
    pub fn is_ended(&self) -> bool {
        self.inner.ended.load(Ordering::Acquire)
    }

    /// Runs `f` when the context ends, on the thread that ends it and in an empty
    /// context of its own; at once, here, if it has ended already.
    ///
    /// Callbacks wait in the signal until the end: a context meant to end soon (a
    /// request's) is the place for them, not one that lives as long as the process.
    pub fn on_end(&self, f: impl FnOnce() + Send + 'static) {
        self.wait(Waiting::Callback(Box::new(f)));
    }

    /// Tells `watcher` when the context ends, with `key` ([`EndWatcher::ended`]); at
    /// once, here, if it has ended already. Holds the watcher weakly: one dropped by
    /// then is not told.
    pub fn watch<W: EndWatcher + 'static>(&self, watcher: &Arc<W>, key: u64) {
        let watcher: Weak<dyn EndWatcher> = Arc::downgrade(watcher) as Weak<dyn EndWatcher>;
        self.wait(Waiting::Watcher(watcher, key));
    }

    fn wait(&self, waiting: Waiting) {
        let mut list = lock(&self.inner.waiting);
        match &mut *list {
            Some(list) => {
                // A long-lived endable context with a layer inside (a request context
                // per call, each made from it) would collect one entry per call: the
                // children already gone are dropped whenever the list doubles.
                if list.len() >= 16 && list.len().is_power_of_two() {
                    list.retain(|w| !matches!(w, Waiting::Child(c) if c.strong_count() == 0));
                }
                list.push(waiting);
            }
            None => {
                drop(list);
                Context::new().run(|| waiting.run());
            }
        }
    }

    /// Sets the flag, then runs the callbacks, each outside the lock and in an empty
    /// context. A panicking callback does not keep the others from running; the first
    /// panic goes on after them (unless the thread is unwinding already).
    fn end(&self) {
        let callbacks = {
            let mut waiting = lock(&self.inner.waiting);
            // Under the lock: a callback added from now on sees the flag and runs at once.
            self.inner.ended.store(true, Ordering::Release);
            waiting.take()
        };
        let Some(callbacks) = callbacks else { return };
        let mut panic = None;
        for callback in callbacks {
            // Each in an empty context of its own: one's sets are not seen by the next.
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                Context::new().run(|| callback.run());
            }));
            if let Err(payload) = outcome {
                panic.get_or_insert(payload);
            }
        }
        if let Some(payload) = panic {
            if !std::thread::panicking() {
                resume_unwind(payload);
            }
        }
    }
}

/// The signal's lock; a callback never runs under it, so it is never poisoned by one,
/// and a poisoned lock's list is whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl fmt::Debug for ContextEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextEnd")
            .field("ended", &self.signal.is_ended())
            .finish()
    }
}

impl fmt::Debug for EndSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndSignal")
            .field("ended", &self.is_ended())
            .finish()
    }
}
