//! The current context of each thread, and the one place it is swapped.
//!
//! Every thread has one [`Context`] slot. Reads borrow it shared (the read of a small
//! plain value, which runs no user code, without counting the borrow: [`peek`]);
//! writes borrow it mutably for a few instructions. The slot has no drop glue, so that
//! no access checks whether it was destroyed; the thread's first write registers the
//! [`Teardown`] that frees it at exit. Making a context current opens a *frame*, in one
//! of two ways:
//!
//! - [`Context::run`] and each poll (and the drop) of a [`WithContext`](crate::WithContext)
//!   enter with [`enter`], which *points* at the caller's own `Context`: the context stays
//!   where it is, borrowed by the guard for the frame's whole life, and the thread's
//!   [`Current::active`] pointer names it. Reads and writes go through that pointer, so a
//!   set lands in the caller's `Context` itself. The guard puts the previous pointer back
//!   when it drops: on return, on panic, or when a future is dropped. Opening and closing
//!   such a frame writes one word each way and counts no borrow, which is what keeps a
//!   poll cheap: swapping two words in and out of the slot, with the borrow flag and the
//!   depth count, chained each poll's loads behind the stores of the one before.
//!   [`strict::run`](crate::strict::run)'s empty strict base is entered the same way;
//! - [`Context::enter`] makes an [`Entry`](crate::Entry), for executors whose "before
//!   poll" and "after poll" are two calls: its context has no caller's stack to stay on,
//!   so it is *swapped* into the slot, the previous one kept on the thread's own stack
//!   of entries (with the pointer that was active) until
//!   [`Entry::leave`](crate::Entry::leave) (or its drop). A swap moves two words: no
//!   reference count changes, no allocation, nothing dropped.
//!
//! The thread's *depth* counts its open entries; a frame that points is known by its
//! context's address, which no other open frame shares. Frames close in the reverse
//! order. Observers are told of each entry once it is made and of each exit before it
//! is undone, outside every borrow; a panic in one cannot leave the thread in the wrong
//! context, since the guard already exists when they run, and the exit happens even
//! when one of them panics.
//!
//! Frames are left out of order only by misuse of an [`Entry`](crate::Entry) (one kept
//! past the `run` or poll it was entered in, or left while a later one is open). A
//! wrong value is worse than a missing one, so the thread is always put back as it was
//! before the outermost frame concerned, and the misuse then panics:
//! - a frame that closes with entries still open above it closes them first (their
//!   contexts are dropped: the entries can no longer be left);
//! - an entry left while later entries are open closes them, then itself;
//! - an entry left while a later `run`, poll or `sync_scope` is open cannot take the
//!   thread back without tearing that frame apart: it is marked *orphaned*, and closed
//!   as soon as the frames above it have closed.
//!
//! [`ContextVar::sync_scope`](crate::ContextVar::sync_scope) must behave as if it ran its
//! closure in a copy of the current context with one more value. Copying the map's root
//! and dropping it again costs more than the closure usually does, so a scope instead
//! lays its value over the current map in place (an *overlay*) and undoes that write on
//! exit. The copy is made only if the closure itself sets a variable: the context then
//! carries the [`OVERLAID`] identity, and [`Current::prepare_write`] first keeps the map
//! as the innermost overlay made it (on [`Current::opened`]), for its exit to put back
//! before undoing its value. A snapshot taken inside the closure needs nothing: it
//! shares the map, and the undo copies on write like any other write. What the value
//! displaced is kept by the scope's guard ([`Overlaid`]) on the caller's stack; the
//! thread keeps two words a scope, and the map only once a write needs it.
//!
//! The discipline that keeps this sound: no user code (a value's `Drop`, a default
//! builder, an observer) runs while the slot is mutably borrowed. Values that a write
//! displaces are carried out of the borrow and dropped after it ends. A frame that
//! points leaves its context where the caller keeps it, borrowed exclusively by the
//! guard until the guard drops, and the guard puts the previous pointer back before
//! that; what a read or write makes of the pointer lives only inside its closure, which
//! cannot outlive the frame it runs in.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Context;
use crate::error::AccessError;
use crate::map::{Key, Map};
use crate::observer;
use crate::value::{Value, WeakValue};

thread_local! {
    /// Never dropped by the standard library: a thread-local with drop glue checks on
    /// every access whether it was destroyed yet, three instructions of a `get` and of
    /// each half of a poll. [`Teardown`] empties it at thread exit instead.
    static CURRENT: ManuallyDrop<RefCell<Current>> =
        const { ManuallyDrop::new(RefCell::new(Current::empty())) };
    /// Registered by the first write on the thread (see [`with_mut`]).
    static TEARDOWN: Teardown = const { Teardown };
}

/// What frees a thread's state when the thread exits, and from then on refuses access
/// to it as an exiting thread's: [`with`], [`read`], [`peek`] and [`with_mut`] fail with
/// [`AccessError`], and what [`enter`]'s frames point at is never followed.
///
/// Only a write can leave anything in the slot to free: a frame puts back what it
/// changed before its caller returns, and every other change is a [`with_mut`],
/// which registers this first. A thread that never writes registers nothing, and its
/// state (an empty context) needs no freeing.
struct Teardown;

