//! The current context of each thread, and the one place it is swapped.
//!
//! Every thread has one [`Context`] slot. Reads borrow it shared; writes borrow it
//! mutably for a few instructions. Entering a context ([`Context::run`], each poll of a
//! [`WithContext`](crate::WithContext)) swaps the entered context *into* the slot and the
//! previous one out, and swaps them back when the guard drops, on return, on panic, or
//! when a future is dropped; [observers](crate::observer) are told of both. A swap moves
//! two words: no reference count changes, no allocation, nothing dropped.
//!
//! [`ContextVar::sync_scope`](crate::ContextVar::sync_scope) must behave as if it ran its
//! closure in a copy of the current context with one more value. Copying the map's root
//! and dropping it again costs more than the closure usually does, so a scope instead
//! writes its value into the current map in place and undoes that write on exit. The
//! copy is made only if the closure itself sets a variable: the context then carries the
//! [`SCOPED`] identity, and [`Current::prepare_write`] first rebuilds the innermost
//! scope's "before" map. A snapshot taken inside the closure needs nothing: it shares the
//! map, and the undo copies on write like any other write.
//!
//! The discipline that keeps this sound: no user code (a value's `Drop`, a default
//! builder, a callback) runs while the slot is mutably borrowed. Values that a write
//! displaces are carried out of the borrow and dropped after it ends.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Context;
use crate::error::AccessError;
use crate::map::{Key, Map, Value};
use crate::observer;

thread_local! {
    static CURRENT: RefCell<Current> = const {
        RefCell::new(Current {
            context: Context::new(),
            scopes: Vec::new(),
            entered: 0,
            strict: false,
            attached: Vec::new(),
        })
    };
}

/// The context identity of a context inside a `sync_scope` that no `set` has written
/// to yet. Never handed out by [`next_context_id`], so no token carries it.
const SCOPED: u64 = u64::MAX;

/// The context identity of a token whose `set` found no context (the thread was
/// exiting). Never handed out by [`next_context_id`], so no context accepts it.
pub(crate) const NO_CONTEXT: u64 = u64::MAX - 1;

/// A thread's current context, and the `sync_scope`s open on it.
pub(crate) struct Current {
    pub(crate) context: Context,
    /// Innermost last. Scopes are closures, so they nest with `run` and polls: the
    /// innermost scope always belongs to the context that is current.
    scopes: Vec<Scope>,
    /// How many `run`s and polls are entered on this thread: 0 means the thread's own
    /// base context is current.
    entered: u32,
    /// Whether a `set` into the base context is refused (see [`crate::strict`]).
    pub(crate) strict: bool,
    /// What [`Context::attach`] swapped out, innermost last.
    attached: Vec<Attachment>,
}

/// What undoes one `sync_scope`.
struct Scope {
    var: Key,
    name: &'static str,
    /// The variable's value before the scope.
    old: Option<Value>,
    /// The context's identity before the scope.
    saved_id: u64,
    /// [`Current::entered`] when the scope opened: the scope belongs to the current
    /// context while the two are equal.
    entered_at: u32,
    /// The whole map before the scope, once a write inside it made undoing by hand
    /// impossible.
    saved: Option<Map>,
}

impl Current {
    /// Whether a `set` now would land in the thread's own base context, outside any
    /// entered context or scope, on a thread that refuses that.
    pub(crate) fn refuses_unscoped_set(&self) -> bool {
        self.strict && self.entered == 0 && self.scopes.is_empty()
    }

    /// Readies the current context for a `set`: gives it an identity for tokens, and
    /// inside a scope nobody has written to yet, first records the map that scope must
    /// restore.
    pub(crate) fn prepare_write(&mut self) -> u64 {
        match self.context.id {
            0 => self.context.id = next_context_id(),
            SCOPED => {
                // The innermost open scope belongs to this context, and nothing has
                // written to it yet. Scopes further out need nothing: they had no write
                // either, and this one will restore exactly what they saw.
                let scope = self
                    .scopes
                    .last_mut()
                    .expect("a scoped context has a scope open");
                let mut before = self.context.map.clone();
                // What this drops from `before` is still in the live map: nothing is freed.
                drop(before.restore(scope.var, scope.name, scope.old.clone()));
                scope.saved = Some(before);
                self.context.id = next_context_id();
            }
            _ => {}
        }
        self.context.id
    }

    /// Whether `id` is the identity the current context had before the `sync_scope`s
    /// now open in it: a token from there, reset inside such a scope, meets a copy.
    pub(crate) fn scopes_hide(&self, id: u64) -> bool {
        self.scopes
            .iter()
            .rev()
            .take_while(|scope| scope.entered_at == self.entered)
            .any(|scope| scope.saved_id == id)
    }
}

/// Runs `f` with the current context borrowed shared.
///
/// Fails only while the thread-local is being torn down.
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(&Context) -> R) -> Result<R, AccessError> {
    read(|current| f(&current.context))
}

