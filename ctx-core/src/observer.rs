//! Observers of context switches: code that keeps another library's per-thread state
//! in step with the current context.
//!
//! Some libraries keep their own "current" value per thread: OpenTelemetry's current
//! `Context`, a logger's mapped diagnostic context. A value of theirs stored in a ctx
//! variable follows ctx everywhere (into spawned tasks, across threads), but their
//! thread-local does not. An [`Observer`] is told each time a context is entered on a
//! thread ([`Context::run`](crate::Context::run), each poll of a
//! [`WithContext`](crate::WithContext), an [`Entry`](crate::Entry), a
//! [`sync_scope`](crate::ContextVar::sync_scope), which runs in a copy) and each time it
//! is left, so it can attach its value from the entered context and detach it again.
//!
//! The hot path pays one atomic load when no observer is installed: observers are
//! installed for the life of the process, in a fixed number of slots, and never removed.
//!
//! ```
//! use std::cell::Cell;
//! use ctx_vars::{Context, ContextVar, observer::{self, Observer}};
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

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

/// Told of every context switch on every thread: see the [module docs](self).
///
/// Calls come in nested pairs on each thread: `entered` when a context has been made
/// current, `leaving` when it is about to stop being current (on return, on panic, and
/// when a future is dropped inside its context). Both run with the context in question
/// current, outside ctx's own borrows: they may read and set variables.
///
/// They should not panic. If one does, the thread is still put back in the right
/// context: a panic in `entered` leaves the context again (telling `leaving` to the
/// observers told of the entry, the panicking one excepted) and goes on; a panic in
/// `leaving` is caught, the other observers are told, the previous context is made
/// current, and then the panic goes on (or is dropped, if a panic is unwinding already).
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

/// How many observers are installed (slots fill in order).
#[inline]
pub(crate) fn installed() -> u32 {
    // The first empty slot ends the list: the common case, none, is one load.
    if OBSERVERS[0].get().is_none() {
        return 0;
    }
    count()
}

#[inline(never)]
fn count() -> u32 {
    let count = OBSERVERS
        .iter()
        .take_while(|slot| slot.get().is_some())
        .count();
    // At most `MAX_OBSERVERS`.
    count as u32
}

/// Tells the first `installed` observers that a context was entered, counting in
/// `told` each one that returned; stops at the first that panics, and gives its panic
/// back, so that the frame can be closed (telling exactly the `told` ones) before the
/// panic goes on.
// Out of line: the path without observers stays a load and a branch.
#[inline(never)]
pub(crate) fn tell_entered(installed: u32, told: &mut u32) -> Option<Box<dyn Any + Send>> {
    for observer in OBSERVERS[..installed as usize]
        .iter()
        .filter_map(OnceLock::get)
    {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| observer.entered())) {
            return Some(payload);
        }
        *told += 1;
    }
    None
}

/// Tells the first `told` observers, in the reverse order, that the context entered
/// last is about to be left. Every one is told even if one panics: the first panic is
/// given back, to be resumed once the thread is back in the previous context.
#[inline(never)]
pub(crate) fn tell_leaving(told: u32) -> Option<Box<dyn Any + Send>> {
    let mut panicked = None;
    for observer in OBSERVERS[..told as usize]
        .iter()
        .rev()
        .filter_map(OnceLock::get)
    {
        let outcome = catch_unwind(AssertUnwindSafe(|| observer.leaving()));
        if let Err(payload) = outcome {
            panicked.get_or_insert(payload);
        }
    }
    panicked
}