impl Drop for Teardown {
    fn drop(&mut self) {
        let left = CURRENT.with(|slot| {
            // Nothing is borrowed at thread exit: no frame is open.
            let mut current = slot.try_borrow_mut().ok()?;
            let left = std::mem::replace(&mut *current, Current::empty());
            // The slot stays borrowed for writing: every later access fails, which
            // tells the rest of the thread's exit (other thread-locals' destructors,
            // the `Drop` of the values freed below) that the thread is exiting.
            std::mem::forget(current);
            Some(left)
        });
        drop(left);
    }
}

/// The context identity of a context under a `sync_scope` overlay that no `set` has
/// written to yet. Never handed out by [`next_context_id`], so no token carries it.
const OVERLAID: u64 = u64::MAX;

/// The context identity of a token whose `set` found no context (the thread was
/// exiting). Never handed out by [`next_context_id`], so no context accepts it.
pub(crate) const NO_CONTEXT: u64 = u64::MAX - 1;

/// A thread's current context, and the frames open on it.
pub(crate) struct Current {
    /// The thread's own context, or the innermost entry's: current while no frame that
    /// points is open above the innermost entry.
    slot: Context,
    /// The current context: that of the innermost frame that points (see the module
    /// docs), opened since the innermost entry; else `slot`, or [`UNWRITTEN`] until
    /// the thread's first write. Never null, so that a read follows it without a test.
    /// A `Cell`, so that a frame sets it through a shared reference, counting no borrow.
    active: Cell<*mut Context>,
    /// How many entries are open on this thread (its depth: 0 while none is), and above
    /// [`ORPHANS`] how many of them are orphaned (see the module docs): one word, so that
    /// a frame's exit checks both, and its own observers, in one comparison with its
    /// [`Frame`].
    frames: u64,
    /// The innermost strict base ([`strict::run`](crate::strict::run)): the depth and
    /// the frame it was entered as (see [`Current::frame_context`]); 0 and null for the
    /// thread's own context. Where a strict thread refuses `set`s.
    base: (u32, *const Context),
    /// Whether a `set` at the base depth is refused (see [`crate::strict`]).
    pub(crate) strict: bool,
    /// The last serial handed to an entry: tells an entry's own frame from a later one
    /// at the same depth after a misuse closed it.
    serial: u64,
    /// What each open [`Entry`](crate::Entry) swapped out, innermost last.
    entries: Vec<Held>,
    /// The open `sync_scope` overlays, innermost last. They are closures, so they nest
    /// with the frames: the innermost belongs to the current context.
    overlays: Vec<Overlay>,
    /// For each open overlay that was written to inside, innermost last: the map as the
    /// scope made it. The overlay whose context no longer carries [`OVERLAID`] when it
    /// closes is the innermost that has one: a write inside a scope replaces that
    /// identity, and each scope opened after it puts back what it found.
    opened: Vec<Map>,
    /// Sets whose guards were dropped while a later set was in place, oldest first.
    abandoned: Vec<Abandoned>,
}

/// The set of a [`ResetGuard`](crate::ResetGuard) dropped while a later set of its
/// variable was still in place: see [`Current::abandon`].
struct Abandoned {
    context: u64,
    var: u32,
    /// The value the guard's set wrote: the one that, once back in place, is undone.
    written: WeakValue,
    /// What the guard would have restored.
    old: Option<Value>,
}

/// How many abandoned sets a thread remembers; the oldest is forgotten first.
const ABANDONED: usize = 16;

/// The frame of an open [`Entry`](crate::Entry).
struct Held {
    serial: u64,
    frame: Frame,
    /// What the slot held before.
    previous: Context,
    /// The active pointer before: what was current, with `previous`.
    active: *mut Context,
    /// Left out of order under a later frame: closes when the frames above it have.
    orphaned: bool,
}

/// What the thread keeps of an open `sync_scope` (its guard, [`Overlaid`], keeps the
/// value it displaced). Two words, written in place: a record built on the stack and
/// copied into the vector stalled the store buffer, a third of the scope's time.
struct Overlay {
    /// The context's identity before the scope.
    saved_id: u64,
    /// [`Current::depth`] and [`Current::active`] when the scope opened: it belongs to
    /// the current context while both are the same. (The scope's own write made the
    /// pointer name the slot if it named [`UNWRITTEN`], and only an entry's exit could
    /// put that back, which leaves an entry opened before the scope orphaned.)
    depth: u32,
    active: *mut Context,
}

impl Overlay {
    /// Whether the overlay is laid over the current context.
    #[inline]
    fn here(&self, current: &Current) -> bool {
        self.depth == current.depth() && self.active == current.active.get()
    }
}

/// What [`Current::active`] names on a thread that has not written yet: its own
/// context, empty, which only a write needs in the slot. Never written to: a write
/// moves the pointer to the slot first ([`Current::context_mut`]).
static UNWRITTEN: Context = Context::new();

/// [`UNWRITTEN`]'s address, as [`Current::active`] holds it.
const UNWRITTEN_CONTEXT: *mut Context = (&raw const UNWRITTEN).cast_mut();

