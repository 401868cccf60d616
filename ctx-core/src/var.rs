//! [`ContextVar`]: a key into the current context.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::current;
use crate::error::{AccessError, ResetError};
use crate::token::{ResetGuard, Token};
use crate::{Context, WithContext};

/// A context variable: PEP 567's `contextvars.ContextVar`.
///
/// Declare one as a `static`; its value lives in the current [`Context`], so each task
/// (and each thread) sees its own. A task spawned through a ctx adapter starts with a
/// copy of its creator's values; its own [`set`](ContextVar::set)s never leak back.
///
/// ```
/// use ctx_core::{Context, ContextVar};
///
/// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
/// static LEVEL: ContextVar<u32> = ContextVar::with_default("level", || 3);
///
/// # Context::new().run(|| {
/// assert_eq!(REQUEST_ID.get(), None);
/// assert_eq!(LEVEL.get(), Some(3)); // the default
///
/// let token = REQUEST_ID.set(42);
/// assert_eq!(REQUEST_ID.get(), Some(42));
/// REQUEST_ID.reset(token).unwrap();
/// assert_eq!(REQUEST_ID.get(), None);
/// # });
/// ```
pub struct ContextVar<T: 'static> {
    name: &'static str,
    /// Dense process-wide id, the key in every context's map; 0 until first use.
    id: AtomicU32,
    default: Option<fn() -> T>,
    default_value: OnceLock<T>,
}

/// Hands out variable ids. Starts at 1: 0 means "not assigned yet".
static NEXT_VAR_ID: AtomicU32 = AtomicU32::new(1);

