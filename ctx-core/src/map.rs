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
//!   are present, plus a 64-byte table from the id's 6-bit chunk to the slot's position.
//!   (The classic HAMT popcounts a presence bitmap instead; baseline x86-64 has no
//!   popcount instruction, and the software one cost more than the whole rest of a
//!   lookup.) Up to 64 variables live in the root: one byte load, one id compare. 1024
//!   variables take two levels, 4096 still two, so a lookup barely grows with the map.
//! - **Copy-on-write through [`Arc::make_mut`].** A copy of a context is one reference
//!   count bump of the root. A write into a map that is uniquely owned (the common case:
//!   a task setting its own values) mutates in place; only after a snapshot does a write
//!   copy the nodes on its path (at most a few dozen slots).
//! - **The empty map is `None`**: a thread or task that never sets a variable never
//!   allocates.
//!
//! The straightforward alternative, an `Arc<Vec<(id, value)>>` scanned linearly and
//! cloned whole on every write, measured 9× slower than tokio's `task_local!` on `get`
//! with eight variables and 28× slower again at 1024; see `BENCHMARKS.md`.
//!
//! Values are `Arc<dyn Any + Send + Sync>`: a copy of a context shares them, and a value
//! is dropped when the last map holding it goes. Nothing here ever drops a value: a
//! replaced or removed value is handed back to the caller, who drops it after releasing
//! the thread-local borrow (user `Drop` code may read or set variables itself).

use std::any::Any;
use std::mem;
use std::sync::Arc;

/// A type-erased value stored in a context.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// Bits of the id consumed per trie level.
const BITS: u32 = 6;
const MASK: u32 = (1 << BITS) - 1;
const WAYS: usize = 1 << BITS;

/// A persistent map from variable id to value; `Clone` is O(1).
///
/// One pointer wide, so that a [`Context`](crate::Context) is three words (a map per flow
/// policy, and an identity): swapping one in and out of the thread-local, or returning
/// one, stays in registers.
#[derive(Clone, Default)]
pub(crate) struct Map {
    root: Option<Arc<Node>>,
}

/// Aligned to a cache line, so that the `Arc`'s reference counts sit on a line of their
/// own: every copy of a context writes the root's count, and readers on other threads
/// must not miss on the index they read (8 vars: 13 ns → 4 ns a `get` while another
/// thread copies the context).
#[derive(Clone)]
#[repr(align(64))]
struct Node {
    /// For each 6-bit chunk of the id at this level: 1 + the position of its slot in
    /// `slots`, or 0 when absent. A byte load instead of a popcount, which baseline
    /// x86-64 lacks in hardware.
    index: [u8; WAYS],
    /// Leaves in this subtree; at the root, the map's length.
    count: u32,
    /// Present slots, in insertion order.
    slots: Vec<Slot>,
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

/// The chunk of `id` that selects a slot at the level starting at bit `shift`.
#[inline(always)]
fn chunk(id: u32, shift: u32) -> usize {
    ((id >> shift) & MASK) as usize
}

impl Map {
    pub(crate) const fn new() -> Self {
        Map { root: None }
    }

    pub(crate) fn len(&self) -> usize {
        self.root.as_ref().map_or(0, |root| root.count as usize)
    }

    /// The value stored for `id`.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&(dyn Any + Send + Sync)> {
        self.get_shared(id).map(|value| &**value)
    }

    /// The shared handle of the value stored for `id`.
    #[inline]
    pub(crate) fn get_shared(&self, id: u32) -> Option<&Value> {
        let mut node = self.root.as_deref()?;
        let mut shift = 0;
        loop {
            let at = node.index[chunk(id, shift)];
            match node.slots.get(usize::from(at).wrapping_sub(1))? {
                Slot::Leaf(leaf) => return (leaf.id == id).then_some(&leaf.value),
                Slot::Branch(child) => {
                    node = child;
                    shift += BITS;
                }
            }
        }
    }

    /// Sets `id` to `value`, returning the value it replaces.
    #[inline]
    pub(crate) fn insert(&mut self, id: u32, name: &'static str, value: Value) -> Option<Value> {
        let root = Arc::make_mut(self.root.get_or_insert_with(|| Arc::new(Node::new())));
        // The common write, a variable already in the root, without the general descent.
        let at = usize::from(root.index[chunk(id, 0)]).wrapping_sub(1);
        if let Some(Slot::Leaf(leaf)) = root.slots.get_mut(at) {
            if leaf.id == id {
                return Some(mem::replace(&mut leaf.value, value));
            }
        }
        root.insert(Leaf { id, name, value }, 0)
    }

    /// Puts `id` back to an earlier state, `Some` value or absent, returning the value it
    /// displaces: the undo of an insert (by `reset`, and on leaving a `sync_scope`).
    pub(crate) fn restore(
        &mut self,
        id: u32,
        name: &'static str,
        old: Option<Value>,
    ) -> Option<Value> {
        match old {
            Some(old) => self.insert(id, name, old),
            None => self.remove(id),
        }
    }

    /// Removes `id`, returning its value.
    pub(crate) fn remove(&mut self, id: u32) -> Option<Value> {
        // Look first, so that removing an absent id never copies a shared path.
        self.get_shared(id)?;
        let root = Arc::make_mut(self.root.as_mut()?);
        let value = root.remove(id, 0);
        if root.count == 0 {
            // An empty node holds no values: dropping it runs no user code.
            self.root = None;
        }
        Some(value)
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

    /// The entries, in trie order.
    #[cfg(test)]
    fn iter(&self) -> Iter<'_> {
        Map::iter_all([self])
    }