/// Runs `f` with the thread's whole state borrowed shared.
#[inline]
pub(crate) fn read<R>(f: impl FnOnce(&Current) -> R) -> Result<R, AccessError> {
    CURRENT
        .try_with(|slot| f(&slot.borrow()))
        .map_err(|_| AccessError::new())
}

/// Runs `f` with the current context borrowed mutably. `f` must not run user code.
///
/// # Panics
///
/// If the current context is being read further up this thread's stack, which only a
/// value's `Clone` implementation (called by [`ContextVar::get`](crate::ContextVar::get))
/// can arrange.
#[inline]
pub(crate) fn with_mut<R>(f: impl FnOnce(&mut Current) -> R) -> Result<R, AccessError> {
    CURRENT
        .try_with(|slot| match slot.try_borrow_mut() {
            Ok(mut current) => f(&mut current),
            Err(_) => panic!(
                "ctx: the current context was changed from inside a value's `Clone` \
                 implementation while `ContextVar::get` was cloning it; `Clone` must not \
                 set variables or enter contexts (read with `ContextVar::with` instead)"
            ),
        })
        .map_err(|_| AccessError::new())
}

/// Makes `ctx` the current context until the returned guard drops.
///
/// While entered, `ctx` holds the previous current context; the guard swaps them back.
#[inline]
pub(crate) fn enter(ctx: &mut Context) -> Result<Entered<'_>, AccessError> {
    let observers = swap_in(ctx)?;
    Ok(Entered { ctx, observers })
}

/// Swaps `ctx` into the thread's slot (leaving the previous context in `ctx`) and tells
/// the observers; how many it told, for [`swap_out`].
#[inline]
fn swap_in(ctx: &mut Context) -> Result<usize, AccessError> {
    with_mut(|current| {
        std::mem::swap(&mut current.context, ctx);
        current.entered += 1;
    })?;
    // Outside the borrow: observers are user code.
    Ok(observer::entered())
}

/// Undoes [`swap_in`]: tells the observers, then swaps the previous context, held in
/// `ctx`, back into the slot (leaving the entered one in `ctx`).
#[inline]
fn swap_out(ctx: &mut Context, observers: usize) {
    if observers > 0 {
        observer::leaving(observers);
    }
    // Cannot fail: `swap_in` succeeded, so the slot is alive, and nothing on this
    // thread can hold a borrow across an entered context.
    let _ = with_mut(|current| {
        std::mem::swap(&mut current.context, ctx);
        current.entered -= 1;
    });
}

/// Restores the previous current context when dropped.
pub(crate) struct Entered<'a> {
    ctx: &'a mut Context,
    /// How many observers were told of the entry.
    observers: usize,
}

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        swap_out(self.ctx, self.observers);
    }
}

/// What [`attach`] swapped out: what [`detach`] needs to undo it.
struct Attachment {
    /// The context that was current before.
    previous: Context,
    /// How many observers were told of the entry.
    observers: usize,
    /// [`Current::entered`] once attached: leaving out of order is a bug to report.
    depth: u32,
}

/// Makes `ctx` current until [`detach`], keeping the previous one on the thread's own
/// stack: one borrow of the thread-local, for executors that call twice per poll.
#[inline]
pub(crate) fn attach(mut ctx: Context) -> Result<(), (Context, AccessError)> {
    // Counted before the swap and told after it: an observer installed in between is
    // told of neither the entry nor the exit.
    let observers = observer::installed();
    let swapped = with_mut(|current| {
        std::mem::swap(&mut current.context, &mut ctx);
        current.entered += 1;
        let depth = current.entered;
        current.attached.push(Attachment {
            previous: std::mem::take(&mut ctx),
            observers,
            depth,
        });
    });
    match swapped {
        Ok(()) => {
            observer::tell_entered(observers);
            Ok(())
        }
        Err(error) => Err((ctx, error)),
    }
}

/// Leaves the context [`attach`]ed last, giving it back as it is now; `None` if nothing
/// is attached on this thread (or the thread is exiting).
///
/// # Panics
///
/// If a context entered after it is still current.
#[inline]
pub(crate) fn detach() -> Option<Context> {
    // While unwinding, a second panic would abort: restore what can be restored.
    let check = !std::thread::panicking();
    if observer::installed() > 0 {
        // Checked before the observers are told, so that a refused detach tells them
        // nothing.
        let (observers, depths) = read(|current| {
            let top = current.attached.last()?;
            Some((top.observers, (top.depth, current.entered)))
        })
        .ok()
        .flatten()?;
        if check && depths.0 != depths.1 {
            out_of_order(depths);
        }
        if observers > 0 {
            observer::leaving(observers);
        }
    }
    let detached = with_mut(|current| {
        let attachment = current.attached.last()?;
        if check && attachment.depth != current.entered {
            return Some(Err((attachment.depth, current.entered)));
        }
        let attachment = current.attached.pop()?;
        current.entered -= 1;
        Some(Ok(std::mem::replace(
            &mut current.context,
            attachment.previous,
        )))
    })
    .ok()
    .flatten()?;
    match detached {
        Ok(context) => Some(context),
        Err(depths) => out_of_order(depths),
    }
}

