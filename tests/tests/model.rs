//! Property test: random programs of set / reset / copy / run / with_value / without /
//! sync_scope over several variables of both flow policies, checked against a model
//! built on `BTreeMap` after every step.

use std::collections::BTreeMap;

use ctx_tests::fresh;
use ctx_vars::{Context, ContextVar, ResetError, Token};
use proptest::prelude::*;

static V0: ContextVar<u8> = ContextVar::new("v0");
static V1: ContextVar<u8> = ContextVar::with_default("v1", || 100);
static V2: ContextVar<u8> = ContextVar::new("v2");
static L3: ContextVar<u8> = ContextVar::new("l3").inherit(false);
static L4: ContextVar<u8> = ContextVar::with_default("l4", || 50).inherit(false);
const N: usize = 5;
static VARS: [&ContextVar<u8>; N] = [&V0, &V1, &V2, &L3, &L4];
const DEFAULTS: [Option<u8>; N] = [None, Some(100), None, None, Some(50)];
/// Which variables spawned tasks do not inherit.
const LOCAL: [bool; N] = [false, false, false, true, true];

#[derive(Debug, Clone)]
enum Op {
    Set(usize, u8),
    /// Reset the `n`th live token (modulo), through variable `var`.
    Reset {
        n: usize,
        var: usize,
    },
    /// Save a copy of the current context.
    Copy,
    /// Save what a task spawned now would start with.
    Inherited,
    /// Replace saved copy `n` with itself without a variable.
    Without(usize, usize),
    /// Enter saved copy `n` (modulo) and run the nested program in it.
    Run(usize, Vec<Op>),
    /// Replace saved copy `n` with itself plus a value.
    WithValue(usize, usize, u8),
    /// Drop saved copy `n`.
    Forget(usize),
    /// Run the nested program inside `var.sync_scope(value, ..)`.
    SyncScope(usize, u8, Vec<Op>),
}

fn op() -> impl Strategy<Value = Op> {
    let leaf = prop_oneof![
        4 => (0..N, any::<u8>()).prop_map(|(v, x)| Op::Set(v, x)),
        3 => (any::<usize>(), 0..N).prop_map(|(n, var)| Op::Reset { n, var }),
        2 => Just(Op::Copy),
        1 => Just(Op::Inherited),
        1 => (any::<usize>(), 0..N, any::<u8>()).prop_map(|(n, v, x)| Op::WithValue(n, v, x)),
        1 => (any::<usize>(), 0..N).prop_map(|(n, v)| Op::Without(n, v)),
        1 => any::<usize>().prop_map(Op::Forget),
    ];
    leaf.prop_recursive(3, 64, 12, |inner| {
        prop_oneof![
            (any::<usize>(), prop::collection::vec(inner.clone(), 0..12))
                .prop_map(|(n, ops)| Op::Run(n, ops)),
            (0..N, any::<u8>(), prop::collection::vec(inner, 0..12))
                .prop_map(|(v, x, ops)| Op::SyncScope(v, x, ops)),
        ]
    })
}

type Model = BTreeMap<usize, u8>;

/// A context identity in the model: tokens are accepted only where they were made.
type Tag = u64;

struct Saved {
    ctx: Option<Context>, // `None` while it is entered
    model: Model,
    tag: Tag,
}

struct LiveToken {
    token: Token<u8>,
    var: usize,
    tag: Tag,
    old: Option<u8>,
}

struct Machine {
    saved: Vec<Saved>,
    tokens: Vec<LiveToken>,
    next_tag: Tag,
}

impl Machine {
    fn check(&self, model: &Model) {
        let current = Context::current();
        assert_eq!(current.len(), model.len());
        for (i, var) in VARS.iter().enumerate() {
            let set = model.get(&i).copied();
            assert_eq!(var.get(), set.or(DEFAULTS[i]), "get of v{i}");
            assert_eq!(var.get_or(7), set.unwrap_or(7), "get_or of v{i}");
            assert_eq!(
                var.with(|v| v.copied()),
                set.or(DEFAULTS[i]),
                "with of v{i}"
            );
            assert_eq!(current.get(var).copied(), set, "Context::get of v{i}");
            assert_eq!(current.contains(var), set.is_some());
        }
        let mut names: Vec<_> = current.iter().map(|(info, _)| info.name()).collect();
        names.sort_unstable();
        let mut expected: Vec<_> = model.keys().map(|i| VARS[*i].name()).collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
        for saved in &self.saved {
            if let Some(ctx) = &saved.ctx {
                for (i, var) in VARS.iter().enumerate() {
                    assert_eq!(ctx.get(var).copied(), saved.model.get(&i).copied());
                }
            }
        }
        for live in &self.tokens {
            assert_eq!(live.token.old_value().copied(), live.old);
        }
    }

