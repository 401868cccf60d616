//! A `Token` cannot be retyped by subtyping: reading it would then see a value of the
//! wrong type.
use ctx_vars::{ContextVar, ResetGuard, Token};

type Generic = for<'a> fn(&'a u8) -> u8;
type Specific = fn(&'static u8) -> u8;

fn retype(token: Token<Generic>) -> Token<Specific> {
    token
}

fn retype_guard<'v>(guard: ResetGuard<'v, Generic>) -> ResetGuard<'v, Specific> {
    guard
}

static F: ContextVar<Generic> = ContextVar::new("f");

fn main() {
    let _ = retype(F.set(|x| *x));
    let _ = retype_guard(F.set_scoped(|x| *x));
}
