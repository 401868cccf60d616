//! [`Token`] and [`ResetGuard`]: undoing a [`ContextVar::set`].

use std::fmt;
use std::marker::PhantomData;

use crate::ContextVar;
use crate::error::ResetError;
use crate::value::Value;

/// Invariant in `T` (a covariant token could be retyped by subtyping, as
/// `for<'a> fn(&'a u8)` to `fn(&'static u8)`, and read as the wrong type), and `Send`
/// and `Sync` exactly when `T` is.
type Invariant<T> = PhantomData<(T, fn(T) -> T)>;

/// Returned by [`ContextVar::set`]; [`ContextVar::reset`] takes it to restore the
/// variable's previous state: PEP 567's `contextvars.Token`.
///
/// A token can be used once: `reset` takes it by value. It is accepted only by the
/// variable that created it, in the context it was created in.
///
/// # Variance
///
/// A token is invariant in `T`: a covariant one could be retyped by subtyping (as
/// `for<'a> fn(&'a u8)` to `fn(&'static u8)`) and its old value read as the wrong type.
///
/// ```compile_fail
/// use ctx_vars::Token;
///
/// fn retype(token: Token<for<'a> fn(&'a u8)>) -> Token<fn(&'static u8)> {
///     token
/// }
/// ```
pub struct Token<T> {
    var_id: u32,
    var_name: &'static str,
    context_id: u64,
    old: Option<Value>,
    _value: Invariant<T>,
}

impl<T: 'static> Token<T> {
    pub(crate) fn new(
        var_id: u32,
        var_name: &'static str,
        context_id: u64,
        old: Option<Value>,
    ) -> Self {
        Token {
            var_id,
            var_name,
            context_id,
            old,
            _value: PhantomData,
        }
    }

    /// A token no variable accepts: variable ids start at 1.
    fn disarmed() -> Self {
        Token::new(0, "", 0, None)
    }

    fn is_disarmed(&self) -> bool {
        self.var_id == 0
    }

    pub(crate) fn context_id(&self) -> u64 {
        self.context_id
    }

    pub(crate) fn into_parts(self) -> (u32, u64, Option<Value>) {
        (self.var_id, self.context_id, self.old)
    }

    /// The value the variable had before the `set`; `None` where it was not set
    /// (PEP 567's `Token.MISSING`). A default does not count as a value.
    pub fn old_value(&self) -> Option<&T> {
        self.old.as_ref().map(Value::downcast)
    }

    /// The name of the variable that created this token.
    pub fn var_name(&self) -> &'static str {
        self.var_name
    }
}

impl<T> fmt::Debug for Token<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("var_name", &self.var_name)
            .field("had_old_value", &self.old.is_some())
            .finish_non_exhaustive()
    }
}

/// Resets a variable when dropped; returned by [`ContextVar::set_scoped`].
///
/// Keep it in the same task (or `Context::run`) that created it; it may be held across
/// `.await`s there. Guards of one variable nest: the latest one resets first. Two
/// `join!` branches share their task's context, so guards held in both would reset out
/// of order and leave a value behind; a guard refuses that (see below) rather than
/// silently keep a value. Give each branch a context of its own instead, with
/// `.in_current_context()` or [`ContextVar::scope`].
///
/// # Panics
///
/// On drop, unless the thread is already panicking, if the reset fails:
/// - the guard is dropped in a different context from the one it was created in (moved
///   into another task or thread, or into a [`ContextVar::sync_scope`], which runs in a
///   copy);
/// - a later set of the variable is still in place (a guard dropped out of order, as in
///   two `join!` branches, or a plain `set` after the guard's that was never reset):
///   resetting now would throw that value away, or bring back one that was reset. The
///   later value stays; the guard's own set is undone as soon as a reset of the later
///   one brings the guard's value back (as when the other branch's guard drops while
///   the panic unwinds), so that it never outlives them.
///
/// Use [`ResetGuard::reset`] to handle these as errors instead.
///
/// # Variance
///
/// A guard is invariant in `T`, as [`Token`] and [`ContextVar`] are: it cannot be
/// retyped by subtyping, and reset a variable with a value of another type.
///
/// ```compile_fail
/// use ctx_vars::ResetGuard;
///
/// fn retype<'g>(
///     guard: ResetGuard<'g, for<'a> fn(&'a u8)>,
/// ) -> ResetGuard<'g, fn(&'static u8)> {
///     guard
/// }
/// ```
#[must_use = "the variable is reset as soon as the guard is dropped"]
pub struct ResetGuard<'a, T: Send + Sync + 'static> {
    var: &'a ContextVar<T>,
    /// [`Token::disarmed`] once the guard has been used up.
    token: Token<T>,
    /// The value the guard's `set` wrote, to tell whether it is still the latest.
    written: Option<Value>,
}

