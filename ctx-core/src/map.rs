//! The persistent map behind every [`Context`](crate::Context).
//!
//! # Why this shape
//!
//! A context is copied on every spawn and read on every `get`, so the map has to make
//! three things cheap at once: a copy, a lookup, and a write into a map nobody else sees.
//!
//! - **Keys are dense variable ids**, handed out once per variable from a counter
//!   (see `ContextVar::id`). With no hashing, the key's own bits pick the path.
//! - **A trie over those bits, 64 ways a level.** Each node keeps only the slots that
//!   are present, behind a placeholder that no id matches, plus a table from the id's
//!   6-bit chunk to where its slot is (0, the placeholder's, when absent). (The classic
//!   HAMT popcounts a presence bitmap instead; baseline x86-64 has no popcount
//!   instruction, and the software one cost more than the whole rest of a lookup.) Up
//!   to 64 variables live in the root: one load from the table, one id compare, and
//!   no test for absence, which the id compare covers. 1024 variables take two levels,
//!   4096 still two, so a lookup barely grows with the map.
//! - **Copy-on-write, as [`Arc::make_mut`] does it.** A copy of a context is one reference
//!   count bump of the root. A write into a map that is uniquely owned (the common case:
//!   a task setting its own values) mutates in place; only after a snapshot does a write
//!   copy the nodes on its path (at most a few dozen slots).
//! - **The empty map is `None`**: a thread or task that never sets a variable never
//!   allocates.
//! - **Values that spawned tasks do not inherit** (variables declared `inherit(false)`)
//!   live in a second trie hanging off the root. A context stays one pointer, so moving
//!   one (into every task, in and out of the thread-local on every poll) costs what it
//!   did without the feature, and a map that holds no such values is copied for a spawn
//!   with one reference count, as before. When it holds some, the copy a spawn takes is
//!   the root without that trie: built once per root (a copy of the root's slots, each
//!   one reference count) and cached there until the root is written to, so that many
//!   spawns from one context share it.
//!
//! The straightforward alternative, an `Arc<Vec<(id, value)>>` scanned linearly and
//! cloned whole on every write, measured 9× slower than tokio's `task_local!` on `get`
//! with eight variables and 28× slower again at 1024; see `BENCHMARKS.md`.
//!
//! Values are [`Value`]s, type-erased: a copy of a context shares them (small plain ones
//! are copied), and a value is dropped when the last map holding it goes. Nothing here ever drops a value: a
//! replaced or removed value is handed back to the caller, who drops it after releasing
//! the thread-local borrow (user `Drop` code may read or set variables itself).

use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::value::Value;

/// Where a variable's values live: its id, and which trie (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) id: u32,
    /// Whether spawned tasks leave the value behind.
    pub(crate) local: bool,
}

/// The key of the one entry that is not a variable's: a context's end signal (see
/// [`crate::EndSignal`]). Variables' ids start at 1. The entry travels with the
/// inherited values, as they do, and is left out of [`Map::len`] and [`Map::iter`].
pub(crate) const HIDDEN: Key = Key {
    id: 0,
    local: false,
};

/// The id of each node's placeholder leaf, which no variable is ever given (ids stop one
/// short of it, see `ContextVar::id`): a lookup of an absent id lands on it and fails the
/// id compare every lookup makes anyway.
const ABSENT: u32 = u32::MAX;

/// Bits of the id consumed per trie level.
const BITS: u32 = 6;
const MASK: u32 = (1 << BITS) - 1;
const WAYS: usize = 1 << BITS;

/// A persistent map from variable key to value; `Clone` is O(1).
///
/// One pointer wide, so that a [`Context`](crate::Context) is two words: swapping one in
/// and out of the thread-local (an entry), or returning one, stays in registers.
#[derive(Clone, Default)]
pub(crate) struct Map {
    root: Option<Arc<Node>>,
}

/// Aligned to a cache line, so that the `Arc`'s reference counts sit on a line of their
/// own: every copy of a context writes the root's count, and readers on other threads
/// must not miss on the index they read (8 vars: 13 ns → 4 ns a `get` while another
/// thread copies the context).
#[repr(align(64))]
struct Node {
    /// For each 6-bit chunk of the id at this level: where its slot is in `slots` (see
    /// [`Place`]), or 0 when absent, where the placeholder is. A load instead of a
    /// popcount, which baseline x86-64 lacks in hardware.
    index: [Place; WAYS],
    /// Leaves in this subtree (not counting `local`).
    count: u32,
    /// The placeholder, a leaf no id matches, then the present slots in insertion
    /// order (see [`Node::slot`]).
    slots: Vec<Slot>,
    /// At the root of a map only: the trie of values spawned tasks do not inherit.
    local: Option<Arc<Node>>,
    /// At the root of a map that has `local` values only: this root without them, once
    /// a spawn asked for it. Emptied by every write to the root.
    inherited: OnceLock<Option<Arc<Node>>>,
    /// At the root only: a number no other root is ever given, or 0 until one is asked
    /// for (see [`crate::Stamp`]). Every write puts it back to 0, and the first
    /// [`Map::generation`] after draws the number, so that writes, far more common than
    /// stamps, draw none. Copies of a map share their root and so their generation: the
    /// same number always means the same values.
    generation: AtomicU64,
}