/// Where the orphans' count starts in [`Current::frames`]: above a [`Frame`]'s depth
/// and observers.
const ORPHANS: u32 = 48;
/// Where the observers' count starts in a [`Frame`].
const OBSERVERS: u32 = 32;

/// What a frame's guard (or an entry's record) knows of its frame: its depth (for a
/// frame that points, how many entries were open when it opened), and above
/// [`OBSERVERS`] how many observers were told of its entry. One word, equal to
/// [`Current::frames`] exactly when no entry opened since is still open, no observer
/// was told and no orphan is new: when it can close without the slow path.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Frame(u64);

impl Frame {
    /// A frame at `depth` whose observers are not told yet.
    #[inline]
    fn at(depth: u32) -> Self {
        Frame(u64::from(depth))
    }

    #[inline]
    fn depth(self) -> u32 {
        self.0 as u32
    }

    #[inline]
    fn observers(self) -> u32 {
        (self.0 >> OBSERVERS) as u32
    }

    /// Whether it can close without the slow path (see [`Frame`]).
    #[inline]
    fn closes_cleanly(self, frames: u64) -> bool {
        self.0 == frames
    }

    /// Tells the observers of the frame's entry, and records how many were told; the
    /// panic of one that panicked, to be resumed with the frame's guard alive, which
    /// then tells those told of the exit and puts the thread back as the panic unwinds.
    /// While a panic unwinds already (a future dropped in its context), a second one
    /// would abort: the frame then stays entered as if the observer had returned.
    fn tell_entered(&mut self, installed: u32) -> Option<Box<dyn Any + Send>> {
        let mut told = 0;
        let panicked = observer::tell_entered(installed, &mut told);
        self.0 |= u64::from(told) << OBSERVERS;
        panicked
    }
}

impl Current {
    /// A thread's state before its first write: its own context, empty.
    const fn empty() -> Current {
        Current {
            slot: Context::new(),
            active: Cell::new(UNWRITTEN_CONTEXT),
            frames: 0,
            base: (0, ptr::null()),
            strict: false,
            serial: 0,
            entries: Vec::new(),
            overlays: Vec::new(),
            opened: Vec::new(),
            abandoned: Vec::new(),
        }
    }

    /// How many entries are open.
    #[inline]
    fn depth(&self) -> u32 {
        self.frames as u32
    }

    /// The slot's address, to compare [`Current::active`] with (see [`slot_pointer`]
    /// for one to follow).
    #[inline(always)]
    fn slot_context(&self) -> *mut Context {
        ptr::from_ref(&self.slot).cast_mut()
    }

    /// The context of the innermost frame that points, if one is open above the
    /// innermost entry; null when the slot's context is current.
    #[inline]
    fn frame_context(&self) -> *const Context {
        let active = self.active.get();
        if active == UNWRITTEN_CONTEXT || active == self.slot_context() {
            return ptr::null();
        }
        active
    }

    /// The current context, read through the pointer with no test: for a borrow of the
    /// slot counted as shared or not counted at all ([`read`], [`peek`]), never
    /// for one made from a mutable borrow, which a read through the slot's own pointer
    /// would end.
    #[inline(always)]
    #[expect(unsafe_code, reason = "reads the current context through its pointer")]
    fn reading(&self) -> &Context {
        // SAFETY: `active` names a live context (see `context`); when that is the slot,
        // the pointer comes from the `RefCell`'s own (`slot_pointer`), and a read
        // through it is a shared read of the slot like the caller's own.
        unsafe { &*self.active.get() }
    }

    /// The current context.
    #[inline(always)]
    #[expect(unsafe_code, reason = "reads the context of a frame that points")]
    pub(crate) fn context(&self) -> &Context {
        let active = self.active.get();
        if active == self.slot_context() {
            return &self.slot;
        }
        // SAFETY: `active` is `UNWRITTEN` (a static never written to) or the context of
        // an open frame that points, exclusively borrowed by its guard, which puts back
        // the pointer it replaced before that borrow ends; nothing else reaches that
        // context meanwhile. The frame outlives `self`'s borrow: borrows of the slot live
        // inside closures run further down the stack than the frame's guard.
        unsafe { &*active }
    }

    /// The current context, to write to.
    #[inline(always)]
    pub(crate) fn context_mut(&mut self) -> &mut Context {
        self.writing().0
    }

    /// The current context, to write to, and the maps the open overlays keep (a field
    /// apart, so that one lookup of the context serves a write that needs both).
    #[inline(always)]
    #[expect(unsafe_code, reason = "writes to the context of a frame that points")]
    fn writing(&mut self) -> (&mut Context, &mut Vec<Map>) {
        let active = self.active.get();
        if active == UNWRITTEN_CONTEXT {
            // The thread's first write: its own context goes where writes can reach it.
            self.active.set(slot_pointer());
            return (&mut self.slot, &mut self.opened);
        }
        if active == self.slot_context() {
            return (&mut self.slot, &mut self.opened);
        }
        // SAFETY: as in `context` (and `active` is not `UNWRITTEN`); the slot is
        // borrowed mutably, so no reference made by `context` is alive either.
        (unsafe { &mut *active }, &mut self.opened)
    }

