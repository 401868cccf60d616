//! [`Stamp`]: whether a context still holds exactly the values it held, without holding them.

use crate::Context;
use crate::current;

/// A mark of the values a context holds at one moment, that keeps none of them alive:
/// [`Stamp::is_current`] later tells whether the calling thread's current context holds
/// exactly those values still, in one comparison.
///
/// For caches of work derived from a context's values (a log line's rendered fields,
/// say): a [`Context`] copy would tell the same, but would keep every value alive for
/// as long as the cache holds it, a database transaction included.
///
/// A match is exact: a context that matches holds the very values it held when the
/// stamp was taken. A mismatch is conservative: a context that was written to and then
/// put back (a `set` undone by `reset`, a `sync_scope` left) holds the same values but
/// no longer matches.
///
/// ```
/// use ctx_vars::{Context, ContextVar};
///
/// static USER: ContextVar<String> = ContextVar::new("user");
///
/// # Context::new().run(|| {
/// USER.set("ada".to_string());
/// let stamp = Context::current().stamp();
/// assert!(stamp.is_current());
/// USER.set("grace".to_string());
/// assert!(!stamp.is_current());
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// The map's generation: 0 when empty, else a number its root was given after the
    /// last write to it (on the first stamp since), which no other root is ever given.
    /// Copies share the root, and with it the number; a write (in place or into a copy)
    /// takes it away, and the next stamp draws a new one.
    generation: u64,
}

impl Context {
    /// A [`Stamp`] of the values this context holds now.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            generation: self.map.generation(),
        }
    }
}

impl Stamp {
    /// Whether `context` holds exactly the values it (or the context it was copied
    /// from) held when this stamp was taken.
    pub fn matches(&self, context: &Context) -> bool {
        context.map.generation() == self.generation
    }

    /// Whether the calling thread's current context holds exactly the values of the
    /// stamped one: [`matches`](Stamp::matches) on the current context, without
    /// copying it. `false` while the thread is exiting.
    #[inline]
    pub fn is_current(&self) -> bool {
        current::with(|context| self.matches(context)).unwrap_or(false)
    }
}