impl Clone for Node {
    /// A copy for writing (`Arc::make_mut`): the cached inherited root is not copied,
    /// since the write is about to make it stale.
    fn clone(&self) -> Self {
        Node {
            index: self.index,
            count: self.count,
            slots: self.slots.clone(),
            local: self.local.clone(),
            inherited: OnceLock::new(),
            generation: AtomicU64::new(self.generation.load(Ordering::Relaxed)),
        }
    }
}

#[derive(Clone)]
enum Slot {
    Leaf(Leaf),
    Branch(Arc<Node>),
}

/// One variable's entry: its id and name (for iteration) and its value.
#[derive(Clone)]
pub(crate) struct Leaf {
    pub(crate) id: u32,
    pub(crate) name: &'static str,
    pub(crate) value: Value,
}

impl Leaf {
    /// Each node's slot 0 (see [`Node::slot`]).
    fn placeholder() -> Self {
        Leaf {
            id: ABSENT,
            name: "",
            value: Value::new(()),
        }
    }
}

/// A root generation no root had before: drawn from the counter of context identities,
/// which hands out each number once (per-thread blocks, no shared write per call).
#[inline]
fn next_generation() -> u64 {
    crate::current::next_context_id()
}

/// `node` ready for a write: the node itself if this is its only handle, else a copy
/// that replaces it here (copy-on-write).
///
/// [`Arc::make_mut`] answers "only handle?" with a compare-exchange on the count, since
/// it must also stop a `Weak` from being upgraded meanwhile; that atomic was a tenth of
/// a `set` + `reset` and of a `sync_scope`, two writes each. Nodes never have `Weak`
/// handles, so a load of the count answers it.
#[inline(always)]
#[expect(unsafe_code, reason = "a uniqueness test without the compare-exchange")]
fn unique(node: &mut Arc<Node>) -> &mut Node {
    if Arc::strong_count(node) == 1 {
        // Pairs with the release decrement of each handle dropped, on any thread: all
        // that was done through them happens before what is done through ours.
        std::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: nothing ever makes a `Weak<Node>` (this module's `Arc<Node>`s are
        // private to it and never downgraded), so the strong count is the number of
        // handles to the node, and 1 means `node` is the only one. No other can appear
        // while `node` is borrowed mutably here: a handle is made only by cloning one.
        // The fence above orders every access through the handles since dropped
        // before ours. `Arc::as_ptr` derives the pointer from the `Arc`'s own pointer
        // to its allocation, not from a shared reference, so it may be written through
        // (this is `Arc::get_mut` without its `Weak` lock), and the reference returned
        // lives no longer than the exclusive borrow of the only handle.
        return unsafe { &mut *Arc::as_ptr(node).cast_mut() };
    }
    copy_for_write(node)
}

/// [`unique`]'s copy, out of line: the first write after a snapshot makes it, and
/// inlined into every write it would cost the common one registers.
#[inline(never)]
fn copy_for_write(node: &mut Arc<Node>) -> &mut Node {
    Arc::make_mut(node)
}

/// The chunk of `id` that selects a slot at the level starting at bit `shift`.
#[inline(always)]
fn chunk(id: u32, shift: u32) -> usize {
    ((id >> shift) & MASK) as usize
}

impl Map {
    pub(crate) const fn new() -> Self {
        Map { root: None }
    }

    /// Whether the map holds no variable (the [`HIDDEN`] entry is not one). The empty
    /// map has no root, and a write that empties a map drops its root.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        let Some(root) = &self.root else {
            return true;
        };
        // A root holds at least one entry: the map is empty only if that is the hidden
        // one, and a map with more entries is told apart without a lookup.
        root.count == 1 && root.local.is_none() && self.get(HIDDEN).is_some()
    }

    /// How many variables the map holds: its entries, less the [`HIDDEN`] one.
    pub(crate) fn len(&self) -> usize {
        self.entries() - usize::from(self.get(HIDDEN).is_some())
    }

    /// How many entries the map holds, the [`HIDDEN`] one included.
    fn entries(&self) -> usize {
        self.root.as_ref().map_or(0, |root| {
            root.count as usize + root.local.as_ref().map_or(0, |local| local.count as usize)
        })
    }

    /// The entries of this map whose values are not the very ones `base` holds under
    /// the same key: what was set (or set again) since this map was copied from `base`.
    /// Each kept value is one reference count; nothing is dropped.
    pub(crate) fn changed_since(&self, base: &Map) -> Map {
        let mut changed = Map::new();
        let Some(root) = self.root.as_deref() else {
            return changed;
        };
        if base.root.as_ref().is_some_and(|b| std::ptr::eq(&**b, root)) {
            return changed;
        }
        let tries = [(root, false)]
            .into_iter()
            .chain(root.local.as_deref().map(|l| (l, true)));
        for (node, local) in tries {
            for leaf in Iter::over(node) {
                let key = Key { id: leaf.id, local };
                let same = base.get(key).is_some_and(|held| held.same(&leaf.value));
                if !same {
                    changed.insert(key, leaf.name, leaf.value.clone());
                }
            }
        }
        changed
    }

    /// The value stored for `key`.
    ///
    /// The two levels every id below 4 096 needs are written out, each with its shift a
    /// constant; deeper levels are out of line. As one loop, a level cost a second
    /// lookup 16 instructions (the shift kept in a register, masked and advanced).
    #[inline]
    pub(crate) fn get(&self, key: Key) -> Option<&Value> {
        let mut node = self.root.as_deref()?;
        if key.local {
            node = node.local.as_deref()?;
        }
        match node.slot(key.id, 0) {
            Slot::Leaf(leaf) => (leaf.id == key.id).then_some(&leaf.value),
            Slot::Branch(child) => match child.slot(key.id, BITS) {
                Slot::Leaf(leaf) => (leaf.id == key.id).then_some(&leaf.value),
                Slot::Branch(grandchild) => grandchild.get_below(key.id, 2 * BITS),
            },
        }
    }

    /// The root, ready for a write: unshared, and without a cached inherited root.
    fn root_mut(&mut self) -> &mut Node {
        let root = unique(self.root.get_or_insert_with(|| Arc::new(Node::new())));
        root.written();
        root
    }

    /// Sets `key` to `value`, returning the value it replaces.
    ///
    /// The common write is inline: a new value for a variable the root holds itself
    /// (up to 64 inherited variables), in a root only this map holds. Out of line, the
    /// general path cost a `set` + `reset` and a `sync_scope` two calls each, whose
    /// saving and restoring of registers outweighed the write itself.
    #[inline(always)]
    pub(crate) fn insert(&mut self, key: Key, name: &'static str, value: Value) -> Option<Value> {
        self.insert_with(key, name, || value)
    }

    /// [`Map::insert`] of the value `make` returns, made where it is stored: a value
    /// made first and moved in went through the stack, in pieces of other widths than
    /// the copy into the map read it in, and that load stalled behind those stores.
    #[inline(always)]
    pub(crate) fn insert_with(
        &mut self,
        key: Key,
        name: &'static str,
        make: impl FnOnce() -> Value,
    ) -> Option<Value> {
        if let Some(place) = self.top_value_mut(key) {
            return Some(mem::replace(place, make()));
        }
        self.insert_slow(key, name, make())
    }

    /// [`Map::insert_with`], the value it replaces written into `old` (which holds none):
    /// for a caller that keeps it, which would otherwise copy it out of a temporary.
    #[inline(always)]
    pub(crate) fn insert_into(
        &mut self,
        key: Key,
        name: &'static str,
        make: impl FnOnce() -> Value,
        old: &mut Option<Value>,
    ) {
        debug_assert!(old.is_none(), "a slot for the replaced value");
        if let Some(place) = self.top_value_mut(key) {
            *old = Some(mem::replace(place, make()));
            return;
        }
        *old = self.insert_slow(key, name, make());
    }

    /// The value of `key`, ready to be replaced in place, when a root only this map
    /// holds has it in a slot of its own (see [`Map::insert`]); else `None`, and the
    /// write takes the general path.
    #[inline(always)]
    fn top_value_mut(&mut self, key: Key) -> Option<&mut Value> {
        let root = match (&mut self.root, key.local) {
            (Some(root), false) => unique(root),
            _ => return None,
        };
        // Before the lookup: a write follows on either path.
        root.written();
        match root.slot_mut(key.id, 0) {
            Slot::Leaf(leaf) if leaf.id == key.id => Some(&mut leaf.value),
            _ => None,
        }
    }

    /// [`Map::insert`]'s general path: the first write, a new entry, a deeper one, or a
    /// local one.
    #[inline(never)]
    fn insert_slow(&mut self, key: Key, name: &'static str, value: Value) -> Option<Value> {
        let mut node = self.root_mut();
        if key.local {
            node = unique(node.local.get_or_insert_with(|| Arc::new(Node::new())));
        }
        // A new value for a variable already there (a level down, or in the local trie)
        // replaces the old one in place, as the inline path does at the root; only a
        // variable not there yet gets a leaf. Building a leaf first and inserting it
        // cost a `set` + `reset` of such a variable 636 and 477 instructions, against 246.
        if let Some(place) = node.value_mut(key.id) {
            return Some(mem::replace(place, value));
        }
        let id = key.id;
        node.insert(Leaf { id, name, value }, 0);
        None
    }

    /// Puts `key` back to an earlier state, `Some` value or absent, returning the value
    /// it displaces: the undo of an insert (by `reset`, and on leaving a `sync_scope`).
    #[inline(always)]
    pub(crate) fn restore(
        &mut self,
        key: Key,
        name: &'static str,
        old: Option<Value>,
    ) -> Option<Value> {
        match old {
            Some(old) => self.insert(key, name, old),
            None => self.remove(key),
        }
    }

    /// [`Map::restore`] in place: puts `key` back to what `slot` holds (a value, or
    /// absent), and leaves in `slot` what that displaces. The common case swaps the two
    /// values where they lie, rather than moving each through the stack.
    #[inline(always)]
    pub(crate) fn put_back(&mut self, key: Key, name: &'static str, slot: &mut Option<Value>) {
        if let Some(value) = slot {
            if let Some(place) = self.top_value_mut(key) {
                mem::swap(place, value);
                return;
            }
        }
        let old = slot.take();
        *slot = self.restore(key, name, old);
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove(&mut self, key: Key) -> Option<Value> {
        // Look first, so that removing an absent key never copies a shared path.
        self.get(key)?;
        let root = self.root_mut();
        let value = if key.local {
            let local = unique(root.local.as_mut()?);
            let value = local.remove(key.id, 0);
            if local.count == 0 {
                root.local = None;
            }
            value
        } else {
            root.remove(key.id, 0)
        };
        if root.count == 0 && root.local.is_none() {
            // An empty node holds no values: dropping it runs no user code.
            self.root = None;
        }
        Some(value)
    }

    /// This map without the values that spawned tasks do not inherit: the same map when
    /// it holds none (one reference count), else the root without them, cached.
    #[inline]
    pub(crate) fn inherited(&self) -> Map {
        match &self.root {
            Some(root) if root.local.is_some() => Map {
                root: root.inherited.get_or_init(|| root.without_local()).clone(),
            },
            _ => self.clone(),
        }
    }

    /// Which values the map holds, as a number no other set of values ever has: 0 when
    /// empty, else its root's generation (see [`Node::generation`]), drawn now if the
    /// root has none yet.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        let Some(root) = &self.root else {
            return 0;
        };
        match root.generation.load(Ordering::Relaxed) {
            0 => root.draw_generation(),
            generation => generation,
        }
    }

    /// Whether both maps are the same allocation (or both empty).
    #[cfg(test)]
    fn ptr_eq(&self, other: &Map) -> bool {
        match (&self.root, &other.root) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// The variables' entries (not the [`HIDDEN`] one): the inherited ones, then the
    /// others, each in trie order.
    pub(crate) fn iter(&self) -> Iter<'_> {
        let root = self.root.as_deref();
        let local = root.and_then(|root| root.local.as_deref());
        Iter {
            // Popped from the end: the root goes last on the stack.
            stack: local
                .into_iter()
                .chain(root)
                .map(|node| node.present().iter())
                .collect(),
            remaining: self.len(),
            hidden: false,
        }
    }
}