/// The panic of a [`detach`] or [`leave_in_place`] from inside a context entered after the
/// one being left.
#[cold]
fn out_of_order((attached, found): (u32, u32)) -> ! {
    panic!(
        "ctx: a context attached with `Context::attach` or entered with \
         `Context::enter` (entry depth {attached}) was left while a context entered \
         after it was still current (depth {found}); leave `run`s and polls before \
         detaching"
    )
}

/// Makes `ctx` current *in place* when the current context is empty and has handed out
/// no token (a worker thread's own context, normally) and no observer is installed:
/// there is then nothing to keep aside, and `ctx` takes its place in the slot, leaving
/// that empty context in `ctx`. The depth entered, for [`leave_in_place`]; `None` (and
/// `ctx` untouched) when the caller must attach instead.
#[inline]
pub(crate) fn enter_in_place(ctx: &mut Context) -> Option<u32> {
    if observer::installed() > 0 {
        // Observers are told of every entry, with the context swapped in.
        return None;
    }
    with_mut(|current| {
        // No token carries identity 0, so none from outside could have reset in the
        // context that `leave_in_place` will put back.
        (current.context.id == 0 && current.context.map.is_empty()).then(|| {
            std::mem::swap(&mut current.context, ctx);
            current.entered += 1;
            current.entered
        })
    })
    .ok()
    .flatten()
}

/// Leaves the context [`enter_in_place`] entered at `depth`, giving it back as the code
/// that ran in it left it and leaving an empty context current, as it was.
///
/// # Panics
///
/// If a context entered after it is still current.
#[inline]
pub(crate) fn leave_in_place(depth: u32) -> Context {
    let left = with_mut(|current| {
        // While unwinding, a second panic would abort: restore what can be restored.
        if current.entered != depth && !std::thread::panicking() {
            return Err((depth, current.entered));
        }
        current.entered -= 1;
        // A move: nothing is dropped under the borrow.
        Ok(std::mem::take(&mut current.context))
    });
    match left {
        Ok(Ok(context)) => context,
        Ok(Err(depths)) => out_of_order(depths),
        // The thread is exiting: nothing is left to take.
        Err(_) => Context::new(),
    }
}

/// Gives the thread a new, empty base context in strict mode until the returned guard
/// drops: code run outside any entered context (an executor's unwrapped tasks) then
/// neither sees the caller's values nor can set any. The guard puts everything back.
pub(crate) fn enter_strict_base() -> Result<StrictBase, AccessError> {
    let saved = with_mut(|current| {
        let base = Current {
            context: Context::new(),
            scopes: Vec::new(),
            entered: 0,
            strict: true,
            attached: Vec::new(),
        };
        std::mem::replace(current, base)
    })?;
    Ok(StrictBase { saved: Some(saved) })
}

/// Restores the thread's state from before [`enter_strict_base`] when dropped.
pub(crate) struct StrictBase {
    saved: Option<Current>,
}

impl Drop for StrictBase {
    fn drop(&mut self) {
        let Some(saved) = self.saved.take() else {
            return;
        };
        // The strict base is dropped after the borrow ends. It holds no values unless
        // strict mode was turned off inside, but dropping values is user code.
        let _base = with_mut(|current| std::mem::replace(current, saved));
    }
}

/// Sets `var` to `value` in the current context until the returned guard drops, as if
/// in a copy of it: see the module documentation.
pub(crate) fn scope(var: Key, name: &'static str, value: Value) -> Result<Scoped, AccessError> {
    with_mut(|current| {
        let context = &mut current.context;
        let old = context.map.insert(var, name, value);
        let saved_id = std::mem::replace(&mut context.id, SCOPED);
        let entered_at = current.entered;
        current.scopes.push(Scope {
            var,
            name,
            old,
            saved_id,
            entered_at,
            saved: None,
        });
    })?;
    Ok(Scoped { _private: () })
}

/// Closes the innermost `sync_scope` when dropped: restores the map and identity the
/// context had before it.
pub(crate) struct Scoped {
    _private: (),
}

impl Drop for Scoped {
    fn drop(&mut self) {
        // Dropped after the borrow ends: the scope's value, or the map the closure
        // wrote to, may hold the last reference to values with a `Drop` of their own.
        let _displaced = with_mut(|current| {
            let scope = current.scopes.pop().expect("one frame per open scope");
            let context = &mut current.context;
            context.id = scope.saved_id;
            match scope.saved {
                // A write inside made the map differ by more than the scope's value.
                Some(before) => (Some(std::mem::replace(&mut context.map, before)), scope.old),
                None => (None, context.map.restore(scope.var, scope.name, scope.old)),
            }
        });
    }
}

/// Hands out context identities (for `ResetError::WrongContext`) without a shared
/// counter on the hot path: each thread reserves a block at a time.
pub(crate) fn next_context_id() -> u64 {
    const BLOCK: u64 = 1 << 16;
    static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    IDS.try_with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
            end = next + BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
    .unwrap_or_else(|_| NEXT_BLOCK.fetch_add(1, Ordering::Relaxed))
}