    /// Whether a `set` now would land in the thread's own base context (or a strict
    /// base), outside any entered context or scope, on a thread that refuses that.
    pub(crate) fn refuses_unscoped_set(&self) -> bool {
        self.strict
            && (self.depth(), self.frame_context()) == self.base
            && self.overlays.last().is_none_or(|o| !o.here(self))
    }

    /// Readies the current context for a `set`: gives it an identity for tokens, and
    /// under an overlay nobody has written to yet, first records the map that overlay
    /// must restore. The identity, and the context to write to.
    #[inline]
    pub(crate) fn prepare_write(&mut self) -> (u64, &mut Context) {
        let (context, opened) = self.writing();
        if matches!(context.id, 0 | OVERLAID) {
            identify(context, opened);
        }
        (context.id, context)
    }

    /// Whether `id` is the identity the current context had before the `sync_scope`s
    /// now open in it: a token from there, reset inside such a scope, meets a copy.
    pub(crate) fn overlays_hide(&self, id: u64) -> bool {
        self.overlays
            .iter()
            .rev()
            .take_while(|o| o.here(self))
            .any(|o| o.saved_id == id)
    }

    /// Remembers the set of a guard dropped while a later set of `var` is in place (two
    /// `join!` branches' guards, say): the later value stays, and when a reset of
    /// the later set brings `written` back, [`Current::undo_abandoned`] undoes the
    /// guard's set too, as if the guards had been dropped in order. What it lets go of,
    /// to be dropped after the borrow.
    pub(crate) fn abandon(&mut self, var: Key, written: &Value, old: Option<Value>) -> Vec<Value> {
        let mut dropped = Vec::new();
        if self.abandoned.len() == ABANDONED {
            dropped.extend(self.abandoned.remove(0).old);
        }
        self.abandoned.push(Abandoned {
            context: self.context().id,
            var: var.id,
            written: written.downgrade(),
            old,
        });
        dropped
    }

    /// After a reset of `var`: while the value now in place is an abandoned set's, undoes
    /// that set too (see [`Current::abandon`]). What it displaced, to be dropped after the
    /// borrow.
    #[inline]
    pub(crate) fn undo_abandoned(&mut self, var: Key, name: &'static str) -> Vec<Value> {
        if self.abandoned.is_empty() {
            return Vec::new();
        }
        self.undo_abandoned_slow(var, name)
    }

    #[cold]
    #[inline(never)]
    fn undo_abandoned_slow(&mut self, var: Key, name: &'static str) -> Vec<Value> {
        let mut displaced = Vec::new();
        while let Some(now) = self.context().map.get(var) {
            let id = self.context().id;
            let found = self.abandoned.iter().position(|abandoned| {
                abandoned.context == id && abandoned.var == var.id && abandoned.written.is(now)
            });
            let Some(at) = found else { break };
            let abandoned = self.abandoned.remove(at);
            displaced.extend(self.context_mut().map.restore(var, name, abandoned.old));
        }
        displaced
    }

    /// The swap that opens an entry: `ctx` moves into the slot, which becomes current,
    /// and holds what the slot held. The new depth, and the pointer that was active.
    #[inline]
    fn swap_in(&mut self, ctx: &mut Context) -> (u32, *mut Context) {
        std::mem::swap(&mut self.slot, ctx);
        self.frames += 1;
        (self.depth(), self.active.replace(slot_pointer()))
    }

    /// The swap that closes the innermost entry: `ctx` and `active`, what was current
    /// before it, become current again, and `ctx` holds the context that is left.
    #[inline]
    fn swap_out(&mut self, ctx: &mut Context, active: *mut Context) {
        debug_assert!(self.frame_context().is_null(), "the entry is innermost");
        std::mem::swap(&mut self.slot, ctx);
        self.active.set(active);
        self.frames -= 1;
    }

    /// Whether the innermost entry is the innermost frame: no frame that points, opened
    /// since, is open.
    #[inline]
    fn entry_innermost(&self, held: &Held) -> bool {
        held.frame.depth() == self.depth() && self.frame_context().is_null()
    }

    /// Whether an overlay is open in the innermost frame: an entry that is innermost
    /// still has a scope open inside it.
    #[inline]
    fn overlaid_here(&self) -> bool {
        self.overlays.last().is_some_and(|o| o.here(self))
    }

    /// Whether anything other than entries is open above the entry at `depth`: a `run`,
    /// a poll or an overlay, whose state lives on the stack of the code that opened it.
    fn lexical_above(&self, depth: u32) -> bool {
        let slot = self.slot_context();
        !self.frame_context().is_null()
            || self
                .entries
                .iter()
                .any(|h| h.frame.depth() > depth && h.active != slot)
            || self.overlays.last().is_some_and(|o| o.depth >= depth)
    }
}

/// Runs `f` with the current context borrowed shared.
///
/// Fails only once the thread is exiting (see [`Teardown`]).
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(&Context) -> R) -> Result<R, AccessError> {
    read(|current| f(current.reading()))
}