impl<T: Send + Sync + 'static> ContextVar<T> {
    /// A variable with no default: [`get`](ContextVar::get) is `None` until it is set.
    ///
    /// `name` is for diagnostics and [`Context::iter`]; it need not be unique.
    pub const fn new(name: &'static str) -> Self {
        ContextVar {
            name,
            id: AtomicU32::new(0),
            default: None,
            default_value: OnceLock::new(),
        }
    }

    /// A variable whose value, where it is not set, is `default()`.
    ///
    /// `default` is called lazily, at most once per variable (even when many threads read
    /// it first at the same time), and its result is shared. A default is never a value
    /// *in* a context: [`Context::contains`] is false for it, and [`Context::get`] is `None`.
    ///
    /// ```
    /// use ctx_core::ContextVar;
    ///
    /// static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);
    /// # ctx_core::Context::new().run(|| {
    /// assert_eq!(RETRIES.get(), Some(3));
    /// # });
    /// ```
    pub const fn with_default(name: &'static str, default: fn() -> T) -> Self {
        ContextVar {
            name,
            id: AtomicU32::new(0),
            default: Some(default),
            default_value: OnceLock::new(),
        }
    }

    /// The name given at construction.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The value in the current context, else the default, else `None`.
    ///
    /// A thread that is exiting (its thread-locals being destroyed) reads no values,
    /// only the default.
    ///
    /// # Panics
    ///
    /// Never by itself. `T::clone` runs while the current context is borrowed for
    /// reading, so a `Clone` implementation must not set variables (see
    /// [`with`](ContextVar::with), which clones nothing).
    #[inline]
    pub fn get(&self) -> Option<T>
    where
        T: Clone,
    {
        match self.read() {
            Ok(Some(value)) => Some(value),
            Ok(None) | Err(_) => self.default_value().cloned(),
        }
    }

    /// The value in the current context, or `fallback`: PEP 567's `var.get(default)`.
    ///
    /// The explicit `fallback` wins over the variable's own default.
    ///
    /// ```
    /// use ctx_core::ContextVar;
    ///
    /// static LEVEL: ContextVar<u32> = ContextVar::with_default("level", || 3);
    /// # ctx_core::Context::new().run(|| {
    /// assert_eq!(LEVEL.get_or(9), 9);
    /// LEVEL.set(1);
    /// assert_eq!(LEVEL.get_or(9), 1);
    /// # });
    /// ```
    #[inline]
    pub fn get_or(&self, fallback: T) -> T
    where
        T: Clone,
    {
        self.read().ok().flatten().unwrap_or(fallback)
    }

    /// Like [`get`](ContextVar::get), but tells an exiting thread apart from an unset
    /// variable.
    ///
    /// # Errors
    ///
    /// [`AccessError`] while the thread's thread-locals are being destroyed.
    pub fn try_get(&self) -> Result<Option<T>, AccessError>
    where
        T: Clone,
    {
        Ok(self.read()?.or_else(|| self.default_value().cloned()))
    }

    /// Calls `f` with a reference to the value (same lookup as [`get`](ContextVar::get)),
    /// without cloning it.
    ///
    /// `f` may itself read and set variables, and enter contexts: the value is kept alive
    /// for the call even if `f` replaces it. That costs one reference-count increment on
    /// the value, which threads reading the same value share; for small values `get` is
    /// cheaper.
    ///
    /// ```
    /// use ctx_core::ContextVar;
    ///
    /// static NAMES: ContextVar<Vec<String>> = ContextVar::new("names");
    /// # ctx_core::Context::new().run(|| {
    /// NAMES.set(vec!["ada".into(), "grace".into()]);
    /// assert_eq!(NAMES.with(|names| names.map_or(0, Vec::len)), 2);
    /// # });
    /// ```
    pub fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        // One reference count on the value, rather than holding the thread-local
        // borrowed while user code runs.
        let value = current::with(|ctx| ctx.map.get_shared(self.id()).cloned())
            .ok()
            .flatten();
        match &value {
            Some(value) => f(Some(downcast(&**value))),
            None => f(self.default_value()),
        }
    }

    /// Sets the variable in the current context, returning a [`Token`] that
    /// [`reset`](ContextVar::reset) can use to undo it.
    ///
    /// The value stays until it is replaced or reset, or until the context is dropped;
    /// other contexts (a task's creator, its siblings, earlier copies) do not see it.
    ///
    /// # Panics
    ///
    /// If the thread is exiting (use [`try_set`](ContextVar::try_set) there), or from
    /// inside a value's `Clone` implementation during [`get`](ContextVar::get), or on a
    /// thread in [strict mode](crate::strict) outside any task's context.
    #[track_caller]
    pub fn set(&self, value: T) -> Token<T> {
        self.try_set(value).unwrap_or_else(|_| {
            panic!(
                "ctx: ContextVar::set({:?}) called while the thread is exiting; use try_set",
                self.name
            )
        })
    }

    /// Like [`set`](ContextVar::set), but returns an error instead of panicking while the
    /// thread is exiting.
    ///
    /// # Errors
    ///
    /// [`AccessError`] while the thread's thread-locals are being destroyed; the value is
    /// dropped.
    ///
    /// # Panics
    ///
    /// From inside a value's `Clone` implementation during [`get`](ContextVar::get), or
    /// on a thread in [strict mode](crate::strict) outside any task's context.
    #[track_caller]
    pub fn try_set(&self, value: T) -> Result<Token<T>, AccessError> {
        let id = self.id();
        let value: crate::map::Value = Arc::new(value);
        let written = current::with_mut(|current| {
            if current.refuses_unscoped_set() {
                return Err(value);
            }
            let context_id = current.prepare_write();
            Ok((context_id, current.context.map.insert(id, self.name, value)))
        })?;
        match written {
            Ok((context_id, old)) => Ok(Token::new(id, self.name, context_id, old)),
            Err(value) => {
                drop(value);
                crate::strict::refused(self.name)
            }
        }
    }

    /// Sets the variable and returns a guard that resets it when dropped: PEP 567's
    /// `with var.set(value):` (Python 3.14).
    ///
    /// ```
    /// use ctx_core::ContextVar;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// # ctx_core::Context::new().run(|| {
    /// {
    ///     let _user = USER.set_scoped("ada");
    ///     assert_eq!(USER.get(), Some("ada"));
    /// }
    /// assert_eq!(USER.get(), None);
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// As [`set`](ContextVar::set); the guard panics on drop if it is dropped in a
    /// different context from the one it was created in (see [`ResetGuard`]).
    pub fn set_scoped(&self, value: T) -> ResetGuard<'_, T> {
        ResetGuard::new(self, self.set(value))
    }

    /// Restores the variable to what it was before the `set` that returned `token`:
    /// its previous value, or absent.
    ///
    /// Tokens may be reset in any order; each restores exactly its own "before".
    ///
    /// # Errors
    ///
    /// Nothing changes on error.
    /// - [`ResetError::WrongVar`]: the token came from another variable.
    /// - [`ResetError::WrongContext`]: the token was created in another context.
    /// - [`ResetError::ThreadExiting`]: the thread's thread-locals are being destroyed.
    pub fn reset(&self, token: Token<T>) -> Result<(), ResetError> {
        let id = self.id();
        let (token_var, token_context, old) = token.into_parts();
        if token_var != id {
            return Err(ResetError::WrongVar);
        }
        // Whatever leaves the map (or the unused `old`, on error) is dropped only after
        // the borrow ends: its `Drop` is user code.
        let displaced = current::with_mut(|current| {
            let ctx = &mut current.context;
            // Tokens always carry a real identity, never the 0 of an unwritten context.
            if ctx.id != token_context {
                return Err(old);
            }
            Ok(ctx.map.restore(id, self.name, old))
        });
        match displaced {
            Ok(Ok(_displaced)) => Ok(()),
            Ok(Err(_old)) => Err(ResetError::WrongContext),
            Err(AccessError { .. }) => Err(ResetError::ThreadExiting),
        }
    }

    /// Wraps `fut` to run in a copy of the current context (taken now) with this
    /// variable set to `value`. Sets inside `fut` stay inside it.
    ///
    /// ```
    /// use ctx_core::ContextVar;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// # ctx_core::Context::new().run(|| {
    /// let fut = USER.scope("ada", async {
    ///     USER.set("grace");
    ///     USER.get()
    /// });
    /// assert_eq!(block_on(fut), Some("grace"));
    /// assert_eq!(USER.get(), None);
    /// # });
    /// ```
    pub fn scope<F: Future>(&self, value: T, fut: F) -> WithContext<F> {
        Context::current().with_value(self, value).scope(fut)
    }

    /// Runs `f` in a copy of the current context with this variable set to `value`.
    /// Sets inside `f` stay inside it, and tokens from outside are not accepted inside
    /// (nor the reverse), as for any copy.
    ///
    /// The copy is lazy: the value is written in place and taken out again on exit, and
    /// the map is copied only if `f` itself sets a variable.
    ///
    /// ```
    /// use ctx_core::ContextVar;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// # ctx_core::Context::new().run(|| {
    /// let seen = USER.sync_scope("ada", || USER.get());
    /// assert_eq!(seen, Some("ada"));
    /// assert_eq!(USER.get(), None);
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// As [`Context::run`].
    pub fn sync_scope<R>(&self, value: T, f: impl FnOnce() -> R) -> R {
        let _scope = current::scope(self.id(), self.name, Arc::new(value)).unwrap_or_else(|_| {
            panic!("ctx: ContextVar::sync_scope called while the thread is exiting")
        });
        f()
    }

    /// A clone of the value set in the current context.
    #[inline]
    fn read(&self) -> Result<Option<T>, AccessError>
    where
        T: Clone,
    {
        let id = self.id();
        current::with(|ctx| ctx.map.get(id).map(|value| downcast::<T>(value).clone()))
    }

    /// This variable's key in every context's map.
    #[inline]
    pub(crate) fn id(&self) -> u32 {
        match self.id.load(Ordering::Relaxed) {
            0 => self.assign_id(),
            id => id,
        }
    }

    #[cold]
    fn assign_id(&self) -> u32 {
        // Never wraps: a repeated id would let two variables share entries.
        let fresh = NEXT_VAR_ID
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .expect("ctx: more than 4 294 967 294 context variables");
        match self
            .id
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh,
            // Another thread assigned one first; `fresh` is simply never used.
            Err(winner) => winner,
        }
    }

    /// The default value, built on first use.
    #[inline]
    fn default_value(&self) -> Option<&T> {
        let build = self.default?;
        match self.default_value.get() {
            Some(value) => Some(value),
            None => self.build_default(build),
        }
    }

    /// Builds the default at most once. A builder that reads its own variable would wait
    /// on itself; it sees no default instead. Builders may read and set other variables.
    #[cold]
    fn build_default(&self, build: fn() -> T) -> Option<&T> {
        thread_local! {
            static BUILDING: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
        }
        struct Building(u32);
        impl Drop for Building {
            fn drop(&mut self) {
                let _ = BUILDING.try_with(|building| {
                    let mut building = building.borrow_mut();
                    if let Some(at) = building.iter().rposition(|&id| id == self.0) {
                        building.remove(at);
                    }
                });
            }
        }

        let id = self.id();
        let reentered = BUILDING
            .try_with(|building| {
                let mut building = building.borrow_mut();
                let reentered = building.contains(&id);
                if !reentered {
                    building.push(id);
                }
                reentered
            })
            .unwrap_or(false);
        if reentered {
            return None;
        }
        let _building = Building(id);
        Some(self.default_value.get_or_init(build))
    }
}

