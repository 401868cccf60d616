//! [`Value`]: one variable's value, as a context's map stores it.
//!
//! # Two ways to hold a value
//!
//! A context is copied on every spawn and its map copied on write, so a value must be
//! cheap to share. Most values are shared behind an [`Arc`]: copying the map costs a
//! reference count, and the value is dropped once, with the last map holding it.
//!
//! Most values people keep in a context are small and plain, though: request and user
//! ids, flags, deadlines, `&'static str` names. For those the `Arc` is most of what a
//! `set` costs (its allocation and free were ~170 of the 632 instructions of a `set` +
//! `reset`), and a `sync_scope` allocates for nothing but that. So values of the plain
//! types listed in [`is_inline`] (integers, floats, `bool`, `char`, `&'static str`,
//! `Duration`, `Instant`, `SystemTime`, some `Option`s and `NonZero`s of them) are stored
//! *inline*, in the map's slot: copying one is copying its bytes, and dropping one is
//! nothing. Which way a value is held depends only on its type, so a variable's values
//! are all held the same way, and a read knows which at compile time (the type tests
//! fold to a constant).
//!
//! Why a list, and not every small type without drop glue: a copy must be
//! indistinguishable from the shared value, and a small `Sync` type can still hold state
//! that changes behind `&` (an `AtomicU64`): a copy of it would not see the changes.
//! Stable Rust cannot ask whether a type is free of such interior mutability (or is
//! `Copy`), so only types known to be are stored inline; values of other types,
//! newtypes over these included, are shared.

//! # Identity
//!
//! A `set` must be told apart from an equal one: a [`ResetGuard`](crate::ResetGuard)
//! resets only while its own set is in place, and
//! [`Context::changed_since`](crate::Context::changed_since) keeps what was set since a
//! copy, even an equal value.
//! A shared value's identity is its allocation; an inline value carries a stamp drawn
//! once when it is made, never given twice, and kept by its copies.

use std::any::{Any, TypeId};
use std::mem::{self, MaybeUninit};
use std::sync::{Arc, Weak};

/// The most bytes a value stored inline may take.
const INLINE: usize = 16;

/// Whether values of type `T` are stored inline (see the module documentation): `T` is
/// one of these plain types, and fits. Each test folds to a constant once `T` is known.
#[inline(always)]
pub(crate) fn is_inline<T: 'static>() -> bool {
    use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
    use std::time::{Duration, Instant, SystemTime};

    fn is<T: 'static, U: 'static>() -> bool {
        TypeId::of::<T>() == TypeId::of::<U>()
    }
    let fits = mem::size_of::<T>() <= INLINE
        && mem::align_of::<T>() <= mem::align_of::<Bits>()
        && !mem::needs_drop::<T>();
    fits && (is::<T, u64>()
        || is::<T, u32>()
        || is::<T, u16>()
        || is::<T, u8>()
        || is::<T, usize>()
        || is::<T, i64>()
        || is::<T, i32>()
        || is::<T, i16>()
        || is::<T, i8>()
        || is::<T, isize>()
        || is::<T, f64>()
        || is::<T, f32>()
        || is::<T, bool>()
        || is::<T, char>()
        || is::<T, ()>()
        || is::<T, &'static str>()
        || is::<T, NonZeroU64>()
        || is::<T, NonZeroU32>()
        || is::<T, NonZeroUsize>()
        || is::<T, Option<NonZeroU64>>()
        || is::<T, Option<u64>>()
        || is::<T, Option<u32>>()
        || is::<T, Option<&'static str>>()
        || is::<T, Duration>()
        || is::<T, Instant>()
        || is::<T, SystemTime>())
}

/// A value stored in a context; `Clone` shares it (a reference count, or a copy of
/// its bytes).
#[derive(Clone)]
pub(crate) struct Value(Repr);

#[derive(Clone)]
enum Repr {
    /// Shared by every map holding it.
    Shared(Arc<dyn Any + Send + Sync>),
    /// Copied with the slot that holds it.
    Inline(Inline),
}

/// A value stored in its slot: only ever made by [`Value::new`] from a `T` for which
/// [`is_inline`] holds, whose bytes `bits` holds and whose `as_any` is `as_any::<T>`.
#[derive(Clone, Copy)]
struct Inline {
    bits: Bits,
    /// The value's identity (see the module documentation).
    stamp: u64,
    /// The value as `dyn Any`, for [`Value::as_any`]: the vtable an `Arc` would carry.
    as_any: fn(&Bits) -> &(dyn Any + Send + Sync),
}

