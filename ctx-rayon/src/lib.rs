//! [rayon](https://docs.rs/rayon)'s `join`, `scope`, `spawn`, `spawn_fifo` and
//! `ThreadPool::install`, each job run in a copy of the caller's ctx context.
//!
//! A rayon job runs on whichever pool thread takes it, so a plain `rayon::join` closure
//! reads the worker thread's context (empty), not the caller's request id. These
//! functions take the same arguments as rayon's and differ in one thing: each closure
//! runs in a copy of the caller's context taken *at the call*, with the variables
//! spawned work inherits ([`Context::inherited`]: not those declared
//! `inherit(false)`). A job's own `set`s stay in its copy: they reach neither the
//! caller nor the other jobs, even when rayon runs the job on the caller's own thread.
//!
//! ```
//! use ctx_vars::{Context, context_var};
//!
//! #[context_var]
//! static REQUEST_ID: u64;
//!
//! Context::new().run(|| {
//!     REQUEST_ID.set(7);
//!     let (a, b) = ctx_rayon::join(
//!         || REQUEST_ID.get(),
//!         || {
//!             REQUEST_ID.set(8); // stays in this job
//!             REQUEST_ID.get()
//!         },
//!     );
//!     assert_eq!((a, b), (Some(7), Some(8)));
//!     assert_eq!(REQUEST_ID.get(), Some(7));
//! });
//! ```
//!
//! On a pool of your own, [`ThreadPoolExt`] adds `ctx_install`, `ctx_spawn`,
//! `ctx_spawn_fifo` and `ctx_scope` to `rayon::ThreadPool`. Parallel iterators are not
//! covered yet: inside one, read the values you need before the iterator
//! (`let id = REQUEST_ID.get();`) and move them into its closures, or run each item's
//! work with `ctx_vars::Context::wrap` on a context captured before.

#![cfg_attr(docsrs, feature(doc_cfg))]

use ctx_vars::Context;

/// `rayon::join`, with each closure in a copy of the caller's inherited context.
pub fn join<A, B, RA, RB>(oper_a: A, oper_b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let context = Context::inherited();
    rayon::join(context.clone().wrap(oper_a), context.wrap(oper_b))
}

/// `rayon::spawn`: `func` runs on the global pool in a copy of the caller's inherited
/// context, taken now.
pub fn spawn<F>(func: F)
where
    F: FnOnce() + Send + 'static,
{
    rayon::spawn(Context::inherited().wrap(func));
}

/// `rayon::spawn_fifo`, with `func` in a copy of the caller's inherited context.
pub fn spawn_fifo<F>(func: F)
where
    F: FnOnce() + Send + 'static,
{
    rayon::spawn_fifo(Context::inherited().wrap(func));
}

/// `rayon::scope`: `op` and every job it spawns through the [`Scope`] run in copies of
/// the inherited context, each taken when the job is spawned.
pub fn scope<'scope, OP, R>(op: OP) -> R
where
    OP: FnOnce(&Scope<'_, 'scope>) -> R + Send,
    R: Send,
{
    let mut context = Context::inherited();
    rayon::scope(move |inner| context.run(|| op(&Scope { inner })))
}

/// A `rayon::Scope` whose spawns carry the context (see [`scope`]).
#[derive(Debug)]
pub struct Scope<'a, 'scope> {
    inner: &'a rayon::Scope<'scope>,
}

impl<'scope> Scope<'_, 'scope> {
    /// `rayon::Scope::spawn`: `body` runs in a copy of the inherited context of the
    /// spawning code, taken now.
    pub fn spawn<BODY>(&self, body: BODY)
    where
        BODY: FnOnce(&Scope<'_, 'scope>) + Send + 'scope,
    {
        let mut context = Context::inherited();
        self.inner
            .spawn(move |inner| context.run(|| body(&Scope { inner })));
    }

    /// The rayon scope underneath, for what this wrapper does not offer (its spawns do
    /// not carry the context).
    pub fn rayon(&self) -> &rayon::Scope<'scope> {
        self.inner
    }
}

/// `rayon::ThreadPool`'s entry points, carrying the caller's context: call them where
/// you would call `install`, `spawn`, `spawn_fifo` and `scope`.
pub trait ThreadPoolExt {
    /// `ThreadPool::install`: `op` runs in the pool, in a copy of the caller's
    /// inherited context.
    fn ctx_install<OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce() -> R + Send,
        R: Send;

    /// `ThreadPool::spawn`, with `op` in a copy of the caller's inherited context.
    fn ctx_spawn<OP>(&self, op: OP)
    where
        OP: FnOnce() + Send + 'static;

    /// `ThreadPool::spawn_fifo`, with `op` in a copy of the caller's inherited context.
    fn ctx_spawn_fifo<OP>(&self, op: OP)
    where
        OP: FnOnce() + Send + 'static;

    /// `ThreadPool::scope`, as [`scope`] does on the global pool.
    fn ctx_scope<'scope, OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce(&Scope<'_, 'scope>) -> R + Send,
        R: Send;
}

impl ThreadPoolExt for rayon::ThreadPool {
    fn ctx_install<OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce() -> R + Send,
        R: Send,
    {
        self.install(Context::inherited().wrap(op))
    }

    fn ctx_spawn<OP>(&self, op: OP)
    where
        OP: FnOnce() + Send + 'static,
    {
        self.spawn(Context::inherited().wrap(op));
    }

    fn ctx_spawn_fifo<OP>(&self, op: OP)
    where
        OP: FnOnce() + Send + 'static,
    {
        self.spawn_fifo(Context::inherited().wrap(op));
    }

    fn ctx_scope<'scope, OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce(&Scope<'_, 'scope>) -> R + Send,
        R: Send,
    {
        let mut context = Context::inherited();
        self.scope(move |inner| context.run(|| op(&Scope { inner })))
    }
}