/// An entry of a node's index: where the slot for a chunk is in the node's `slots`, 0
/// when the chunk is absent (the placeholder's place).
///
/// Below a trie's root, the slot's offset in bytes, which a lookup adds to the slots'
/// address as it is: a position would be multiplied by the size of a slot first (56
/// bytes, an `imul`: one instruction of the nine a level costs, and three cycles on
/// the lookup's chain of loads). In a root, the slot's position: with offsets there
/// too, a `get` of a variable the root holds measured 12–15 % slower in two `bench
/// --against` runs and in the `icount get` loop, though one instruction shorter, for a
/// reason that instruction counts do not show (see BENCHMARKS.md, "Places and a
/// placeholder").
///
/// Every entry is a slot's and in bounds (see [`Node::slot`]).
type Place = u16;

/// The size of a slot: the unit of places below a root.
const SLOT: usize = mem::size_of::<Slot>();
const _: () = assert!(
    WAYS * SLOT <= Place::MAX as usize,
    "a node's offsets fit in a Place"
);

/// The place of the slot at `position` (at most [`WAYS`]) in a node at the level
/// starting at bit `shift`.
#[inline(always)]
fn to_place(position: usize, shift: u32) -> Place {
    let place = if shift == 0 {
        position
    } else {
        position * SLOT
    };
    place as Place
}

