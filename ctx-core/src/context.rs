//! [`Context`]: an immutable-by-value snapshot of variable values.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use crate::current;
use crate::error::AccessError;
use crate::map::Map;
use crate::value::Value;
use crate::{ContextVar, WithContext};

/// A mapping from context variables to values: PEP 567's `contextvars.Context`.
///
/// Every thread has a *current* context (initially empty). [`ContextVar::get`] reads it,
/// [`ContextVar::set`] changes it. A `Context` value is a snapshot: [`Clone`] is O(1)
/// (one reference count) and is PEP 567's `copy()`; later sets in either copy do not show
/// in the other. [`Context::run`] makes a context current for the duration of a closure,
/// [`Context::scope`] does the same around every poll of a future, and
/// [`Context::enter`] until a matching [`Entry::leave`].
///
/// Each `Context` value has its own identity for [`ContextVar::reset`]: a token is
/// accepted only by the context it was created in, and a clone is a different context.
///
/// ```
/// use ctx_vars::{Context, ContextVar};
///
/// static USER: ContextVar<String> = ContextVar::new("user");
///
/// let mut ctx = Context::new().with_value(&USER, "ada".to_string());
/// let snapshot = ctx.clone();
/// ctx.run(|| {
///     assert_eq!(USER.get().as_deref(), Some("ada"));
///     USER.set("grace".to_string());
/// });
/// assert_eq!(ctx.get(&USER).map(String::as_str), Some("grace")); // kept in `ctx`
/// assert_eq!(snapshot.get(&USER).map(String::as_str), Some("ada")); // not in the copy
/// assert_eq!(USER.get(), None); // nor outside
/// ```
pub struct Context {
    pub(crate) map: Map,
    /// Identity for `WrongContext`; 0 until the first `set` made in this context.
    pub(crate) id: u64,
}

impl Context {
    /// An empty context. Costs nothing: no allocation until a value is set.
    pub const fn new() -> Self {
        Context {
            map: Map::new(),
            id: 0,
        }
    }

    /// A copy of the calling thread's current context: PEP 567's `copy_context()`.
    ///
    /// While the thread is exiting (its thread-locals are being destroyed) this is an
    /// empty context; [`Context::try_current`] tells the two apart.
    #[inline]
    pub fn current() -> Self {
        Self::try_current().unwrap_or_default()
    }

    /// A copy of the current context, or an error while the thread is exiting.
    ///
    /// # Errors
    ///
    /// [`AccessError`] while the thread's thread-locals are being destroyed.
    #[inline]
    pub fn try_current() -> Result<Self, AccessError> {
        current::with(Context::clone)
    }

    /// What a task spawned now starts with: a copy of the current context without the
    /// variables that do not travel ([`ContextVar::inherit`]`(false)`, such as a database
    /// transaction).
    ///
    /// Every spawn path of ctx and its adapters ([`thread::spawn`](crate::thread::spawn),
    /// `ctx_tokio::spawn`, `spawn_blocking`, executors) captures this; awaiting shares the
    /// whole context, and [`Context::current`] is a full copy, as in PEP 567. The copy is
    /// one reference count, like [`Context::current`], when the context holds no values
    /// that stay behind; when it does, the first spawn builds the copy (one reference
    /// count per variable) and later spawns from the unchanged context share it. While
    /// the thread is exiting this is an empty context.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    ///
    /// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
    /// static TRANSACTION: ContextVar<u64> = ContextVar::new("tx").inherit(false);
    ///
    /// # Context::new().run(|| {
    /// REQUEST_ID.set(7);
    /// TRANSACTION.set(1);
    /// let spawned = Context::inherited();
    /// assert_eq!(spawned.get(&REQUEST_ID), Some(&7));
    /// assert_eq!(spawned.get(&TRANSACTION), None); // stays with its task
    /// assert_eq!(Context::current().get(&TRANSACTION), Some(&1)); // a full copy
    /// # });
    /// ```
    #[inline]
    pub fn inherited() -> Self {
        current::with(|ctx| Context {
            map: ctx.map.inherited(),
            id: 0,
        })
        .unwrap_or_default()
    }

    /// This context without the variables that do not travel: what a task spawned in it
    /// would start with (see [`Context::inherited`]).
    #[must_use]
    pub fn into_inherited(self) -> Self {
        Context {
            map: self.map.inherited(),
            id: 0,
        }
    }

