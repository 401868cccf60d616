//! Errors returned by the fallible operations.

use std::fmt;

/// Why [`ContextVar::reset`](crate::ContextVar::reset) refused a token.
///
/// On error nothing changes: the current context keeps every value it had.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResetError {
    /// The token was returned by `set` on a different variable.
    WrongVar,
    /// The token was created in a different context (another task, another thread's
    /// context, or a copy of the one it came from).
    WrongContext,
    /// The thread's context storage is being torn down (the thread is exiting), or the
    /// `set` that returned the token happened while it was.
    ThreadExiting,
    /// A [`ResetGuard`](crate::ResetGuard) was reset while a later set of its variable
    /// was still in place (guards dropped out of order).
    Superseded,
}

impl fmt::Display for ResetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResetError::WrongVar => {
                "token was created by a different ContextVar; reset it with the variable whose `set` returned it"
            }
            ResetError::WrongContext => {
                "token was created in a different Context (another task or thread, a copy, or outside the `sync_scope` it is reset in); reset it in the same task or `Context::run` that called `set`, outside scopes opened after it"
            }
            ResetError::ThreadExiting => {
                "the thread's current context is being destroyed (thread exit); nothing to reset"
            }
            ResetError::Superseded => {
                "a later set of the variable is still in place; reset guards in reverse order of their sets"
            }
        })
    }
}

impl std::error::Error for ResetError {}

/// The thread's current context is no longer reachable because the thread is exiting
/// (its thread-locals are being destroyed).
///
/// Returned by the `try_` forms, such as [`ContextVar::try_set`](crate::ContextVar::try_set)
/// and [`Context::try_current`](crate::Context::try_current).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccessError {
    _private: (),
}

impl AccessError {
    pub(crate) const fn new() -> Self {
        AccessError { _private: () }
    }
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the thread's current context is being destroyed (thread exit)")
    }
}

impl std::error::Error for AccessError {}
