//! [`ContextVar`]: a key into the current context.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::current;
use crate::default::LazyDefault;
use crate::error::{AccessError, ResetError};
use crate::map::Key;
use crate::token::{ResetGuard, Token};
use crate::value::{self, Value};
use crate::{Context, WithContext};

/// A context variable: PEP 567's `contextvars.ContextVar`.
///
/// Declare one as a `static`; its value lives in the current [`Context`], so each task
/// (and each thread) sees its own. A task spawned through a ctx adapter starts with a
/// copy of its creator's values; its own [`set`](ContextVar::set)s never leak back.
///
/// ```
/// use ctx_vars::{Context, ContextVar};
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
///
/// # Flow policy
///
/// By default a value travels everywhere its context goes: into awaited futures, and
/// into every task, thread and blocking job spawned from it. A variable declared with
/// [`inherit(false)`](ContextVar::inherit) is *local to its task*: awaited code sees it,
/// but spawned work starts without it ([`Context::inherited`] is what spawns capture).
/// That is the policy for values that must not outlive or leave the code that set them,
/// such as an open database transaction or a connection checked out of a pool.
///
/// # Declare variables as `static`
///
/// A `ContextVar` is a key: each one is a distinct variable. A `const` would be a new
/// variable at every mention, so a value set through one mention is never seen through
/// another (clippy's `declare_interior_mutable_const` warns about such a `const`, and
/// `#[context_var]` refuses one).
///
/// # Variance
///
/// A variable is invariant in `T`: a covariant one could be used, through subtyping, as
/// a variable of another type (`for<'a> fn(&'a u8)` as `fn(&'static u8)`), whose sets
/// and reads would disagree on what its values are.
///
/// ```compile_fail
/// use ctx_vars::ContextVar;
///
/// fn retype<'v>(
///     var: &'v ContextVar<for<'a> fn(&'a u8)>,
/// ) -> &'v ContextVar<fn(&'static u8)> {
///     var
/// }
/// ```
pub struct ContextVar<T: 'static> {
    name: &'static str,
    /// Dense process-wide id, the key in every context's map; 0 until first written.
    id: AtomicU32,
    /// Whether spawned tasks inherit the value (see "Flow policy").
    inherit: bool,
    default: LazyDefault<T>,
    /// Invariant in `T` on purpose, not by the accident of what `default` holds:
    /// [`Value::downcast`] depends on it.
    _invariant: PhantomData<fn(T) -> T>,
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
            inherit: true,
            default: LazyDefault::new(None),
            _invariant: PhantomData,
        }
    }

    /// A variable whose value, where it is not set, is `default()`.
    ///
    /// `default` is called lazily, at most once per variable (even when many threads read
    /// it first at the same time), and its result is shared. A default is never a value
    /// *in* a context: [`Context::contains`] is false for it, and [`Context::get`] is `None`.
    ///
    /// A builder may read other variables, and so their defaults. One that reads its own
    /// variable, directly or through other builders, sees no default there (`None`),
    /// on one thread or across several: builders that read each other never deadlock.
    ///
    /// ```
    /// use ctx_vars::ContextVar;
    ///
    /// static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);
    /// # ctx_vars::Context::new().run(|| {
    /// assert_eq!(RETRIES.get(), Some(3));
    /// # });
    /// ```
    pub const fn with_default(name: &'static str, default: fn() -> T) -> Self {
        ContextVar {
            name,
            id: AtomicU32::new(0),
            inherit: true,
            default: LazyDefault::new(Some(default)),
            _invariant: PhantomData,
        }
    }

    /// Sets the variable's flow policy: with `false`, spawned tasks, threads and
    /// blocking jobs do not inherit its value (see "Flow policy" above); awaited code
    /// still sees it. `#[context_var(inherit = false)]` is the same.
    ///
    /// ```
    /// use ctx_vars::{Context, ContextVar};
    ///
    /// static TRANSACTION: ContextVar<u64> = ContextVar::new("tx").inherit(false);
    ///
    /// # Context::new().run(|| {
    /// TRANSACTION.set(42);
    /// assert_eq!(TRANSACTION.get(), Some(42));
    /// let seen = ctx_vars::thread::spawn(|| TRANSACTION.get()).join().unwrap();
    /// assert_eq!(seen, None); // a spawned thread starts without it
    /// # });
    /// ```
    pub const fn inherit(mut self, inherit: bool) -> Self {
        self.inherit = inherit;
        // A variable whose values live elsewhere is a new variable.
        self.id = AtomicU32::new(0);
        self
    }

    /// The name given at construction.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether spawned tasks inherit this variable's value (see
    /// [`inherit`](ContextVar::inherit)).
    #[inline]
    pub fn inherits(&self) -> bool {
        self.inherit
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
            Ok(None) | Err(_) => self.default_cloned(),
        }
    }

    /// The value in the current context, or `fallback`: PEP 567's `var.get(default)`.
    ///
    /// The explicit `fallback` wins over the variable's own default.
    ///
    /// ```
    /// use ctx_vars::ContextVar;
    ///
    /// static LEVEL: ContextVar<u32> = ContextVar::with_default("level", || 3);
    /// # ctx_vars::Context::new().run(|| {
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
        Ok(self.read()?.or_else(|| self.default_cloned()))
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
    /// use ctx_vars::ContextVar;
    ///
    /// static NAMES: ContextVar<Vec<String>> = ContextVar::new("names");
    /// # ctx_vars::Context::new().run(|| {
    /// NAMES.set(vec!["ada".into(), "grace".into()]);
    /// assert_eq!(NAMES.with(|names| names.map_or(0, Vec::len)), 2);
    /// # });
    /// ```
    pub fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        // One reference count on the value, rather than holding the thread-local
        // borrowed while user code runs.
        let value = self.assigned_key().and_then(|key| {
            current::with(|ctx| ctx.map.get(key).cloned())
                .ok()
                .flatten()
        });
        match &value {
            Some(value) => f(Some(value.downcast())),
            None => f(self.default.get()),
        }
    }

    /// Sets the variable in the current context, returning a [`Token`] that
    /// [`reset`](ContextVar::reset) can use to undo it.
    ///
    /// The value stays until it is replaced or reset, or until the context is dropped;
    /// other contexts (a task's creator, its siblings, earlier copies) do not see it.
    ///
    /// While the thread is exiting (its thread-locals being destroyed, as when a value's
    /// `Drop` runs at thread exit) there is no context to set: the value is dropped, and
    /// resetting the token reports [`ResetError::ThreadExiting`]. Use
    /// [`try_set`](ContextVar::try_set) to be told.
    ///
    /// # Panics
    ///
    /// From inside a value's `Clone` implementation during [`get`](ContextVar::get), or
    /// on a thread in [strict mode](crate::strict) outside any task's context.
    #[track_caller]
    pub fn set(&self, value: T) -> Token<T> {
        match self.write(value, false) {
            Ok((token, _)) => token,
            Err(AccessError { .. }) => self.token_without_context(),
        }
    }

    /// Like [`set`](ContextVar::set), but returns an error instead of dropping the value
    /// quietly while the thread is exiting.
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
        self.write(value, false).map(|(token, _)| token)
    }

    /// The token of a `set` that found no context (the thread is exiting): no context
    /// accepts it, and resetting it reports the exit.
    fn token_without_context(&self) -> Token<T> {
        Token::new(self.key().id, self.name, current::NO_CONTEXT, None)
    }

    /// Writes `value` into the current context; returns the token and, with `keep`, a
    /// handle on the written value (for identity).
    ///
    /// The `Value` is made where the map stores it (see [`Map::insert_with`]), and the
    /// handle is looked up only where it is used.
    ///
    /// [`Map::insert_with`]: crate::map::Map::insert_with
    #[track_caller]
    #[inline(always)]
    fn write(&self, value: T, keep: bool) -> Result<(Token<T>, Option<Value>), AccessError> {
        let key = self.key();
        let written = current::with_mut(|current| {
            if current.refuses_unscoped_set() {
                return Err(value);
            }
            let (context_id, context) = current.prepare_write();
            let map = &mut context.map;
            let old = map.insert_with(key, self.name, || Value::new(value));
            let handle = if keep { map.get(key).cloned() } else { None };
            Ok((context_id, old, handle))
        });
        match written {
            Ok(Ok((context_id, old, handle))) => {
                Ok((Token::new(key.id, self.name, context_id, old), handle))
            }
            Ok(Err(value)) => {
                drop(value);
                crate::strict::refused(self.name)
            }
            // `value` was dropped with `with_mut`'s closure, which never ran.
            Err(error) => Err(error),
        }
    }

    /// Sets the variable and returns a guard that resets it when dropped: PEP 567's
    /// `with var.set(value):` (Python 3.14).
    ///
    /// ```
    /// use ctx_vars::ContextVar;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// # ctx_vars::Context::new().run(|| {
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
    /// different context from the one it was created in, or while a later set of the
    /// variable is still in place (see [`ResetGuard`]).
    #[track_caller]
    pub fn set_scoped(&self, value: T) -> ResetGuard<'_, T> {
        match self.write(value, true) {
            Ok((token, written)) => ResetGuard::new(self, token, written),
            Err(AccessError { .. }) => ResetGuard::new(self, self.token_without_context(), None),
        }
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
        self.reset_checked(token, None, false)
    }

    /// [`reset`](ContextVar::reset); with `written`, only while the variable still holds
    /// that value (for [`ResetGuard`], whose sets nest). With `abandon` too, a reset
    /// refused because a later set is still in place is remembered instead (see
    /// [`Current::abandon`](crate::current::Current::abandon)).
    #[inline]
    pub(crate) fn reset_checked(
        &self,
        token: Token<T>,
        written: Option<&Value>,
        abandon: bool,
    ) -> Result<(), ResetError> {
        let (token_var, token_context, mut old) = token.into_parts();
        let key = match self.assigned_key() {
            Some(key) if key.id == token_var => key,
            _ => return Err(ResetError::WrongVar),
        };
        // What leaves the map is left in `old` (which, on error, keeps the unused value),
        // and dropped with it only after the borrow ends: its `Drop` is user code.
        let outcome = current::with_mut(|current| {
            // Tokens always carry a real identity, never the 0 of an unwritten context.
            let context = current.context_mut();
            if context.id != token_context {
                return Err((ResetError::WrongContext, Vec::new()));
            }
            if let Some(written) = written {
                let now = context.map.get(key);
                if !now.is_some_and(|now| now.same(written)) {
                    let dropped = match abandon {
                        true => current.abandon(key, written, old.take()),
                        false => Vec::new(),
                    };
                    return Err((ResetError::Superseded, dropped));
                }
            }
            context.map.put_back(key, self.name, &mut old);
            Ok(current.undo_abandoned(key, self.name))
        });
        match outcome {
            Ok(Ok(_displaced)) => Ok(()),
            Ok(Err((error, _dropped))) => Err(error),
            Err(AccessError { .. }) => Err(ResetError::ThreadExiting),
        }
    }

    /// Wraps `fut` to run in a copy of the current context (taken now) with this
    /// variable set to `value`. Sets inside `fut` stay inside it.
    ///
    /// ```
    /// use ctx_vars::ContextVar;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// # ctx_vars::Context::new().run(|| {
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
    /// use ctx_vars::ContextVar;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// # ctx_vars::Context::new().run(|| {
    /// let seen = USER.sync_scope("ada", || USER.get());
    /// assert_eq!(seen, Some("ada"));
    /// assert_eq!(USER.get(), None);
    /// # });
    /// ```
    ///
    /// While the thread is exiting there is no context to write to: `f` runs without
    /// the value (as [`Context::run`] does then).
    ///
    /// # Panics
    ///
    /// As [`Context::run`].
    pub fn sync_scope<R>(&self, value: T, f: impl FnOnce() -> R) -> R {
        current::overlay(self.key(), self.name, value, f)
    }

    /// A clone of the default, if any. Out of line, and `read` always inline: that keeps
    /// `get` small enough to inline into its callers (one call less per read, 60 → 51
    /// instructions in a loop of `get`s).
    #[inline(never)]
    fn default_cloned(&self) -> Option<T>
    where
        T: Clone,
    {
        self.default.get().cloned()
    }

    /// A clone of the value set in the current context.
    #[inline(always)]
    fn read(&self) -> Result<Option<T>, AccessError>
    where
        T: Clone,
    {
        // A variable never written has no id, and no context holds it: reading it
        // must not use up an id (a `const` would be a new variable at every read).
        let Some(key) = self.assigned_key() else {
            return never_written();
        };
        let clone = |ctx: &Context| ctx.map.get(key).map(|value| value.downcast::<T>().clone());
        if value::is_inline::<T>() {
            // SAFETY: `clone` runs no user code here: `T` is one of the plain types of
            // `is_inline` (folded to a constant for `T`), whose `clone` is the
            // standard library's copy of its bytes, and `Map::get` only reads.
            #[expect(unsafe_code, reason = "a read that runs no user code counts no borrow")]
            return unsafe { current::peek(clone) };
        }
        current::with(clone)
    }

    /// This variable's key in every context's map, its id assigned on first use: for
    /// writes.
    #[inline]
    pub(crate) fn key(&self) -> Key {
        self.assigned_key()
            .unwrap_or_else(|| self.key_with(self.assign_id()))
    }

    /// This variable's key, or `None` if it was never written: for reads. A context
    /// that holds the variable was written after the id was assigned, and reached this
    /// thread through whatever made it visible here (a spawn, a channel), so the
    /// assigned id is visible too.
    #[inline]
    pub(crate) fn assigned_key(&self) -> Option<Key> {
        match self.id.load(Ordering::Relaxed) {
            0 => None,
            id => Some(self.key_with(id)),
        }
    }

    /// The key under id `id`, in the trie this variable's flow policy picks.
    #[inline]
    fn key_with(&self, id: u32) -> Key {
        Key {
            id,
            local: !self.inherit,
        }
    }

    #[cold]
    fn assign_id(&self) -> u32 {
        // Never wraps: a repeated id would let two variables share entries. The last
        // id handed out is `u32::MAX - 1`: `u32::MAX` is the map's placeholder's.
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
}

