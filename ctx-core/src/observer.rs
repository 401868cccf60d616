//! Observers of context switches: code that keeps another library's per-thread state
//! in step with the current context.
//!
//! Some libraries keep their own "current" value per thread: OpenTelemetry's current
//! `Context`, a logger's mapped diagnostic context. A value of theirs stored in a ctx
//! variable follows ctx everywhere (into spawned tasks, across threads), but their
//! thread-local does not. An [`Observer`] is told each time a context is entered on a
//! thread ([`Context::run`](crate::Context::run), each poll of a
//! [`WithContext`](crate::WithContext)) and each time it is left, so it can attach its
//! value from the entered context and detach it again.
//!
//! The hot path pays one atomic load when no observer is installed: observers are
//! installed for the life of the process, in a fixed number of slots, and never removed.
//!
//! ```
//! use std::cell::Cell;
//! use ctx_core::{Context, ContextVar, observer::{self, Observer}};
//!
//! static USER: ContextVar<&str> = ContextVar::new("user");
//!
//! thread_local! {
//!     /// Another library's idea of the current user.
//!     static LEGACY_USER: Cell<Option<&'static str>> = const { Cell::new(None) };
//! }
//!
//! /// Keeps `LEGACY_USER` in step with `USER`.
//! struct Bridge;
//! impl Observer for Bridge {
//!     fn entered(&self) {
//!         LEGACY_USER.set(USER.get());
//!     }
//!     fn leaving(&self) {
//!         LEGACY_USER.set(None);
//!     }
//! }
//!
//! observer::install(Box::new(Bridge)).unwrap();
//! Context::new().with_value(&USER, "ada").run(|| {
//!     assert_eq!(LEGACY_USER.get(), Some("ada"));
//! });
//! assert_eq!(LEGACY_USER.get(), None);
//! ```

use std::fmt;
use std::sync::OnceLock;

/// Told of every context switch on every thread: see the [module docs](self).
///
/// Calls come in nested pairs on each thread: `entered` when a context has been made
/// current, `leaving` when it is about to stop being current (on return, on panic, and
/// when a future is dropped inside its context). Both run with the context in question
/// current, outside ctx's own borrows: they may read and set variables. They must not
/// panic: `leaving` also runs while a panic unwinds, where a second panic aborts.
pub trait Observer: Send + Sync + 'static {
    /// A context was entered on this thread and is now current.
    fn entered(&self);

    /// The context entered last on this thread is about to be left.
    fn leaving(&self);
}

/// How many observers a process can install.
pub const MAX_OBSERVERS: usize = 4;

static OBSERVERS: [OnceLock<Box<dyn Observer>>; MAX_OBSERVERS] =
    [const { OnceLock::new() }; MAX_OBSERVERS];

/// Installs `observer` for the rest of the process.
///
/// # Errors
///
/// Gives the observer back when [`MAX_OBSERVERS`] are installed already.
pub fn install(observer: Box<dyn Observer>) -> Result<(), Full> {
    let mut observer = observer;
    for slot in &OBSERVERS {
        match slot.set(observer) {
            Ok(()) => return Ok(()),
            Err(back) => observer = back,
        }
    }
    Err(Full(observer))
}

/// The error of [`install`]: every slot is taken. Holds the observer.
pub struct Full(pub Box<dyn Observer>);

impl fmt::Debug for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {MAX_OBSERVERS} context observer slots are taken")
    }
}

impl std::error::Error for Full {}

/// Tells the observers that a context was entered; how many there were, so that the
/// same ones, and only they, are told when it is left (an observer installed in
/// between was not told of the entry).
#[inline]
pub(crate) fn entered() -> usize {
    let told = installed();
    tell_entered(told);
    told
}

/// How many observers are installed (slots fill in order).
#[inline]
pub(crate) fn installed() -> usize {
    // The first empty slot ends the list: the common case, none, is one load.
    if OBSERVERS[0].get().is_none() {
        return 0;
    }
    count()
}

#[inline(never)]
fn count() -> usize {
    OBSERVERS
        .iter()
        .take_while(|slot| slot.get().is_some())
        .count()
}

/// Tells the first `told` observers that a context was entered.
#[inline]
pub(crate) fn tell_entered(told: usize) {
    if told > 0 {
        notify_entered(told);
    }
}

// Out of line: the path without observers stays a load and a branch.
#[inline(never)]
fn notify_entered(told: usize) {
    OBSERVERS[..told]
        .iter()
        .filter_map(OnceLock::get)
        .for_each(|observer| observer.entered());
}

/// Tells the first `told` observers, in the reverse order, that the context entered
/// last is about to be left.
#[inline(never)]
pub(crate) fn leaving(told: usize) {
    if told == 1 {
        // The common case: one observer, no loop.
        if let Some(observer) = OBSERVERS[0].get() {
            observer.leaving();
        }
        return;
    }
    OBSERVERS[..told]
        .iter()
        .rev()
        .filter_map(OnceLock::get)
        .for_each(|observer| observer.leaving());
}