/// Runs `f` with the thread's whole state borrowed shared.
#[inline]
pub(crate) fn read<R>(f: impl FnOnce(&Current) -> R) -> Result<R, AccessError> {
    // Borrowed for writing here only once torn down: `with_mut`'s closures run no user
    // code, so nothing reads while one is open.
    slot(|slot| match slot.try_borrow() {
        Ok(current) => Ok(f(&current)),
        Err(_) => Err(AccessError::new()),
    })
}

/// Runs `f` with the current context, without counting a borrow: [`with`] less the
/// increment and decrement of the `RefCell`'s flag, for the hottest read (a `get` of a
/// value stored inline), where those two stores were a tenth of the instructions.
///
/// # Safety
///
/// `f` must not run code that can borrow the thread-local mutably: no user code (a
/// value's `Clone` or `Drop`, a default builder, an observer), only reads of the map.
#[inline(always)]
#[expect(
    unsafe_code,
    reason = "reads the thread-local without counting the borrow"
)]
pub(crate) unsafe fn peek<R>(f: impl FnOnce(&Context) -> R) -> Result<R, AccessError> {
    slot(|slot| {
        // SAFETY: `try_borrow_unguarded` fails if a mutable borrow is open, and none can
        // be opened while the reference it gives lives: `f`, the only code that runs
        // before it is dropped, cannot open one (the caller guarantees it). It fails
        // only once the thread is torn down (see `read`).
        match unsafe { slot.try_borrow_unguarded() } {
            Ok(current) => Ok(f(current.reading())),
            Err(_) => Err(AccessError::new()),
        }
    })
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
    // What `f` leaves in the slot must be freed at thread exit. Once the teardown has
    // run this fails, and so does the borrow below.
    let _ = TEARDOWN.try_with(|_| ());
    swap(f)
}

/// [`with_mut`] for a scope's exit, which leaves nothing behind to free (see
/// [`Teardown`]) and so need not register the teardown.
#[inline(always)]
fn swap<R>(f: impl FnOnce(&mut Current) -> R) -> Result<R, AccessError> {
    slot(|slot| match slot.try_borrow_mut() {
        Ok(mut current) => Ok(f(&mut current)),
        Err(_) => Err(refused(slot)),
    })
}

/// The slot's context, as [`Current::active`] holds it: a pointer made from the
/// `RefCell`'s own, so that following it reads the slot as any borrow of the `RefCell`
/// does, which one made from a mutable borrow of it would not.
#[inline]
#[expect(unsafe_code, reason = "projects the thread-local's raw pointer")]
fn slot_pointer() -> *mut Context {
    let cell = CURRENT.with(|slot| slot.as_ptr());
    // SAFETY: `cell` points to the thread-local, alive for the thread; `&raw mut` makes
    // no reference, so it asserts nothing about borrows open on it.
    unsafe { &raw mut (*cell).slot }
}

/// Runs `f` with the thread's slot, unborrowed: the one access to [`CURRENT`] besides
/// [`slot_pointer`]'s.
#[inline(always)]
fn slot<R>(f: impl FnOnce(&RefCell<Current>) -> Result<R, AccessError>) -> Result<R, AccessError> {
    // `try_with` and not `with`, which moves the closure once more (and is out of line
    // with it): a thread-local without drop glue is never destroyed, so the outer
    // error never happens.
    CURRENT
        .try_with(|slot| f(slot))
        .unwrap_or_else(|_| Err(AccessError::new()))
}

/// Why the slot could not be borrowed for writing: torn down (borrowed for writing for
/// good), or read further up the stack, which is a misuse.
#[cold]
#[inline(never)]
fn refused(slot: &RefCell<Current>) -> AccessError {
    if slot.try_borrow().is_err() {
        return AccessError::new();
    }
    panic!(
        "ctx: the current context was changed from inside a value's `Clone` \
         implementation while `ContextVar::get` was cloning it; `Clone` must not \
         set variables or enter contexts (read with `ContextVar::with` instead)"
    )
}

/// Makes `ctx` the current context until the returned guard drops: opens a frame that
/// points (see the module docs).
///
/// Code run in the frame reads and writes `ctx` itself. While the thread is exiting,
/// reads in the frame see defaults and sets are dropped, as everywhere on such a thread.
#[inline(always)]
pub(crate) fn enter(ctx: &mut Context) -> Entered<'_> {
    let installed = observer::installed();
    if installed > 0 {
        // Apart, so that no call sits between the frame's opening and the code it runs:
        // after one, the guard's fields were loaded back from its stack slot, a wait on
        // the store just made between each poll's entry and its exit.
        return enter_told(ctx, installed);
    }
    point(ctx)
}

/// [`enter`] with observers to tell.
#[cold]
#[inline(never)]
fn enter_told(ctx: &mut Context, installed: u32) -> Entered<'_> {
    let mut entered = point(ctx);
    if torn_down() {
        // The thread is exiting: its context cannot be read, so there is nothing to tell.
        return entered;
    }
    let panicked = entered.frame.tell_entered(installed);
    // Resumed with the guard alive: dropped as the panic unwinds, it closes the frame.
    resume(panicked);
    entered
}