/// The value of a variable of type `T`, from the map entry under that variable's id.
///
/// The one `unsafe` block of ctx, justified by `BENCHMARKS.md` ("Why one `unsafe`"):
/// the checked `downcast_ref` costs a virtual `type_id` call whose 16-byte result goes
/// through memory, 2 ns of the 5.5 ns a `get` took with it.
#[inline]
#[expect(
    unsafe_code,
    reason = "skips a type check that the id discipline makes redundant"
)]
pub(crate) fn downcast<T: 'static>(value: &(dyn Any + Send + Sync)) -> &T {
    debug_assert!(
        value.is::<T>(),
        "ctx: a context entry holds its variable's type"
    );
    // SAFETY: entries are keyed by variable id, and ids are unique per `ContextVar`: one
    // is taken from a counter that never wraps (`assign_id` panics first), at most once
    // per variable (a compare-exchange from 0), and a `ContextVar` cannot be cloned.
    // Every insertion under a `ContextVar<T>`'s id stores a `T`: `try_set`,
    // `sync_scope` and `Context::with_value` take a `T`; `reset` stores only the value
    // its `Token<T>` took out of the same id (a token from another id is `WrongVar`),
    // and leaving a `sync_scope` only what the scope took out of its own id.
    // So `value` is a `T`, and casting the data pointer of the trait object to `T`
    // yields a valid reference with `value`'s lifetime. Every test and the property
    // test run with the `debug_assert` above checking this.
    unsafe { &*std::ptr::from_ref(value).cast::<T>() }
}

impl<T: 'static> fmt::Debug for ContextVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextVar")
            .field("name", &self.name)
            .field("has_default", &self.default.is_some())
            .finish_non_exhaustive()
    }
}