impl<'a, T: Send + Sync + 'static> ResetGuard<'a, T> {
    pub(crate) fn new(var: &'a ContextVar<T>, token: Token<T>, written: Option<Value>) -> Self {
        ResetGuard {
            var,
            token,
            written,
        }
    }

    /// The token the guard will reset with.
    pub fn token(&self) -> &Token<T> {
        &self.token
    }

    /// Resets now, returning the outcome instead of panicking.
    ///
    /// # Errors
    ///
    /// As [`ContextVar::reset`], and [`ResetError::Superseded`] while a later set of the
    /// variable is still in place. Nothing changes on error.
    pub fn reset(mut self) -> Result<(), ResetError> {
        self.reset_now(false)
    }

    /// Disarms the guard: the value stays set, and the token is the caller's.
    pub fn into_token(mut self) -> Token<T> {
        self.take()
    }

    fn take(&mut self) -> Token<T> {
        std::mem::replace(&mut self.token, Token::disarmed())
    }

    /// Resets; with `abandon`, a reset refused as superseded is remembered, to be
    /// undone when the later sets are (see `Drop`).
    fn reset_now(&mut self, abandon: bool) -> Result<(), ResetError> {
        let token = self.take();
        self.var
            .reset_checked(token, self.written.as_ref(), abandon)
    }
}

impl<T: Send + Sync + 'static> Drop for ResetGuard<'_, T> {
    fn drop(&mut self) {
        if self.token.is_disarmed() {
            return;
        }
        let context = self.token.context_id();
        // Superseded: the later set's value stays (throwing it away would hide it from
        // code still running), and this guard's set is undone as soon as the later sets
        // are, so that nothing this guard set outlives them.
        let error = match self.reset_now(true) {
            Ok(()) | Err(ResetError::ThreadExiting) => return,
            Err(_) if std::thread::panicking() => return,
            Err(error) => error,
        };
        let name = self.var.name();
        // The guard's context is current, but hidden by a scope opened after the guard.
        let in_later_scope =
            || crate::current::read(|current| current.overlays_hide(context)).unwrap_or(false);
        match error {
            ResetError::Superseded => panic!(
                "ctx: ResetGuard for {name:?} dropped while a later set of {name:?} is still \
                 in place, so resetting would lose that value. Guards of one variable must \
                 be dropped in reverse order; two `join!`/`select!` branches of one task \
                 share its context, so give each branch its own with \
                 `.in_current_context()` or `{name}.scope(value, fut)`"
            ),
            ResetError::WrongContext if in_later_scope() => panic!(
                "ctx: ResetGuard for {name:?} dropped inside a `sync_scope` opened after it, \
                 in the same task: the scope runs in a copy of the context. Drop the guard \
                 before the scope, or after it returns"
            ),
            error => panic!(
                "ctx: ResetGuard for {name:?} dropped in another context than the one that \
                 created it (another task or thread): {error}"
            ),
        }
    }
}

impl<T: Send + Sync + 'static> fmt::Debug for ResetGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResetGuard")
            .field("token", &self.token)
            .finish()
    }
}