/// Opens the frame of [`enter`], telling no observer.
///
/// On an exiting thread too: the pointer is set and put back as ever, and nothing
/// follows it there, since every read and write checks the slot first and finds it
/// torn down.
#[inline(always)]
fn point(ctx: &mut Context) -> Entered<'_> {
    let me: *mut Context = ctx;
    let (previous, frame) = pointing(|frames, active| {
        // The depth alone: while an orphan waits, every frame closes the long way.
        (active.replace(me), Frame::at(frames as u32))
    });
    Entered {
        previous,
        frame,
        _borrow: PhantomData,
    }
}

/// Runs `f` with what a frame that points reads and sets of the thread's state: the
/// count of open entries and orphans ([`Current::frames`]), and the pointer. Neither
/// checks nor counts a borrow of the slot: a frame's two halves are a load and a store
/// each, which is what keeps a poll cheap.
#[inline(always)]
#[expect(
    unsafe_code,
    reason = "reads and sets two fields of the thread-local's state"
)]
fn pointing<R>(f: impl FnOnce(u64, &Cell<*mut Context>) -> R) -> R {
    let current = CURRENT.with(|slot| slot.as_ptr());
    // SAFETY: `current` points to the thread-local, alive for the thread. No mutable
    // borrow of it is in use here: `with_mut`'s closures run no user code, so no frame
    // opens or closes inside one, and the borrow a teardown leaves open is never used
    // again. `frames` is read by value, and the reference made is to the `Cell` alone,
    // which shared borrows of the slot allow writing through.
    let (frames, active) = unsafe { ((*current).frames, &(*current).active) };
    f(frames, active)
}

/// Whether the thread's state was torn down: the slot stays borrowed for writing.
#[cold]
fn torn_down() -> bool {
    CURRENT.with(|slot| slot.try_borrow().is_err())
}

/// The frame [`enter`] opened: closes it when dropped. Two words, that the guard's
/// drop on the unwinding path keeps on the stack: each one more there was a store the
/// exit loaded back.
pub(crate) struct Entered<'a> {
    /// The pointer that was active before.
    previous: *mut Context,
    frame: Frame,
    /// The context entered, which the thread's pointer names until the frame closes.
    _borrow: PhantomData<&'a mut Context>,
}

impl Drop for Entered<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let (previous, frame) = (self.previous, self.frame);
        // No entry opened since still open, no observers told, no new orphans: the
        // common case. Frames that point opened since have closed: they are lexical.
        let closed = pointing(|frames, active| {
            let clean = frame.closes_cleanly(frames);
            if clean {
                active.set(previous);
            }
            clean
        });
        if closed {
            return;
        }
        if torn_down() {
            // Nothing to tell or close on an exiting thread: observers were not told.
            pointing(|_, active| active.set(previous));
            return;
        }
        close_slow(frame, "`run`, poll or scope", |current| {
            current.active.set(previous);
        });
    }
}

/// Closes a `run`'s, a poll's or an overlay's frame the long way, `undo` being its own
/// closing step (what it returns is dropped after the borrow): with observers to tell,
/// entries left open above it (closed first, then reported as a misuse of the code
/// that opened `what`), or orphans below it to close after it.
#[cold]
#[inline(never)]
fn close_slow<R>(frame: Frame, what: &str, undo: impl FnOnce(&mut Current) -> R) {
    let depth = frame.depth();
    let leaked = close_entries(|held| held.frame.depth() > depth);
    let panicked = observer::tell_leaving(frame.observers());
    let _undone = with_mut(|current| {
        debug_assert_eq!(current.depth(), depth, "frames close in order");
        undo(current)
    });
    close_orphans();
    if leaked {
        misuse(&format!(
            "an `Entry` (from `Context::enter`) was still open when the {what} it was \
             entered in ended; its context was dropped. Leave an entry with `Entry::leave` \
             before that ends"
        ));
    }
    resume(panicked);
}

/// Closes the innermost entry while it is the innermost frame and `close` says so,
/// putting back what each swapped out and dropping its context; whether it closed any.
fn close_entries(close: impl Fn(&Held) -> bool) -> bool {
    let mut closed = false;
    loop {
        let top = read(|current| {
            current
                .entries
                .last()
                .filter(|held| current.entry_innermost(held) && close(held))
                .map(|held| (held.serial, held.frame.observers()))
        });
        let Ok(Some((serial, observers))) = top else {
            return closed;
        };
        // An observer's panic here would hide the misuse being reported.
        drop(observer::tell_leaving(observers));
        drop(pop_entry(serial));
        closed = true;
    }
}

/// Closes the orphaned entries that are now innermost: their frames above have closed.
fn close_orphans() {
    close_entries(|held| held.orphaned);
}

/// Pops the innermost entry, which is `serial`'s, and swaps back what it swapped out;
/// the context that is left. Tells no observer.
fn pop_entry(serial: u64) -> Option<Context> {
    with_mut(|current| {
        let held = current.entries.pop()?;
        debug_assert_eq!(held.serial, serial, "the innermost entry");
        if held.orphaned {
            current.frames -= 1 << ORPHANS;
        }
        let mut ctx = held.previous;
        current.swap_out(&mut ctx, held.active);
        Some(ctx)
    })
    .ok()
    .flatten()
}