/// The position of the slot at `place` in a node at the level starting at bit `shift`.
#[inline(always)]
fn to_position(place: Place, shift: u32) -> usize {
    let place = usize::from(place);
    if shift == 0 { place } else { place / SLOT }
}

impl Node {
    /// The place of the slot for `id` at this node, a level starting at bit `shift` of
    /// the id: 0, the placeholder's, when there is none.
    #[inline(always)]
    fn place(&self, id: u32, shift: u32) -> Place {
        let place = self.index[chunk(id, shift)];
        debug_assert!(
            (shift == 0 || usize::from(place) % SLOT == 0)
                && to_position(place, shift) < self.slots.len(),
            "ctx: an entry of a node's index is a slot's place"
        );
        place
    }

    /// The slot for `id` at this node (see [`Node::place`]): the placeholder, a leaf of
    /// an id no variable has, when there is none.
    ///
    /// This is the lookup that 1 024 variables make twice in a `get`, where 8 make it
    /// once. Through `slots.get`, with the position stored plus one (0 for absent),
    /// each level cost four instructions more (a decrement, a load of the length, a
    /// branch, a multiply; the root keeps its multiply, see [`Place`]): the second
    /// level cost 13 instructions, now 9, against 33 for a whole `get` of a variable
    /// the root holds.
    #[inline(always)]
    #[expect(unsafe_code, reason = "a lookup without a bounds check, two per `get`")]
    fn slot(&self, id: u32, shift: u32) -> &Slot {
        let place = usize::from(self.place(id, shift));
        let slots = self.slots.as_ptr();
        // SAFETY: `place` is the place of an initialised slot of `slots` (the invariant
        // of `index`): in a root its position, below `slots.len()`; below, its offset
        // in bytes, a multiple of the size of a slot below `slots.len() * SLOT`. Either
        // way the pointer is in bounds and aligned, and the reference borrows `self`,
        // so the vector is neither changed nor freed while it lives. Every change to
        // `index` or `slots` keeps the invariant:
        // - `Node::new` makes every place 0 and `slots` the placeholder alone; no code
        //   removes the placeholder, so place 0 is always in bounds.
        // - `Node::insert` pushes a slot and stores the place of the slot it pushed.
        // - `Node::remove` zeroes a removed leaf's place and, when the last slot moves
        //   into its position (`swap_remove`), stores that position's place in the one
        //   entry that held the last one; every other place was already below the new
        //   end. A branch that collapses to its leaf keeps its position.
        // - `Clone` copies `index` and `slots` together; no other code writes either.
        // Debug builds check it at each lookup (`Node::place`); `map::tests` checks
        // every node's index after every change of its model tests.
        unsafe {
            if shift == 0 {
                &*slots.add(place)
            } else {
                &*slots.byte_add(place)
            }
        }
    }