/// Room for an inline value's bytes, aligned for any type [`is_inline`] admits (the
/// layout test checks that it admits every type it lists).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Bits(MaybeUninit<[u8; INLINE]>);

impl Value {
    /// `value`, held inline if its type allows it (see [`is_inline`]), else shared.
    #[inline(always)]
    #[expect(unsafe_code, reason = "stores a small value in place, without an Arc")]
    pub(crate) fn new<T: Send + Sync + 'static>(value: T) -> Self {
        if !is_inline::<T>() {
            return Value(Repr::Shared(Arc::new(value)));
        }
        let mut bits = Bits(MaybeUninit::uninit());
        let place = bits.0.as_mut_ptr().cast::<T>();
        // SAFETY: `place` points into `bits`, which `is_inline::<T>()` (checked above)
        // guarantees is large enough for a `T` (size at most `INLINE`) and aligned for
        // one (`Bits` is aligned to 8, a `T` needs at most that). The write moves
        // `value` in; it is never dropped, which `is_inline` allows: `T` has no drop
        // glue. Its bytes are copied with the slot holding it, which `is_inline` allows
        // too: `T` is one of a list of `Copy` types without interior mutability.
        unsafe {
            place.write(value);
        }
        Value(Repr::Inline(Inline {
            bits,
            stamp: crate::current::next_context_id(),
            as_any: as_any::<T>,
        }))
    }

    /// The value as the `T` it was made from.
    ///
    /// The caller guarantees that it was made from a `T` (by [`Value::new`]); a debug
    /// build checks it.
    #[inline(always)]
    #[expect(
        unsafe_code,
        reason = "skips a type check that the id discipline makes redundant"
    )]
    pub(crate) fn downcast<T: 'static>(&self) -> &T {
        debug_assert!(
            self.as_any().is::<T>(),
            "ctx: a context entry holds its variable's type"
        );
        // SAFETY: the caller guarantees this value was made by `Value::new::<T>`, which
        // stores it inline exactly when `is_inline::<T>()` holds: the variant matched
        // below is the one `new` built, and the last arm is unreachable.
        // - Inline: `bits` holds the bytes of a `T`, written by `new` in place, aligned
        //   for `T`, never dropped nor overwritten while `self` lives (`Inline` is only
        //   copied whole), so it reads back as a valid `T` for `self`'s lifetime.
        // - Shared: the `Arc` was made from a `T`, so its data pointer points to a live
        //   `T` for as long as `self` holds the `Arc`.
        //
        // Why callers can guarantee the type (the id discipline): entries are keyed by
        // variable id, and ids are unique per `ContextVar`: one is taken from a counter
        // that never wraps (`assign_id` panics first), at most once per variable (a
        // compare-exchange from 0), and a `ContextVar` cannot be cloned. Every insertion
        // under a `ContextVar<T>`'s key (its id, in the trie its policy picks) stores a
        // `T`: `write`, `sync_scope` and `Context::with_value` take a `T`; `reset` stores
        // only the value its `Token<T>` took out of the same id (a token from another id
        // is `WrongVar`, and `Token` is invariant in `T`, so a token cannot be retyped),
        // leaving a `sync_scope` only what the scope took out of its own id, and undoing
        // an abandoned guard only the old value that guard's `Token<T>` held, under its
        // own id. All of this holds only because `ContextVar` is invariant in `T` too
        // (its `PhantomData<fn(T) -> T>`): a covariant `&ContextVar<U>` could be used as
        // a `&ContextVar<T>` for a supertype `T` and write a `U` where `T`s are read, or
        // the reverse. `ContextVar`, `Token` and `ResetGuard` have `compile_fail`
        // doctests that keep them invariant. The one entry that is no variable's (a
        // context's end signal, id 0) is read through the checked `as_any` only. Every
        // test, the property test included, runs with the `debug_assert` above.
        unsafe {
            match (&self.0, is_inline::<T>()) {
                (Repr::Inline(inline), true) => &*inline.bits.0.as_ptr().cast::<T>(),
                (Repr::Shared(shared), false) => &*Arc::as_ptr(shared).cast::<T>(),
                _ => std::hint::unreachable_unchecked(),
            }
        }
    }

    /// The value as `dyn Any`, for callers that check its type.
    #[inline]
    pub(crate) fn as_any(&self) -> &(dyn Any + Send + Sync) {
        match &self.0 {
            Repr::Shared(shared) => &**shared,
            Repr::Inline(inline) => (inline.as_any)(&inline.bits),
        }
    }

    /// Whether `self` and `other` are the same value: the same set, not merely equal.
    #[inline]
    pub(crate) fn same(&self, other: &Value) -> bool {
        match (&self.0, &other.0) {
            (Repr::Shared(a), Repr::Shared(b)) => Arc::ptr_eq(a, b),
            (Repr::Inline(a), Repr::Inline(b)) => a.stamp == b.stamp,
            _ => false,
        }
    }

    /// A handle that tells this value apart from every other without keeping it alive.
    pub(crate) fn downgrade(&self) -> WeakValue {
        WeakValue(match &self.0 {
            Repr::Shared(shared) => WeakRepr::Shared(Arc::downgrade(shared)),
            Repr::Inline(inline) => WeakRepr::Inline(inline.stamp),
        })
    }
}