/// Opens an entry's frame: `ctx` becomes current until [`leave`] with the returned
/// serial. The context is given back while the thread is exiting.
#[inline]
pub(crate) fn open(mut ctx: Context) -> Result<u64, (Context, AccessError)> {
    let opened = with_mut(|current| {
        let (depth, active) = current.swap_in(&mut ctx);
        current.serial += 1;
        let serial = current.serial;
        current.entries.push(Held {
            serial,
            frame: Frame::at(depth),
            previous: std::mem::take(&mut ctx),
            active,
            orphaned: false,
        });
        serial
    });
    match opened {
        Ok(serial) => {
            let installed = observer::installed();
            if installed > 0 {
                tell_entry_entered(serial, installed);
            }
            Ok(serial)
        }
        Err(error) => Err((ctx, error)),
    }
}

/// Tells the observers of an entry, and records how many were told; if one panics, the
/// entry is left before the panic goes on, so that no frame outlives its handle.
#[cold]
#[inline(never)]
fn tell_entry_entered(serial: u64, installed: u32) {
    let mut frame = Frame::at(0);
    let panicked = frame.tell_entered(installed);
    let _ = with_mut(|current| {
        if let Some(held) = current.entries.last_mut() {
            held.frame.0 |= frame.0;
        }
    });
    if let Some(payload) = panicked {
        if !std::thread::panicking() {
            drop(leave(serial));
            std::panic::resume_unwind(payload);
        }
    }
}

/// Closes the frame of the entry `serial`, and gives back its context as the code that
/// ran in it left it: see the module docs for an entry left out of order.
///
/// # Panics
///
/// If the entry is not the innermost frame, or was closed already by a misuse.
#[inline]
pub(crate) fn leave(serial: u64) -> Context {
    let fast = with_mut(|current| {
        let top = current.entries.last()?;
        // Innermost (no frame that points, opened since, is open), no observer told, no
        // orphan.
        let clean = top.serial == serial
            && top.frame.closes_cleanly(current.frames)
            && current.frame_context().is_null()
            && !current.overlaid_here();
        if !clean {
            return None;
        }
        let held = current.entries.pop()?;
        let mut ctx = held.previous;
        current.swap_out(&mut ctx, held.active);
        Some(ctx)
    });
    match fast {
        Ok(Some(ctx)) => ctx,
        Ok(None) => leave_slow(serial),
        // The thread is exiting: nothing is left to take.
        Err(_) => Context::new(),
    }
}

/// [`leave`] the long way: observers to tell, or the entry out of order.
#[cold]
#[inline(never)]
fn leave_slow(serial: u64) -> Context {
    let found = read(|current| {
        let at = current
            .entries
            .iter()
            .rposition(|held| held.serial == serial)?;
        let held = &current.entries[at];
        Some((
            held.frame.depth(),
            held.frame.observers(),
            current.lexical_above(held.frame.depth()),
        ))
    })
    .ok()
    .flatten();
    let Some((depth, observers, lexical_above)) = found else {
        misuse(
            "an `Entry` was left after its frame was closed: it was still open when the \
             `run`, poll or scope around it ended, or when an entry made before it was left",
        );
        return Context::new();
    };
    if lexical_above {
        // The frames above keep what they swapped out on their own stacks: leave
        // this entry to close once they have.
        let _ = with_mut(|current| {
            if let Some(held) = current.entries.iter_mut().find(|h| h.serial == serial) {
                held.orphaned = true;
                current.frames += 1 << ORPHANS;
            }
        });
        misuse(OUT_OF_ORDER);
        return Context::new();
    }
    let later = close_entries(|held| held.frame.depth() > depth);
    let panicked = observer::tell_leaving(observers);
    let ctx = pop_entry(serial).unwrap_or_default();
    close_orphans();
    if later {
        drop(ctx);
        misuse(OUT_OF_ORDER);
        return Context::new();
    }
    resume(panicked);
    ctx
}

const OUT_OF_ORDER: &str = "an `Entry` (from `Context::enter`) was left while a context \
    entered after it (a `run`, a poll, a `sync_scope` or a later entry) was still open; \
    the thread is put back as it was before the entry, and its context dropped. Leave \
    `run`s, polls, scopes and later entries first";

/// Reports a misuse of the frames, once the thread has been put back; quiet while a
/// panic unwinds, where a second one would abort.
#[cold]
fn misuse(message: &str) {
    if !std::thread::panicking() {
        panic!("ctx: {message}");
    }
}

/// Resumes an observer's panic caught while the thread was being put back.
fn resume(panicked: Option<Box<dyn Any + Send>>) {
    if let Some(payload) = panicked {
        if !std::thread::panicking() {
            std::panic::resume_unwind(payload);
        }
    }
}