    /// [`Node::slot`], to write.
    #[inline(always)]
    #[expect(unsafe_code, reason = "a lookup without a bounds check")]
    fn slot_mut(&mut self, id: u32, shift: u32) -> &mut Slot {
        let place = usize::from(self.place(id, shift));
        let slots = self.slots.as_mut_ptr();
        // SAFETY: as in `Node::slot`; the reference borrows `self` mutably, so it is
        // the only one to the slot while it lives.
        unsafe {
            if shift == 0 {
                &mut *slots.add(place)
            } else {
                &mut *slots.byte_add(place)
            }
        }
    }

    /// The present slots: all but the placeholder.
    fn present(&self) -> &[Slot] {
        &self.slots[1..]
    }

    /// The value of `id` in the trie this node is the root of, ready to be replaced in
    /// place: each node below made this map's own first (copied where shared, as any
    /// write would). `None` when absent.
    fn value_mut(&mut self, id: u32) -> Option<&mut Value> {
        let mut node = self;
        let mut shift = 0;
        loop {
            match node.slot_mut(id, shift) {
                Slot::Leaf(leaf) => return (leaf.id == id).then_some(&mut leaf.value),
                Slot::Branch(child) => {
                    node = unique(child);
                    shift += BITS;
                }
            }
        }
    }

    /// [`Map::get`] from this node down, this node being at the level starting at bit
    /// `shift`: only ids from 4 096 up come this far.
    #[cold]
    #[inline(never)]
    fn get_below(&self, id: u32, mut shift: u32) -> Option<&Value> {
        let mut node = self;
        loop {
            match node.slot(id, shift) {
                Slot::Leaf(leaf) => return (leaf.id == id).then_some(&leaf.value),
                Slot::Branch(child) => {
                    node = child;
                    shift += BITS;
                }
            }
        }
    }

    /// Readies a root for a write: the write makes its cached inherited root stale, and
    /// its values need a new generation.
    ///
    /// Dropping that cache frees no value: it was built from this root, and every write
    /// since would have dropped it first, so the root still holds all it holds.
    #[inline(always)]
    fn written(&mut self) {
        self.inherited.take();
        *self.generation.get_mut() = 0;
    }

    /// Gives this root its generation, once: threads that ask at the same time agree on
    /// the first number stored. Only uniqueness is at stake, so no ordering is needed.
    #[cold]
    fn draw_generation(&self) -> u64 {
        let fresh = next_generation();
        match self
            .generation
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh,
            Err(drawn) => drawn,
        }
    }

    fn new() -> Self {
        Node {
            index: [0; WAYS],
            count: 0,
            slots: {
                // Room for a few more, as a first push would make (one allocation).
                let mut slots = Vec::with_capacity(4);
                slots.push(Slot::Leaf(Leaf::placeholder()));
                slots
            },
            local: None,
            inherited: OnceLock::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// A copy of this root without its `local` trie; `None` when nothing is left.
    #[cold]
    fn without_local(&self) -> Option<Arc<Node>> {
        (self.count > 0).then(|| {
            let mut root = self.clone();
            root.local = None;
            *root.generation.get_mut() = 0;
            Arc::new(root)
        })
    }

    /// Adds `leaf`, whose id this trie does not hold: a held one has its value replaced
    /// in place instead (see [`Node::value_mut`]).
    ///
    /// # Panics
    ///
    /// If the id is held already: two leaves of one id would be split level after level.
    fn insert(&mut self, leaf: Leaf, shift: u32) {
        let c = chunk(leaf.id, shift);
        match to_position(self.index[c], shift) {
            0 => {
                debug_assert_ne!(leaf.id, ABSENT, "ctx: the placeholder's id");
                self.index[c] = to_place(self.slots.len(), shift);
                self.slots.push(Slot::Leaf(leaf));
            }
            at => {
                let slot = &mut self.slots[at];
                match slot {
                    Slot::Leaf(here) => {
                        assert_ne!(here.id, leaf.id, "ctx: insert of a variable already held");
                        // Two ids share this chunk: push both one level down.
                        let Slot::Leaf(here) =
                            mem::replace(slot, Slot::Branch(Arc::new(Node::new())))
                        else {
                            unreachable!("matched a leaf above")
                        };
                        let Slot::Branch(child) = slot else {
                            unreachable!("just stored a branch")
                        };
                        let child = unique(child);
                        child.insert(here, shift + BITS);
                        child.insert(leaf, shift + BITS);
                    }
                    Slot::Branch(child) => unique(child).insert(leaf, shift + BITS),
                }
            }
        }
        self.count += 1;
    }

    /// Removes `id`, which must be present.
    fn remove(&mut self, id: u32, shift: u32) -> Value {
        let c = chunk(id, shift);
        let at = to_position(self.index[c], shift);
        debug_assert!(at != 0, "remove of an absent id");
        self.count -= 1;
        match &mut self.slots[at] {
            Slot::Leaf(_) => {
                self.index[c] = 0;
                let last = self.slots.len() - 1;
                let Slot::Leaf(leaf) = self.slots.swap_remove(at) else {
                    unreachable!("matched a leaf above")
                };
                if at != last {
                    // The last slot moved into the hole: repoint its chunk.
                    let moved = self.index.iter().position(|&p| p == to_place(last, shift));
                    self.index[moved.expect("every slot is indexed")] = to_place(at, shift);
                }
                leaf.value
            }
            Slot::Branch(child) => {
                let child_node = unique(child);
                let value = child_node.remove(id, shift + BITS);
                // Keep the trie canonical: a branch left with one leaf becomes that leaf.
                if let [Slot::Leaf(_)] = child_node.present() {
                    let last = child_node.slots.pop().expect("one slot");
                    self.slots[at] = last;
                }
                value
            }
        }
    }
}

/// Depth-first iterator over a [`Map`].
pub(crate) struct Iter<'a> {
    stack: Vec<std::slice::Iter<'a, Slot>>,
    remaining: usize,
    /// Whether the [`HIDDEN`] entry is yielded too.
    hidden: bool,
}