/// A value's identity, without the value: see [`Value::downgrade`].
pub(crate) struct WeakValue(WeakRepr);

enum WeakRepr {
    /// Keeps the allocation (not the value), so that no later value takes its address.
    Shared(Weak<dyn Any + Send + Sync>),
    Inline(u64),
}

impl WeakValue {
    /// Whether `value` is the value this was made from (or a copy of it).
    pub(crate) fn is(&self, value: &Value) -> bool {
        match (&self.0, &value.0) {
            (WeakRepr::Shared(weak), Repr::Shared(shared)) => {
                std::ptr::addr_eq(weak.as_ptr(), Arc::as_ptr(shared))
            }
            (WeakRepr::Inline(stamp), Repr::Inline(inline)) => *stamp == inline.stamp,
            _ => false,
        }
    }
}

/// An inline `T` as `dyn Any`: the `as_any` of every [`Inline`] made from a `T`.
#[expect(unsafe_code, reason = "reads a value stored in place")]
fn as_any<T: Send + Sync + 'static>(bits: &Bits) -> &(dyn Any + Send + Sync) {
    // SAFETY: `Value::new::<T>` pairs this function only with `bits` it wrote a `T`
    // into (aligned and large enough, see there), and `Inline`'s fields are private to
    // this module and copied only together: `bits` holds a valid `T` for as long as the
    // borrow of it lasts.
    unsafe { &*bits.0.as_ptr().cast::<T>() }
}

#[cfg(test)]
mod tests {
    use super::{INLINE, Value, is_inline};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant, SystemTime};

    #[test]
    fn plain_types_are_inline_and_the_rest_shared() {
        assert!(is_inline::<u64>() && is_inline::<bool>() && is_inline::<()>());
        assert!(is_inline::<&'static str>() && is_inline::<Option<u64>>());
        assert!(is_inline::<Duration>() && is_inline::<Instant>());
        assert!(is_inline::<SystemTime>() && is_inline::<char>());
        // Small, no drop glue, but a copy would not see its changes.
        assert!(!is_inline::<AtomicU64>() && !is_inline::<&'static AtomicU64>());
        // Not on the list, or too big, or with drop glue.
        assert!(!is_inline::<(u64, u32)>() && !is_inline::<[u8; INLINE + 1]>());
        assert!(!is_inline::<String>() && !is_inline::<Box<u8>>() && !is_inline::<Arc<u8>>());
        // A value is no bigger than a shared one with a stamp and a vtable beside it.
        assert!(std::mem::size_of::<Value>() <= 32);
    }

    #[test]
    fn identity_is_the_set_not_the_value() {
        let (a, b) = (Value::new(7_u64), Value::new(7_u64));
        assert!(a.same(&a.clone()) && !a.same(&b));
        let weak = a.downgrade();
        assert!(weak.is(&a.clone()) && !weak.is(&b));
        let (s, t) = (Value::new(String::from("x")), Value::new(String::from("x")));
        assert!(s.same(&s.clone()) && !s.same(&t) && !s.same(&a));
        assert!(s.downgrade().is(&s) && !s.downgrade().is(&a));
        assert_eq!(a.downcast::<u64>(), &7);
        assert_eq!(a.as_any().downcast_ref::<u64>(), Some(&7));
        assert_eq!(s.downcast::<String>(), "x");
    }

    #[test]
    fn inline_values_read_back_through_copies() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let values = [
            Value::new(deadline),
            Value::new("name"),
            Value::new(Some(u64::MAX)),
            Value::new(-1_i8),
        ];
        let copies = values.clone();
        drop(values);
        assert_eq!(copies[0].downcast::<Instant>(), &deadline);
        assert_eq!(copies[1].downcast::<&str>(), &"name");
        assert_eq!(copies[2].downcast::<Option<u64>>(), &Some(u64::MAX));
        assert_eq!(copies[3].as_any().downcast_ref::<i8>(), Some(&-1));
    }
}