/// Runs `f` on a new, empty base context in strict mode: code run outside any entered
/// context (an executor's unwrapped tasks) then neither sees the caller's values nor can
/// set any. Everything is put back on return and on panic.
///
/// # Panics
///
/// If the thread is exiting.
pub(crate) fn strict_base<R>(f: impl FnOnce() -> R) -> R {
    let mut base = Context::new();
    let _entered = enter(&mut base);
    let saved = with_mut(|current| {
        let here = (current.depth(), current.frame_context());
        let saved = (current.strict, current.base);
        (current.strict, current.base) = (true, here);
        saved
    });
    let Ok(saved) = saved else {
        panic!("ctx: strict::run called while the thread is exiting");
    };
    // Dropped before `_entered`: the mode goes back while the base is still current.
    let _mode = StrictMode(saved);
    f()
}

/// Puts back the strict mode and base from before a [`strict_base`].
struct StrictMode((bool, (u32, *const Context)));

impl Drop for StrictMode {
    fn drop(&mut self) {
        let (strict, base) = self.0;
        let _ = with_mut(|current| (current.strict, current.base) = (strict, base));
    }
}

/// Runs `f` with `var` set to `value` in the current context, as if in a copy of it:
/// see the module documentation. While the thread is exiting, `f` runs without it.
///
/// The guard is made first and written in place: returned from the borrow's closure,
/// it was copied twice through the stack in pieces of other widths than they were
/// written in, which stalled each load behind its stores.
#[inline(always)]
pub(crate) fn overlay<T: Send + Sync + 'static, R>(
    var: Key,
    name: &'static str,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    let mut scope = Overlaid {
        frame: Frame::at(0),
        var,
        name,
        old: None,
    };
    let opened = with_mut(|current| {
        let context = current.context_mut();
        context
            .map
            .insert_into(var, name, || Value::new(value), &mut scope.old);
        let saved_id = std::mem::replace(&mut context.id, OVERLAID);
        let (depth, active) = (current.depth(), current.active.get());
        current.overlays.push(Overlay {
            saved_id,
            depth,
            active,
        });
        depth
    });
    // On an exiting thread the guard's drop finds the slot torn down: nothing to undo.
    if let Ok(depth) = opened {
        scope.frame = Frame::at(depth);
        // A scope is a copy of the context, entered: observers are told, as of any entry.
        let installed = observer::installed();
        if installed > 0 {
            scope.tell_observers(installed);
        }
    }
    f()
}

/// Closes the innermost overlay when dropped: restores the map and identity the
/// context had before it.
pub(crate) struct Overlaid {
    /// The frame the overlay is laid in, with the observers told of the scope.
    frame: Frame,
    var: Key,
    name: &'static str,
    /// The variable's value before the scope: put back on exit.
    old: Option<Value>,
}

impl Overlaid {
    /// Tells the observers of the scope (see [`Frame::tell_entered`]).
    #[cold]
    #[inline(never)]
    fn tell_observers(&mut self, installed: u32) {
        let panicked = self.frame.tell_entered(installed);
        resume(panicked);
    }
}

impl Drop for Overlaid {
    #[inline]
    fn drop(&mut self) {
        let (var, name, frame) = (self.var, self.name, self.frame);
        let old = &mut self.old;
        // What the undo displaces is dropped after the borrow ends: the scope's value
        // (left in `old`, dropped with the guard), or the map the closure wrote to, may
        // hold the last reference to values with a `Drop` of their own. `swap`, as for
        // a frame: `overlay`'s write registered the teardown.
        let undone = swap(|current| {
            // The overlay's frame is innermost, no observer was told, no orphan waits:
            // the common case.
            frame
                .closes_cleanly(current.frames)
                .then(|| current.undo_overlay(var, name, old))
        });
        match undone {
            Ok(Some(written)) => drop(written),
            Ok(None) => close_slow(frame, "`sync_scope`", |current| {
                current.undo_overlay(var, name, old)
            }),
            // The thread is exiting: nothing is left to restore.
            Err(_) => {}
        }
    }
}

impl Current {
    /// Takes the innermost overlay, which set `var` over `old`, off the current
    /// context: puts back the map and identity it had before. What that displaces is
    /// left in `old` and returned, to be dropped after the borrow.
    #[inline]
    fn undo_overlay(
        &mut self,
        var: Key,
        name: &'static str,
        old: &mut Option<Value>,
    ) -> Option<Map> {
        let overlay = self.overlays.pop().expect("one record per open overlay");
        debug_assert!(overlay.here(self), "overlays nest with frames");
        // After a write inside, the map as the scope made it comes back first.
        let (context, opened) = self.writing();
        let written = (context.id != OVERLAID).then(|| {
            let map = opened.pop().expect("a written overlay kept its map");
            std::mem::replace(&mut context.map, map)
        });
        context.id = overlay.saved_id;
        context.map.put_back(var, name, old);
        written
    }
}

/// Gives the current context an identity: see [`Current::prepare_write`].
#[cold]
fn identify(context: &mut Context, opened: &mut Vec<Map>) {
    if context.id == OVERLAID {
        // The innermost overlay belongs to this context, and nothing has written to it
        // yet: from here the map differs by more than its value. Overlays further out
        // need nothing: they had no write either, and this one will restore exactly
        // what they saw.
        opened.push(context.map.clone());
    }
    context.id = next_context_id();
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
