//! [`Token`] and [`ResetGuard`]: undoing a [`ContextVar::set`].

use std::fmt;
use std::marker::PhantomData;

use crate::ContextVar;
use crate::error::ResetError;
use crate::map::Value;
use crate::var::downcast;

/// Returned by [`ContextVar::set`]; [`ContextVar::reset`] takes it to restore the
/// variable's previous state: PEP 567's `contextvars.Token`.
///
/// A token can be used once: `reset` takes it by value. It is accepted only by the
/// variable that created it, in the context it was created in.
pub struct Token<T> {
    var_id: u32,
    var_name: &'static str,
    context_id: u64,
    old: Option<Value>,
    _value: PhantomData<T>,
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

    pub(crate) fn into_parts(self) -> (u32, u64, Option<Value>) {
        (self.var_id, self.context_id, self.old)
    }

    /// The value the variable had before the `set`; `None` where it was not set
    /// (PEP 567's `Token.MISSING`). A default does not count as a value.
    pub fn old_value(&self) -> Option<&T> {
        self.old.as_deref().map(downcast)
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
/// `.await`s there.
///
/// # Panics
///
/// On drop, if the reset fails because the guard was dropped in a different context from
/// the one it was created in (moved into another task or thread), unless the thread is
/// already panicking. Use [`ResetGuard::reset`] to handle that case as an error instead.
#[must_use = "the variable is reset as soon as the guard is dropped"]
pub struct ResetGuard<'a, T: Send + Sync + 'static> {
    var: &'a ContextVar<T>,
    /// [`Token::disarmed`] once the guard has been used up.
    token: Token<T>,
}

impl<'a, T: Send + Sync + 'static> ResetGuard<'a, T> {
    pub(crate) fn new(var: &'a ContextVar<T>, token: Token<T>) -> Self {
        ResetGuard { var, token }
    }

    /// The token the guard will reset with.
    pub fn token(&self) -> &Token<T> {
        &self.token
    }

    /// Resets now, returning the outcome instead of panicking.
    ///
    /// # Errors
    ///
    /// As [`ContextVar::reset`].
    pub fn reset(mut self) -> Result<(), ResetError> {
        self.var.reset(self.take())
    }

    /// Disarms the guard: the value stays set, and the token is the caller's.
    pub fn into_token(mut self) -> Token<T> {
        self.take()
    }

    fn take(&mut self) -> Token<T> {
        std::mem::replace(&mut self.token, Token::disarmed())
    }
}

impl<T: Send + Sync + 'static> Drop for ResetGuard<'_, T> {
    fn drop(&mut self) {
        if self.token.is_disarmed() {
            return;
        }
        match self.var.reset(self.take()) {
            Ok(()) | Err(ResetError::ThreadExiting) => {}
            Err(error) if !std::thread::panicking() => {
                panic!(
                    "ctx: ResetGuard for {:?} dropped in the wrong place: {error}",
                    self.var.name()
                )
            }
            Err(_) => {}
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