    /// The entries of several maps, one map after the other, each in trie order.
    pub(crate) fn iter_all<'a, const N: usize>(maps: [&'a Map; N]) -> Iter<'a> {
        Iter {
            // Popped from the end: the first map goes last on the stack.
            stack: maps
                .iter()
                .rev()
                .filter_map(|map| map.root.as_deref())
                .map(|root| root.slots.iter())
                .collect(),
            remaining: maps.iter().map(|map| map.len()).sum(),
        }
    }
}

impl Node {
    fn new() -> Self {
        Node {
            index: [0; WAYS],
            count: 0,
            slots: Vec::new(),
        }
    }

    fn insert(&mut self, leaf: Leaf, shift: u32) -> Option<Value> {
        let c = chunk(leaf.id, shift);
        let old = match self.index[c] {
            0 => {
                self.slots.push(Slot::Leaf(leaf));
                self.index[c] = self.slots.len() as u8; // at most 64
                None
            }
            at => {
                let slot = &mut self.slots[usize::from(at) - 1];
                match slot {
                    Slot::Leaf(here) if here.id == leaf.id => {
                        return Some(mem::replace(&mut here.value, leaf.value));
                    }
                    Slot::Leaf(_) => {
                        // Two ids share this chunk: push both one level down.
                        let Slot::Leaf(here) =
                            mem::replace(slot, Slot::Branch(Arc::new(Node::new())))
                        else {
                            unreachable!("matched a leaf above")
                        };
                        let Slot::Branch(child) = slot else {
                            unreachable!("just stored a branch")
                        };
                        let child = Arc::make_mut(child);
                        child.insert(here, shift + BITS);
                        child.insert(leaf, shift + BITS)
                    }
                    Slot::Branch(child) => Arc::make_mut(child).insert(leaf, shift + BITS),
                }
            }
        };
        if old.is_none() {
            self.count += 1;
        }
        old
    }

    /// Removes `id`, which must be present.
    fn remove(&mut self, id: u32, shift: u32) -> Value {
        let c = chunk(id, shift);
        let at = usize::from(self.index[c]);
        debug_assert!(at != 0, "remove of an absent id");
        self.count -= 1;
        match &mut self.slots[at - 1] {
            Slot::Leaf(_) => {
                self.index[c] = 0;
                let last = self.slots.len();
                let Slot::Leaf(leaf) = self.slots.swap_remove(at - 1) else {
                    unreachable!("matched a leaf above")
                };
                if at != last {
                    // The last slot moved into the hole: repoint its chunk.
                    let moved = self.index.iter().position(|&i| usize::from(i) == last);
                    self.index[moved.expect("every slot is indexed")] = at as u8;
                }
                leaf.value
            }
            Slot::Branch(child) => {
                let child_node = Arc::make_mut(child);
                let value = child_node.remove(id, shift + BITS);
                // Keep the trie canonical: a branch left with one leaf becomes that leaf.
                if let [Slot::Leaf(_)] = child_node.slots.as_slice() {
                    let last = child_node.slots.pop().expect("one slot");
                    self.slots[at - 1] = last;
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
                Some(Slot::Leaf(leaf)) => {
                    self.remaining -= 1;
                    return Some(leaf);
                }
                Some(Slot::Branch(child)) => self.stack.push(child.slots.iter()),
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
        Arc::new(n)
    }

    fn read(map: &Map, id: u32) -> Option<u64> {
        map.get(id).map(|v| *v.downcast_ref::<u64>().unwrap())
    }

    fn check(map: &Map, model: &BTreeMap<u32, u64>) {
        assert_eq!(map.len(), model.len());
        let mut ids: Vec<u32> = map.iter().map(|l| l.id).collect();
        ids.sort_unstable();
        let expected: Vec<u32> = model.keys().copied().collect();
        assert_eq!(ids, expected);
        for (&id, &v) in model {
            assert_eq!(read(map, id), Some(v), "id {id}");
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
        let mut map = Map::new();
        let mut model = BTreeMap::new();
        for (n, &id) in ids.iter().enumerate() {
            assert!(map.insert(id, "v", value(n as u64)).is_none());
            model.insert(id, n as u64);
            check(&map, &model);
        }
        assert_eq!(read(&map, 1 | 5 << 28), None);
        for &id in ids.iter().rev() {
            let snapshot = map.clone();
            assert!(map.remove(id).is_some());
            assert!(map.remove(id).is_none());
            model.remove(&id);
            check(&map, &model);
            // The snapshot is untouched by the removal.
            assert!(read(&snapshot, id).is_some());
        }
        assert!(map.root.is_none());
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn many_ids_against_a_model() {
        let mut map = Map::new();
        let mut model = BTreeMap::new();
        let mut x = 0x9E37_79B9_u32;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let id = if step % 3 == 0 { x } else { x % 2048 };
            if step % 4 == 0 {
                assert_eq!(map.remove(id).is_some(), model.remove(&id).is_some());
            } else {
                let old = map.insert(id, "v", value(step));
                assert_eq!(old.is_some(), model.insert(id, step).is_some());
            }
            if step % 512 == 0 {
                check(&map, &model);
            }
        }
        check(&map, &model);
    }

    #[test]
    fn writes_after_a_copy_do_not_show_in_the_copy() {
        let mut map = Map::new();
        for id in 0..200 {
            map.insert(id, "v", value(u64::from(id)));
        }
        let copy = map.clone();
        assert!(copy.ptr_eq(&map));
        map.insert(7, "v", value(700));
        map.remove(150);
        assert!(!copy.ptr_eq(&map));
        assert_eq!(read(&copy, 7), Some(7));
        assert_eq!(read(&copy, 150), Some(150));
        assert_eq!(read(&map, 7), Some(700));
        assert_eq!(read(&map, 150), None);
    }
}