/// What reading a variable that was never written finds: nothing, or that the thread is
/// exiting. Out of line, so that `get` stays small enough to inline.
#[cold]
#[inline(never)]
fn never_written<T>() -> Result<Option<T>, AccessError> {
    current::with(|_| None)
}

impl<T: 'static> fmt::Debug for ContextVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextVar")
            .field("name", &self.name)
            .field("inherit", &self.inherit)
            .field("has_default", &self.default.exists())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::ContextVar;
    use crate::Context;

    /// Reads never assign an id: a `const` variable, a new one at every mention, would
    /// otherwise use up the id space one read at a time, and then every static that had
    /// not been written yet would panic.
    #[test]
    fn reads_of_a_never_written_variable_use_no_id() {
        let var: ContextVar<u32> = ContextVar::with_default("fresh", || 1);
        Context::new().run(|| {
            assert_eq!(var.get(), Some(1));
            assert_eq!(var.get_or(2), 2);
            assert_eq!(var.try_get(), Ok(Some(1)));
            assert_eq!(var.with(|v| v.copied()), Some(1));
            let ctx = Context::current();
            assert_eq!(ctx.get(&var), None);
            assert!(!ctx.contains(&var));
            let _ = ctx.clone().without(&var);
            assert!(ctx.iter().all(|(info, _)| !info.is(&var)));
        });
        assert_eq!(var.assigned_key(), None);
        Context::new().run(|| drop(var.set(3)));
        assert!(var.assigned_key().is_some(), "a write assigns one");
    }
}