    /// Runs `f` with `self` as the current context; sets made inside `f` stay in `self`.
    ///
    /// The previous current context is restored when `f` returns or panics. Entering
    /// the same context again later sees the values left in it, and tokens created in
    /// it can be reset in it.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    ///
    /// static N: ContextVar<u32> = ContextVar::new("n");
    ///
    /// let mut ctx = Context::new();
    /// let token = ctx.run(|| N.set(1));
    /// assert_eq!(N.get(), None);
    /// ctx.run(|| {
    ///     assert_eq!(N.get(), Some(1));
    ///     N.reset(token).unwrap();
    ///     assert_eq!(N.get(), None);
    /// });
    /// ```
    ///
    /// While the thread is exiting (its thread-locals being destroyed, as when a value's
    /// `Drop` or another thread-local's destructor runs this), there is no current context
    /// to swap: `f` runs as it is, reads see defaults and sets are dropped.
    ///
    /// # Panics
    ///
    /// From inside a value's `Clone` implementation during [`ContextVar::get`].
    pub fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let _entered = current::enter(self);
        f()
    }

    /// Makes this context current until [`Entry::leave`], which restores the one that was
    /// current before and gives this one back as the code that ran in it left it: for
    /// executors whose "before poll" and "after poll" are two calls, such as tokio's task
    /// hooks. Prefer [`Context::run`] and [`WithContext`] where one call can hold the
    /// whole poll: their frames cannot be left open.
    ///
    /// The context that was current is kept on the thread's own stack until the entry
    /// is left (or dropped, which leaves it and drops the context). Entries nest with
    /// each other and with `run`s and polls, and must be left in the reverse order: an
    /// entry still open when the `run` or poll around it ends, or left while a later one
    /// is still open, puts the thread back as it was before it and panics (see
    /// [`Entry::leave`]).
    ///
    /// While the thread is exiting there is no current context to swap: the context is
    /// dropped, and `leave` gives back an empty one.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    ///
    /// static STEP: ContextVar<u32> = ContextVar::new("step");
    ///
    /// # Context::new().run(|| {
    /// let mut task = Context::new();
    /// for step in 0..3_u32 {
    ///     let entry = task.enter();
    ///     // The task's code, in its own context:
    ///     assert_eq!(STEP.get(), step.checked_sub(1));
    ///     STEP.set(step);
    ///     task = entry.leave();
    /// }
    /// assert_eq!(task.get(&STEP), Some(&2)); // what the code set went with it
    /// assert_eq!(STEP.get(), None); // and not into the thread's context
    /// # });
    /// ```
    #[inline]
    pub fn enter(self) -> Entry {
        // On an exiting thread the context is dropped here, as a `set` drops its value.
        let serial = current::open(self).unwrap_or(0);
        Entry {
            serial,
            _thread: PhantomData,
        }
    }

    /// The value `var` has in this context: set values only, never the variable's default.
    pub fn get<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<&T> {
        self.map.get(var.assigned_key()?).map(Value::downcast)
    }

    /// Whether `var` has a value in this context (a default does not count).
    pub fn contains<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> bool {
        self.get(var).is_some()
    }

    /// The number of variables set in this context.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no variable is set in this context.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The variables set in this context and their values, in an unspecified (but
    /// stable) order.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    ///
    /// static A: ContextVar<u8> = ContextVar::new("a");
    /// static B: ContextVar<&str> = ContextVar::new("b");
    ///
    /// let ctx = Context::new().with_value(&A, 1).with_value(&B, "x");
    /// let mut names: Vec<_> = ctx.iter().map(|(var, _)| var.name()).collect();
    /// names.sort();
    /// assert_eq!(names, ["a", "b"]);
    /// let (_, a) = ctx.iter().find(|(var, _)| var.is(&A)).unwrap();
    /// assert_eq!(a.downcast_ref::<u8>(), Some(&1));
    /// ```
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (VarInfo, &(dyn Any + Send + Sync))> {
        self.map.iter().map(|leaf| {
            let info = VarInfo {
                id: leaf.id,
                name: leaf.name,
            };
            (info, leaf.value.as_any())
        })
    }

    /// This context with `var` set to `value`: a builder for spawning with values.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    ///
    /// static REQUEST: ContextVar<u64> = ContextVar::new("request");
    ///
    /// let ctx = Context::current().with_value(&REQUEST, 7);
    /// assert_eq!(ctx.get(&REQUEST), Some(&7));
    /// ```
    #[must_use]
    pub fn with_value<T: Send + Sync + 'static>(mut self, var: &ContextVar<T>, value: T) -> Self {
        // The displaced value is dropped here, outside any borrow of the thread-local.
        let _old = self.map.insert(var.key(), var.name(), Value::new(value));
        self
    }

    /// This context without `var`: a builder for what a job or task should not carry.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static SESSION: ContextVar<u64> = ContextVar::new("session");
    ///
    /// let ctx = Context::new().with_value(&USER, "ada").with_value(&SESSION, 9);
    /// let job = ctx.clone().without(&SESSION);
    /// assert_eq!(job.get(&USER), Some(&"ada"));
    /// assert!(!job.contains(&SESSION));
    /// assert!(ctx.contains(&SESSION)); // the original is untouched
    /// ```
    #[must_use]
    pub fn without<T: Send + Sync + 'static>(mut self, var: &ContextVar<T>) -> Self {
        if let Some(key) = var.assigned_key() {
            let _removed = self.map.remove(key);
        }
        self
    }

    /// Wraps `fut` so that it runs in this context: every poll (and the drop) of `fut`
    /// happens with `self` current.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let fut = Context::new()
    ///     .with_value(&USER, "ada")
    ///     .scope(async { USER.get() });
    /// assert_eq!(block_on(fut), Some("ada"));
    /// ```
    pub fn scope<F: Future>(self, fut: F) -> WithContext<F> {
        WithContext::new(self, fut)
    }

    /// Turns `f` into a closure that runs in this context: PEP 567's
    /// `loop.call_soon(ctx.run, f)` for callback-style APIs.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let callback = Context::new().with_value(&USER, "ada").wrap(|| USER.get());
    /// assert_eq!(callback(), Some("ada"));
    /// ```
    pub fn wrap<R>(self, f: impl FnOnce() -> R) -> impl FnOnce() -> R {
        move || {
            let mut ctx = self;
            ctx.run(f)
        }
    }
}