    fn exec(&mut self, ops: &[Op], model: &mut Model, tag: Tag) {
        for op in ops {
            match op {
                Op::Set(var, value) => {
                    let token = VARS[*var].set(*value);
                    let old = model.insert(*var, *value);
                    self.tokens.push(LiveToken {
                        token,
                        var: *var,
                        tag,
                        old,
                    });
                }
                Op::Reset { n, var } => {
                    if self.tokens.is_empty() {
                        continue;
                    }
                    let live = self.tokens.remove(n % self.tokens.len());
                    let result = VARS[*var].reset(live.token);
                    if live.var != *var {
                        assert_eq!(result, Err(ResetError::WrongVar));
                    } else if live.tag != tag {
                        assert_eq!(result, Err(ResetError::WrongContext));
                    } else {
                        assert_eq!(result, Ok(()));
                        match live.old {
                            Some(old) => model.insert(*var, old),
                            None => model.remove(var),
                        };
                    }
                }
                Op::Copy => {
                    self.next_tag += 1;
                    self.saved.push(Saved {
                        ctx: Some(Context::current()),
                        model: model.clone(),
                        tag: self.next_tag,
                    });
                }
                Op::Inherited => {
                    self.next_tag += 1;
                    let mut inherited = model.clone();
                    inherited.retain(|var, _| !LOCAL[*var]);
                    self.saved.push(Saved {
                        ctx: Some(Context::inherited()),
                        model: inherited,
                        tag: self.next_tag,
                    });
                }
                Op::Without(n, var) => {
                    if self.saved.is_empty() {
                        continue;
                    }
                    let at = n % self.saved.len();
                    if let Some(ctx) = self.saved[at].ctx.take() {
                        self.saved[at].ctx = Some(ctx.without(VARS[*var]));
                        self.saved[at].model.remove(var);
                    }
                }
                Op::Run(n, nested) => {
                    if self.saved.is_empty() {
                        continue;
                    }
                    let at = n % self.saved.len();
                    let Some(mut ctx) = self.saved[at].ctx.take() else {
                        continue; // already entered further up
                    };
                    let mut inner = self.saved[at].model.clone();
                    let inner_tag = self.saved[at].tag;
                    ctx.run(|| {
                        self.check(&inner);
                        self.exec(nested, &mut inner, inner_tag);
                    });
                    // Forget may have shifted indices; find the entry again by tag.
                    if let Some(saved) = self.saved.iter_mut().find(|s| s.tag == inner_tag) {
                        saved.ctx = Some(ctx);
                        saved.model = inner;
                    }
                }
                Op::SyncScope(var, value, nested) => {
                    // As if run in a copy of the current context, plus one value.
                    self.next_tag += 1;
                    let inner_tag = self.next_tag;
                    let mut inner = model.clone();
                    inner.insert(*var, *value);
                    VARS[*var].sync_scope(*value, || {
                        self.check(&inner);
                        self.exec(nested, &mut inner, inner_tag);
                    });
                }
                Op::WithValue(n, var, value) => {
                    if self.saved.is_empty() {
                        continue;
                    }
                    let at = n % self.saved.len();
                    if let Some(ctx) = self.saved[at].ctx.take() {
                        self.saved[at].ctx = Some(ctx.with_value(VARS[*var], *value));
                        self.saved[at].model.insert(*var, *value);
                    }
                }
                Op::Forget(n) => {
                    if self.saved.is_empty() {
                        continue;
                    }
                    let at = n % self.saved.len();
                    if self.saved[at].ctx.is_some() {
                        self.saved.remove(at);
                    }
                }
            }
            self.check(model);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn behaves_like_the_model(ops in prop::collection::vec(op(), 0..48)) {
        fresh(|| {
            let mut machine = Machine { saved: Vec::new(), tokens: Vec::new(), next_tag: 0 };
            let mut model = Model::new();
            machine.check(&model);
            machine.exec(&ops, &mut model, 0);
        });
    }
}
