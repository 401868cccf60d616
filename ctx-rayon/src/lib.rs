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
//! Wrap every job of a pool that ever runs one of these: a thread waiting inside a job
//! (in `join`, `scope`, or a parallel iterator) takes other jobs meanwhile, and a plain
//! job it takes runs in the waiting job's context.
//!
//! On a pool of your own, [`ThreadPoolExt`] adds `ctx_install`, `ctx_spawn`,
//! `ctx_spawn_fifo` and `ctx_scope` to `rayon::ThreadPool`.
//!
//! # Parallel iterators
//!
//! [`ParallelIteratorExt::in_context`] captures the caller's inherited context; every
//! closure placed after it (`map`, `filter`, `for_each`, `fold`, the reductions) runs
//! in a copy of it, on whichever thread takes the work:
//!
//! ```
//! use ctx_rayon::ParallelIteratorExt;
//! use ctx_vars::{Context, context_var};
//! use rayon::prelude::*;
//!
//! #[context_var]
//! static TENANT: &'static str;
//!
//! Context::new().run(|| {
//!     TENANT.set("acme");
//!     let tagged: Vec<String> = (0..1_000)
//!         .into_par_iter()
//!         .in_context()
//!         .map(|i| format!("{}-{i}", TENANT.get().unwrap_or("?")))
//!         .collect();
//!     assert!(tagged.iter().all(|t| t.starts_with("acme-")));
//! });
//! ```
//!
//! The copy is entered once per piece of work rayon splits the iterator into, not once
//! per item, which keeps the adapter's cost within a few percent of plain rayon's
//! (BENCHMARKS.md). So a `set` made inside one item's closure is seen by the items the
//! same piece goes on to process, as a thread-local would be; it never reaches the
//! caller, other pieces or other threads. Set values for one item with
//! `ContextVar::sync_scope` inside the closure. The adapter is an unindexed parallel
//! iterator: put `zip`, `enumerate` and other indexed adapters before it.

#![cfg_attr(docsrs, feature(doc_cfg))]

use ctx_vars::Context;
use rayon::iter::ParallelIterator;
use rayon::iter::plumbing::{Consumer, Folder, UnindexedConsumer};

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

/// [`in_context`](ParallelIteratorExt::in_context) on every parallel iterator.
pub trait ParallelIteratorExt: ParallelIterator {
    /// The same items, with every closure after this adapter run in a copy of the
    /// caller's inherited context, captured now (see the [crate docs](crate#parallel-iterators)).
    fn in_context(self) -> InContext<Self> {
        InContext {
            base: self,
            context: Context::inherited(),
        }
    }
}

impl<I: ParallelIterator> ParallelIteratorExt for I {}

/// A parallel iterator whose downstream closures run in a captured context: see
/// [`ParallelIteratorExt::in_context`].
#[derive(Debug, Clone)]
#[must_use = "iterator adapters are lazy"]
pub struct InContext<I> {
    base: I,
    context: Context,
}

impl<I: ParallelIterator> ParallelIterator for InContext<I> {
    type Item = I::Item;

    fn drive_unindexed<C>(self, consumer: C) -> C::Result
    where
        C: UnindexedConsumer<Self::Item>,
    {
        let consumer = ContextConsumer {
            base: consumer,
            context: &self.context,
        };
        self.base.drive_unindexed(consumer)
    }

    fn opt_len(&self) -> Option<usize> {
        self.base.opt_len()
    }
}

/// Passes the context down every split; each piece's folder gets a copy of its own.
struct ContextConsumer<'c, C> {
    base: C,
    context: &'c Context,
}

impl<T, C: Consumer<T>> Consumer<T> for ContextConsumer<'_, C> {
    type Folder = ContextFolder<C::Folder>;
    type Reducer = C::Reducer;
    type Result = C::Result;

    fn split_at(self, index: usize) -> (Self, Self, Self::Reducer) {
        let (left, right, reducer) = self.base.split_at(index);
        let context = self.context;
        (
            ContextConsumer {
                base: left,
                context,
            },
            ContextConsumer {
                base: right,
                context,
            },
            reducer,
        )
    }

    fn into_folder(self) -> Self::Folder {
        ContextFolder {
            base: self.base.into_folder(),
            context: self.context.clone(),
        }
    }

    fn full(&self) -> bool {
        self.base.full()
    }
}

impl<T, C: UnindexedConsumer<T>> UnindexedConsumer<T> for ContextConsumer<'_, C> {
    fn split_off_left(&self) -> Self {
        ContextConsumer {
            base: self.base.split_off_left(),
            context: self.context,
        }
    }

    fn to_reducer(&self) -> Self::Reducer {
        self.base.to_reducer()
    }
}

/// One piece's folder: the downstream folder, run inside the piece's copy.
struct ContextFolder<F> {
    base: F,
    context: Context,
}

impl<F> ContextFolder<F> {
    fn run_with<R>(mut self, f: impl FnOnce(F) -> R) -> (R, Context) {
        let base = self.base;
        let out = self.context.run(|| f(base));
        (out, self.context)
    }
}

impl<T, F: Folder<T>> Folder<T> for ContextFolder<F> {
    type Result = F::Result;

    fn consume(self, item: T) -> Self {
        let (base, context) = self.run_with(|base| base.consume(item));
        ContextFolder { base, context }
    }

    /// The whole piece in one entry of the context: the common path, which producers
    /// take for every item they hold.
    fn consume_iter<It>(self, iter: It) -> Self
    where
        It: IntoIterator<Item = T>,
    {
        let (base, context) = self.run_with(|base| base.consume_iter(iter));
        ContextFolder { base, context }
    }

    fn complete(self) -> Self::Result {
        self.run_with(Folder::complete).0
    }

    fn full(&self) -> bool {
        self.base.full()
    }
}