impl<'a> Iter<'a> {
    /// Every leaf of one trie, the [`HIDDEN`] one included.
    fn over(node: &'a Node) -> Self {
        Iter {
            stack: vec![node.present().iter()],
            remaining: node.count as usize,
            hidden: true,
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Leaf;

    fn next(&mut self) -> Option<&'a Leaf> {
        loop {
            let top = self.stack.last_mut()?;
            match top.next() {
                None => {
                    self.stack.pop();
                }
                Some(Slot::Leaf(leaf)) if leaf.id != HIDDEN.id || self.hidden => {
                    self.remaining -= 1;
                    return Some(leaf);
                }
                Some(Slot::Leaf(_)) => {}
                Some(Slot::Branch(child)) => self.stack.push(child.present().iter()),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn value(n: u64) -> Value {
        Value::new(n)
    }

    fn key(id: u32) -> Key {
        Key { id, local: false }
    }

    fn local(id: u32) -> Key {
        Key { id, local: true }
    }

    fn read(map: &Map, key: Key) -> Option<u64> {
        map.get(key)
            .map(|v| *v.as_any().downcast_ref::<u64>().unwrap())
    }

    /// Checks the shape of the trie under `node`, a level starting at bit `shift`, and
    /// returns the leaves it holds. `Node::slot` relies on the places: each is a slot's
    /// (below the root a multiple of a slot's size; in bounds), 0 only where the chunk
    /// is absent.
    fn check_node(node: &Node, shift: u32) -> u32 {
        let Slot::Leaf(placeholder) = &node.slots[0] else {
            panic!("slot 0 is a branch");
        };
        assert_eq!(placeholder.id, ABSENT, "slot 0 is the placeholder");
        let mut seen = vec![false; node.slots.len()];
        let mut leaves = 0;
        for (c, &at) in node.index.iter().enumerate() {
            if shift > 0 {
                assert_eq!(
                    usize::from(at) % SLOT,
                    0,
                    "chunk {c}: a place inside a slot"
                );
            }
            let at = to_position(at, shift);
            assert!(at < node.slots.len(), "chunk {c}: a place past the slots");
            if at == 0 {
                continue;
            }
            assert!(!seen[at], "chunk {c}: a slot indexed twice");
            seen[at] = true;
            leaves += match &node.slots[at] {
                Slot::Leaf(leaf) => {
                    assert_ne!(leaf.id, ABSENT);
                    assert_eq!(chunk(leaf.id, shift), c, "a leaf under another chunk");
                    1
                }
                Slot::Branch(child) => {
                    let below = check_node(child, shift + BITS);
                    assert!(below >= 2, "a branch of one leaf");
                    below
                }
            };
        }
        assert!(seen[1..].iter().all(|&s| s), "a slot no chunk indexes");
        assert_eq!(node.count, leaves, "count");
        leaves
    }

    /// The model is keyed by `(local, id)`.
    fn check(map: &Map, model: &BTreeMap<(bool, u32), u64>) {
        if let Some(root) = map.root.as_deref() {
            check_node(root, 0);
            if let Some(local) = root.local.as_deref() {
                check_node(local, 0);
            }
        }
        assert_eq!(map.len(), model.len());
        assert_eq!(map.iter().len(), model.len());
        let mut ids: Vec<u32> = map.iter().map(|l| l.id).collect();
        ids.sort_unstable();
        let mut expected: Vec<u32> = model.keys().map(|&(_, id)| id).collect();
        expected.sort_unstable();
        assert_eq!(ids, expected);
        for (&(is_local, id), &v) in model {
            let key = Key {
                id,
                local: is_local,
            };
            assert_eq!(read(map, key), Some(v), "{key:?}");
            let other = Key {
                id,
                local: !is_local,
            };
            if !model.contains_key(&(!is_local, id)) {
                assert_eq!(read(map, other), None, "{other:?}");
            }
        }
        let inherited = map.inherited();
        let kept: BTreeMap<_, _> = model.iter().filter(|((l, _), _)| !l).collect();
        assert_eq!(inherited.len(), kept.len());
        for (&&(_, id), &&v) in &kept {
            assert_eq!(read(&inherited, key(id)), Some(v));
        }
    }

    #[test]
    fn deep_collisions_split_and_collapse() {
        // These ids agree on their low 30 bits, so they only part at the last level.
        let ids = [
            1u32,
            1 | 1 << 30,
            1 | 2 << 30,
            1 | 3 << 30,
            2,
            65,
            1 << 12 | 1,
        ];
        for is_local in [false, true] {
            let mut map = Map::new();
            let mut model = BTreeMap::new();
            for (n, &id) in ids.iter().enumerate() {
                let k = Key {
                    id,
                    local: is_local,
                };
                assert!(map.insert(k, "v", value(n as u64)).is_none());
                model.insert((is_local, id), n as u64);
                check(&map, &model);
            }
            assert_eq!(
                read(
                    &map,
                    Key {
                        id: 1 | 5 << 28,
                        local: is_local
                    }
                ),
                None
            );
            for &id in ids.iter().rev() {
                let k = Key {
                    id,
                    local: is_local,
                };
                let snapshot = map.clone();
                assert!(map.remove(k).is_some());
                assert!(map.remove(k).is_none());
                model.remove(&(is_local, id));
                check(&map, &model);
                // The snapshot is untouched by the removal.
                assert!(read(&snapshot, k).is_some());
            }
            assert!(map.root.is_none());
            assert_eq!(map.len(), 0);
        }
    }

    #[test]
    fn many_keys_of_both_kinds_against_a_model() {
        let mut map = Map::new();
        let mut model = BTreeMap::new();
        let mut x = 0x9E37_79B9_u32;
        // Miri runs a shorter walk: every lookup in it goes through `Node::slot`.
        let steps = if cfg!(miri) { 1_500 } else { 20_000 };
        for step in 0..steps {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Variables' ids start at 1 (0 is the hidden entry's).
            let id = if step % 3 == 0 { x } else { x % 2048 }.max(1);
            let is_local = x % 5 == 0;
            let k = Key {
                id,
                local: is_local,
            };
            if step % 4 == 0 {
                let removed = model.remove(&(is_local, id)).is_some();
                assert_eq!(map.remove(k).is_some(), removed);
            } else {
                let old = map.insert(k, "v", value(step));
                assert_eq!(old.is_some(), model.insert((is_local, id), step).is_some());
            }
            if step % 512 == 0 {
                check(&map, &model);
            }
        }
        check(&map, &model);
    }

    /// A lookup finds its value at every depth, and misses an id that shares a path
    /// with a stored one: the root (1), the second level (65, sharing 1's low 6 bits),
    /// the third (4 097 and 8 193, sharing its low 12 bits, which only ids from 4 096 up
    /// can), in both tries.
    #[test]
    fn lookups_at_every_depth() {
        for local in [false, true] {
            let key = |id| Key { id, local };
            let mut map = Map::new();
            let ids = [1, 65, 4097, 8193, 1 + (1 << 18)];
            for (n, &id) in ids.iter().enumerate() {
                map.insert(key(id), "v", value(n as u64));
            }
            for (n, &id) in ids.iter().enumerate() {
                let found = map.get(key(id)).map(|v| *v.downcast::<u64>());
                assert_eq!(found, Some(n as u64), "id {id}");
            }
            for absent in [129, 2 + (1 << 12), 1 + (3 << 12), 1 + (1 << 24)] {
                assert!(map.get(key(absent)).is_none(), "id {absent}");
            }
        }
    }

    /// `put_back` and `insert_into`, each way a write can go: in place at the root, at
    /// a deeper level, as a new entry, as a removal, and into a root shared with a copy.
    #[test]
    fn writes_in_place_leave_the_displaced_value_where_asked() {
        let mut map = Map::new();
        for id in 1..=70 {
            map.insert(key(id), "v", value(u64::from(id)));
        }
        // 66 shares its root chunk with 2: it lives a level down.
        for (id, deep) in [(5, false), (66, true)] {
            let mut slot = Some(value(500));
            map.put_back(key(id), "v", &mut slot);
            assert_eq!(
                slot.map(|v| *v.as_any().downcast_ref::<u64>().unwrap()),
                Some(u64::from(id)),
                "deep: {deep}"
            );
            assert_eq!(read(&map, key(id)), Some(500));
        }
        let copy = map.clone();
        let mut old = None;
        map.insert_into(key(5), "v", || value(501), &mut old);
        assert!(old.is_some_and(|v| v.as_any().downcast_ref::<u64>() == Some(&500)));
        assert_eq!(read(&copy, key(5)), Some(500), "the copy keeps its value");
        assert_eq!(read(&map, key(5)), Some(501));
        let mut absent = None;
        map.insert_into(key(99), "v", || value(99), &mut absent);
        assert!(absent.is_none());
        let mut remove = None;
        map.put_back(key(99), "v", &mut remove);
        assert!(remove.is_some_and(|v| v.as_any().downcast_ref::<u64>() == Some(&99)));
        assert_eq!(read(&map, key(99)), None);
        let mut new = Some(value(100));
        map.put_back(key(100), "v", &mut new);
        assert!(new.is_none(), "nothing was displaced");
        assert_eq!(read(&map, key(100)), Some(100));
        assert_eq!(read(&copy, key(100)), None);
    }

    /// A new value for a variable a level down, or in the local trie, replaces the old
    /// one in place (the general path's shortcut): the counts stay, and a copy taken
    /// before keeps its values, the shared nodes on the way being copied first.
    #[test]
    fn values_below_the_root_are_replaced_in_place_and_copies_keep_theirs() {
        let mut map = Map::new();
        for id in 1..200 {
            map.insert(key(id), "v", value(u64::from(id)));
        }
        // 6 and 70 share their root chunk: 70 lives a level down in the local trie.
        for id in [6, 70] {
            map.insert(local(id), "l", value(u64::from(id)));
        }
        let len = map.len();
        let copy = map.clone();
        for round in 1..=2 {
            let new = 1000 * round;
            for k in [key(130), key(5), local(6), local(70)] {
                let old = map.insert(k, "v", value(new + u64::from(k.id)));
                let expected = if round == 1 {
                    k.id.into()
                } else {
                    1000 + u64::from(k.id)
                };
                assert_eq!(old.map(|v| *v.downcast::<u64>()), Some(expected));
                assert_eq!(read(&map, k), Some(new + u64::from(k.id)));
                assert_eq!(
                    read(&copy, k),
                    Some(k.id.into()),
                    "the copy keeps its value"
                );
            }
            assert_eq!(map.len(), len);
            assert_eq!(copy.len(), len);
        }
    }

    #[test]
    fn writes_after_a_copy_do_not_show_in_the_copy() {
        let mut map = Map::new();
        for id in 0..200 {
            map.insert(key(id), "v", value(u64::from(id)));
        }
        let copy = map.clone();
        assert!(copy.ptr_eq(&map));
        map.insert(key(7), "v", value(700));
        map.remove(key(150));
        assert!(!copy.ptr_eq(&map));
        assert_eq!(read(&copy, key(7)), Some(7));
        assert_eq!(read(&copy, key(150)), Some(150));
        assert_eq!(read(&map, key(7)), Some(700));
        assert_eq!(read(&map, key(150)), None);
    }

    #[test]
    fn the_inherited_copy_is_shared_until_the_root_is_written() {
        let mut map = Map::new();
        map.insert(key(1), "v", value(1));
        // Without local values, the inherited copy is the map itself.
        assert!(map.inherited().ptr_eq(&map));

        map.insert(local(2), "l", value(2));
        let first = map.inherited();
        assert!(!first.ptr_eq(&map));
        assert!(first.ptr_eq(&map.inherited()), "built once, then shared");
        assert_eq!(read(&first, key(1)), Some(1));
        assert_eq!(read(&first, local(2)), None);

        map.insert(key(1), "v", value(10));
        let second = map.inherited();
        assert!(!second.ptr_eq(&first), "a write drops the cached copy");
        assert_eq!(read(&second, key(1)), Some(10));
        assert_eq!(
            read(&first, key(1)),
            Some(1),
            "earlier copies are snapshots"
        );

        // Only local values: a spawn gets an empty map.
        let mut only_local = Map::new();
        only_local.insert(local(3), "l", value(3));
        assert_eq!(only_local.inherited().len(), 0);
        assert!(only_local.inherited().root.is_none());
        only_local.remove(local(3));
        assert!(only_local.root.is_none());
    }

    #[test]
    fn the_hidden_entry_is_no_variable_and_changes_are_told_by_identity() {
        let mut base = Map::new();
        base.insert(HIDDEN, "end", value(0));
        assert_eq!(base.len(), 0);
        assert!(base.is_empty() && base.root.is_some());
        assert_eq!(base.iter().count(), 0);
        base.insert(key(1), "a", value(1));
        base.insert(key(64), "b", value(2)); // shares the hidden entry's slot at the root
        assert_eq!((base.len(), base.iter().len()), (2, 2));
        assert_eq!(base.iter().count(), 2);

        let mut task = base.clone();
        assert!(task.changed_since(&base).is_empty());
        task.insert(key(1), "a", value(1)); // equal, but set anew
        task.insert(local(3), "c", value(3));
        task.insert(key(5), "d", value(5));
        let changed = task.changed_since(&base);
        let mut ids: Vec<_> = changed.iter().map(|leaf| leaf.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 3, 5]);
        assert_eq!(read(&changed, local(3)), Some(3));
        assert_eq!(read(&changed, key(64)), None);
        assert!(changed.get(HIDDEN).is_none());
    }

    /// A generation is drawn on the first ask after a write, shared by copies, and
    /// never the same for two different sets of values, nor for two roots that merely
    /// hold equal ones.
    #[test]
    fn generations_are_drawn_once_per_write_and_never_twice() {
        let mut map = Map::new();
        assert_eq!(map.generation(), 0, "the empty map");
        map.insert(key(1), "a", value(1));
        let first = map.generation();
        assert_ne!(first, 0);
        assert_eq!(map.generation(), first, "asked again: the same number");
        let copy = map.clone();
        assert_eq!(copy.generation(), first, "a copy shares it");
        map.insert(key(1), "a", value(1));
        let second = map.generation();
        assert_ne!(
            second, first,
            "a write takes it away, even of an equal value"
        );
        assert_eq!(
            copy.generation(),
            first,
            "the copy kept its values and number"
        );
        let mut twin = Map::new();
        twin.insert(key(1), "a", value(1));
        assert!(![0, first, second].contains(&twin.generation()));
        map.insert(local(2), "l", value(2));
        let inherited = map.inherited();
        assert!(![0, first, second].contains(&inherited.generation()));
        assert_ne!(inherited.generation(), map.generation());
        // Threads asking a shared root for the first time at once agree.
        let mut shared = Map::new();
        shared.insert(key(3), "c", value(3));
        let drawn: Vec<u64> = std::thread::scope(|scope| {
            let asks: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| shared.generation()))
                .collect();
            asks.into_iter().map(|ask| ask.join().unwrap()).collect()
        });
        assert!(drawn.iter().all(|&g| g == drawn[0] && g != 0), "{drawn:?}");
    }
}