/// A context made current by [`Context::enter`] on this thread, until [`Entry::leave`].
///
/// Dropping it leaves the context too, and drops it.
#[must_use = "leave it with `Entry::leave`: until then the thread stays in the context"]
pub struct Entry {
    /// Which entry on this thread's stack; 0 if the thread was exiting (nothing entered).
    serial: u64,
    /// Left on the thread that entered it.
    _thread: PhantomData<*const ()>,
}

impl Entry {
    /// Leaves the context, restores the one that was current before, and gives it back
    /// as the code that ran in it left it.
    ///
    /// # Panics
    ///
    /// If a context entered after it (a [`Context::run`], a poll, a `sync_scope`, a later
    /// entry) is still open, or if this entry's frame was closed already (it was still
    /// open when the `run` or poll around it ended). A wrong context is never left
    /// current: the thread is first put back as it was before this entry (at once, or
    /// as soon as the later `run`, poll or scope ends), and this entry's context is
    /// dropped.
    #[inline]
    pub fn leave(self) -> Context {
        // Left here: its `Drop`, which would leave it too, is not run.
        let this = std::mem::ManuallyDrop::new(self);
        match this.serial {
            0 => Context::new(),
            serial => current::leave(serial),
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.serial != 0 {
            drop(current::leave(self.serial));
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").finish_non_exhaustive()
    }
}

/// A copy of the calling thread's current context: PEP 567's `copy_context()`.
///
/// The same as [`Context::current`].
pub fn copy_context() -> Context {
    Context::current()
}

impl Clone for Context {
    /// An O(1) copy: shares the values, but is a new context (PEP 567 `Context.copy()`):
    /// tokens from `self` are not accepted by the copy.
    #[inline]
    fn clone(&self) -> Self {
        Context {
            map: self.map.clone(),
            id: 0,
        }
    }
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|(info, _)| info.name))
            .finish()
    }
}

/// Which variable an entry of [`Context::iter`] belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VarInfo {
    id: u32,
    name: &'static str,
}

impl VarInfo {
    /// The variable's name, as given to [`ContextVar::new`].
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether this entry belongs to `var`.
    pub fn is<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> bool {
        var.assigned_key().is_some_and(|key| key.id == self.id)
    }
}

impl fmt::Debug for VarInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VarInfo").field("name", &self.name).finish()
    }
}
