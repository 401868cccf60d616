//! The current context of each thread, and the one place it is swapped.
//!
//! Every thread has one [`Context`] slot. Reads borrow it shared; writes borrow it
//! mutably for a few instructions. Entering a context ([`Context::run`], each poll of a
//! [`WithContext`](crate::WithContext)) swaps the entered context *into* the slot and the
//! previous one out, and swaps them back when the guard drops, on return, on panic, or
//! when a future is dropped. A swap moves three words: no reference count changes, no
//! allocation, nothing dropped.
//!
//! The discipline that keeps this sound: no user code (a value's `Drop`, a default
//! builder, a callback) runs while the slot is mutably borrowed. Values that a write
//! displaces are carried out of the borrow and dropped after it ends.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Context;
use crate::error::AccessError;

thread_local! {
    static CURRENT: RefCell<Context> = const { RefCell::new(Context::new()) };
}

/// Runs `f` with the current context borrowed shared.
///
/// Fails only while the thread-local is being torn down.
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(&Context) -> R) -> Result<R, AccessError> {
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
pub(crate) fn with_mut<R>(f: impl FnOnce(&mut Context) -> R) -> Result<R, AccessError> {
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
    with_mut(|current| std::mem::swap(current, ctx))?;
    Ok(Entered { ctx })
}

/// Restores the previous current context when dropped.
pub(crate) struct Entered<'a> {
    ctx: &'a mut Context,
}

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        // Cannot fail: `enter` succeeded, so the slot is alive, and nothing on this
        // thread can hold a borrow across the scope of a guard.
        let _ = with_mut(|current| std::mem::swap(current, self.ctx));
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
