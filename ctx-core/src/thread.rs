//! Threads that start in a copy of their creator's context.
//!
//! A plain [`std::thread::spawn`] starts with an empty context, like any new thread.
//! These functions capture [`Context::inherited`] at the call (the current context
//! without the variables that do not travel) and run the closure in it.

use std::io;
use std::thread::{Builder, JoinHandle, Scope, ScopedJoinHandle};

use crate::Context;

/// [`std::thread::spawn`], with the new thread running in a copy of the caller's
/// current context (taken at this call, without variables declared
/// [`inherit(false)`](crate::ContextVar::inherit)).
///
/// ```
/// use ctx_vars::{Context, ContextVar};
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
/// # Context::new().run(|| {
/// USER.set("ada");
/// let seen = ctx_vars::thread::spawn(|| {
///     let seen = USER.get();
///     USER.set("grace"); // stays in the thread
///     seen
/// })
/// .join()
/// .unwrap();
/// assert_eq!(seen, Some("ada"));
/// assert_eq!(USER.get(), Some("ada"));
/// assert_eq!(std::thread::spawn(|| USER.get()).join().unwrap(), None);
/// # });
/// ```
///
/// # Panics
///
/// As [`std::thread::spawn`], if the OS fails to create a thread.
pub fn spawn<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    std::thread::spawn(Context::inherited().wrap(f))
}

/// [`std::thread::Builder::spawn`], with the new thread running in a copy of the
/// caller's current context.
///
/// # Errors
///
/// As [`std::thread::Builder::spawn`], if the OS fails to create a thread.
pub fn spawn_with<F, R>(builder: Builder, f: F) -> io::Result<JoinHandle<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    builder.spawn(Context::inherited().wrap(f))
}

/// [`std::thread::Scope::spawn`], with the scoped thread running in a copy of the
/// caller's current context.
///
/// ```
/// use ctx_vars::{Context, ContextVar};
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
/// # Context::new().run(|| {
/// USER.set("ada");
/// std::thread::scope(|s| {
///     let child = ctx_vars::thread::spawn_scoped(s, || USER.get());
///     assert_eq!(child.join().unwrap(), Some("ada"));
/// });
/// # });
/// ```
pub fn spawn_scoped<'scope, F, R>(
    scope: &'scope Scope<'scope, '_>,
    f: F,
) -> ScopedJoinHandle<'scope, R>
where
    F: FnOnce() -> R + Send + 'scope,
    R: Send + 'scope,
{
    scope.spawn(Context::inherited().wrap(f))
}
