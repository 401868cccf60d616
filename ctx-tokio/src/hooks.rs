//! Every tokio task in a context of its own, whoever spawns it: tokio's task hooks.
//!
//! ctx's `spawn` functions carry the caller's context into the tasks *you* spawn. A task
//! that a library spawns with plain `tokio::spawn` (hyper's connection tasks, a driver's
//! background work) is not wrapped: it runs in its worker thread's own context. Installed
//! on the runtime's [`Builder`], [`TaskHooks`] close that gap for every task:
//!
//! - [`TaskHooks::inherit`]: each task runs in a copy of its spawner's context (the
//!   inheritable variables, as [`Context::inherited`] takes them), with its own `set`s
//!   kept from one poll to the next: what ctx's `spawn` does, for every task.
//! - [`TaskHooks::isolate`]: each task runs in an empty context of its own, so a `set` in
//!   a library's task can never reach the next task polled on that worker. With strict
//!   mode on, a task that ends with values set is reported with where it was spawned.
//!
//! ```
//! use ctx_tokio::{Context, ContextVar, hooks::TaskHooks};
//!
//! static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
//!
//! let mut builder = tokio::runtime::Builder::new_multi_thread();
//! TaskHooks::inherit().install(&mut builder);
//! let runtime = builder.enable_all().build().unwrap();
//!
//! # Context::new().run(|| {
//! REQUEST_ID.set(7);
//! let seen = ctx_tokio::block_on(&runtime, async {
//!     // A library's own `tokio::spawn`, and what it sees:
//!     tokio::spawn(async { REQUEST_ID.get() }).await.unwrap()
//! });
//! assert_eq!(seen, Some(7));
//! # });
//! ```
//!
//! Task hooks are an unstable tokio API: build with `RUSTFLAGS="--cfg tokio_unstable"`
//! (or `rustflags = ["--cfg", "tokio_unstable"]` under `[build]` in
//! `.cargo/config.toml`; a `RUSTFLAGS` in the environment replaces that) and this
//! crate's `hooks` feature, as console-subscriber requires. tokio keeps one callback of
//! each kind per runtime, so install your own through [`TaskHooks::on_task_spawn`] and
//! its siblings, which chain them with ctx's.
//!
//! # Setting up
//!
//! `#[ctx_tokio::main]`, `#[ctx_tokio::test]` and [`runtime::Builder`](crate::runtime::Builder)
//! install `inherit` and put strict mode with it, on both flavors. The two work
//! together: with the hooks every task has a context of its own, so a task's `set` lands
//! there, never in its worker's; strict mode still guards the code that runs outside any
//! task on those threads (another library's own thread-start or task hooks), and under
//! `isolate` it turns a task that ends with values set into a report. The root future
//! of `block_on` is not a task, and a current-thread runtime polls every task on the
//! thread that calls `block_on`: run it with [`strict::block_on`](crate::strict::block_on)
//! (the builder's `Runtime::block_on` does), so that the root future has a context of
//! its own and the thread's own context stays out of reach.
//!
//! # Tasks that outlive their request
//!
//! A library spawns some tasks during one request and keeps them for later ones: a
//! pooled HTTP connection (hyper-util's client, reqwest), a database driver started on
//! first use (tokio-postgres, deadpool, sqlx), a multiplexed connection (redis). Under
//! `inherit`, such a task starts with the request's values, and if it kept them, every
//! line it logs later, for whichever request it then serves, would carry the first
//! request's id: a wrong value, worse than none, and the values (a database transaction,
//! a user) kept alive as long as the connection.
//!
//! So inheritance is bound to the request: a task spawned from an
//! [endable](Context::endable) context sees the values it inherited only until that
//! context ends. `ContextLayer` (the `tower` feature) makes every request's context
//! endable and ends it when the response body has sent its last frame (or is dropped);
//! make your own with [`Context::endable`] where work that is not an HTTP request (a
//! queue message, a job) spawns through libraries. At the end:
//!
//! - each such task's stored context is stripped at once to what the task set itself
//!   ([`Context::changed_since`] the context it inherited): the request's values are
//!   dropped then, not at the task's next poll, which for an idle pooled connection may
//!   be minutes away;
//! - a task under way when the request ends goes on with its values until that poll
//!   returns, and is stripped before it is stored again: its lines logged in a poll
//!   that started while the request was in flight may carry the request's id, none
//!   after;
//! - a task spawned from the context after its end inherits nothing of it.
//!
//! Each poll checks one flag for this (a task that inherited from no endable context
//! checks a null pointer). A pooled connection opened by request 1 and reused by
//! request 2 while request 1 is still in flight logs request 1's id for that while:
//! the hooks cannot know which request a library's task works for. Tasks you spawn with
//! ctx's own [`spawn`](crate::spawn) are not bound: they carry the context because you
//! asked them to.
//!
//! `isolate` is the other answer to pools: no task inherits anything, so none can show
//! a wrong value, and none shows a right one either. Pick it as a leak guard (a `set` in
//! a library's task never reaches the next task on its worker), with ctx's `spawn`
//! where you want propagation; pick `inherit` to give libraries' tasks the request's
//! values, bounded as above.
//!
//! # Where the hooks do not fire
//!
//! tokio runs no task hooks for `spawn_blocking` closures, for tasks on a `LocalSet`, and
//! for the future given to `block_on`. Use ctx's own [`spawn_blocking`](crate::spawn_blocking),
//! [`spawn_local`](crate::spawn_local) and [`block_on`](crate::block_on) there: they carry
//! the context as they always do.
//!
//! A library's own `spawn_blocking` cannot be reached from outside. In tokio 1.54,
//! `spawn_blocking` creates its task with `task::unowned` in
//! `runtime/blocking/pool.rs` (`spawn_blocking_inner`) and never calls the spawn hook,
//! and the blocking pool's scheduler (`runtime/blocking/schedule.rs`) hands its tasks
//! only the terminate callback: no hook runs on the spawner's thread, where the context
//! is, nor before the closure runs. `on_thread_start` runs for blocking threads too,
//! but knows neither the task nor its spawner. Such a closure runs in its blocking
//! thread's own context, which is empty. Tasks spawned with ctx's adapters run in the context
//! their wrapper carries; the hooks store nothing for them, and give them an empty
//! context around it (so a poll costs what `isolate` costs, not a second copy).
//!
//! # The per-task store
//!
//! tokio's hooks see a task's id, not the task: each task's context has to be kept
//! beside it, in a map from id to context that every worker reaches. A single global
//! `Mutex<HashMap>` was measured at 52–72 ns a poll (two lock round trips on one
//! contended line, and a hash map's work on each side). Here the store is split into 64
//! shards by the id's low bits (tokio's ids are sequential: neighbours go to different
//! shards), each behind a lock of its own, starting a cache line of its own: a poll
//! takes its task's context out of its shard and puts it back after, two uncontended
//! lock round trips on a line that no other task's poll is likely to touch.
//!
//! Inside a shard, each id has a place of its own, picked by its next bits: 4 096
//! places in all, found without hashing, and taken in order by tasks spawned one after
//! another. A task whose place is held by another task's context when its own is stored
//! goes to the shard's hash map instead, whose buckets also follow the ids' order. So a
//! runtime with up to a few thousand tasks holding contexts at once rarely hashes, and
//! a burst of spawns, then of first polls, walks memory in order rather than touching a
//! random cache line each (with buckets scattered by a hash, a task spawned and joined
//! measured 1.75× a hook-less one; it measures about 1.5× now).
//!
//! A task whose context is empty (nothing inherited, nothing set) has no entry, and each
//! shard keeps its count where a poll can read it without the lock: polls of such tasks
//! in an empty shard take no lock at all. Every task enters its context with
//! [`Context::enter`], which keeps the worker's own context aside on the thread until
//! the poll ends, and leaves it again after the poll.
//!
//! # When things go wrong
//!
//! - A user hook chained through [`TaskHooks`] that panics cannot leave the thread in
//!   the task's context: the task's context is left before the panic goes on.
//! - Polls nest when a task starts a runtime of its own inside
//!   `tokio::task::block_in_place`: the inner runtime's tasks are polled while the outer
//!   task's poll is under way, and each keeps its own context.
//! - A task spawned through a retained `Handle` onto a runtime that has shut down is
//!   never polled (tokio reports its end before its spawn): nothing is stored for it.
//! - When a runtime is dropped with tasks still pending, tokio drops their futures
//!   without running any hook first (it reports each task's end only after its future
//!   is dropped), so no hook can enter a task's own context for it. A multi-thread
//!   runtime drops them on its workers, whose own contexts are empty; a current-thread
//!   runtime drops them on the thread that drops it, in that thread's context, where
//!   their `Drop` would read its values and a `set` would land. Drop a current-thread
//!   runtime with [`shutdown`], which drops it in an empty context of its own.
//!
//! A lock-free store was not chosen: it would need `unsafe` (a context moved through an
//! atomic pointer) or a box allocated for every task. It would take a context with one
//! atomic exchange and put it back with a plain store, where two lock round trips pay
//! four read-modify-writes: about 7 ns a poll on the machine BENCHMARKS.md was measured
//! on, where `inherit` cost 28–62 ns a poll, and `isolate`, which no store can make
//! cheaper, 23–38 ns.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::ManuallyDrop;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ctx_vars::{Context, EndSignal, EndWatcher, Entry, strict};
use tokio::runtime::{Builder, Runtime, TaskMeta};
use tokio::task::Id;

/// A user's hook, chained with ctx's.
type Callback = Arc<dyn Fn(&TaskMeta<'_>) + Send + Sync>;
/// What [`TaskHooks::on_leak`] is given.
type LeakCallback = Arc<dyn Fn(&Leak) + Send + Sync>;
/// What [`TaskHooks::on_unwrapped`] is given.
type UnwrappedCallback = Arc<dyn Fn(&Unwrapped) + Send + Sync>;

/// What the tasks start with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Inherit,
    Isolate,
}

/// Context for every task of a tokio runtime, through its task hooks: see the
/// [module docs](self).
#[derive(Clone)]
pub struct TaskHooks {
    mode: Mode,
    on_spawn: Option<Callback>,
    before_poll: Option<Callback>,
    after_poll: Option<Callback>,
    on_terminate: Option<Callback>,
    on_leak: Option<LeakCallback>,
    audit: bool,
    on_unwrapped: Option<UnwrappedCallback>,
}

/// A spawn site that [`TaskHooks::audit`] found: work spawned there runs without the
/// spawner's values unless the hooks give them.
#[derive(Clone, Debug)]
pub struct Unwrapped {
    /// Where the work was spawned.
    pub spawned_at: &'static Location<'static>,
    /// What was spawned.
    pub kind: SpawnKind,
    /// The variables the spawner's context held (its inherited ones), the first time
    /// the site was seen; empty for [`SpawnKind::Blocking`], whose spawner no hook sees.
    pub variables: Vec<&'static str>,
}

/// What an [`Unwrapped`] site spawned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpawnKind {
    /// A task, with `tokio::spawn` or a `Handle`'s or `JoinSet`'s `spawn`.
    Task,
    /// A closure, with `tokio::task::spawn_blocking`.
    Blocking,
}

impl fmt::Display for Unwrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SpawnKind::Task => write!(
                f,
                "ctx audit: plain `tokio::spawn` at {} from a context holding {:?}: without \
                 `TaskHooks::inherit` the task runs without them. Spawn it with \
                 `ctx_tokio::spawn`, or give the future `.in_inherited_context()`",
                self.spawned_at, self.variables
            ),
            SpawnKind::Blocking => write!(
                f,
                "ctx audit: plain `spawn_blocking` at {}: tokio runs no hook where a blocking \
                 closure is spawned, so it ran in its blocking thread's empty context. If it \
                 reads context variables, spawn it with `ctx_tokio::spawn_blocking`",
                self.spawned_at
            ),
        }
    }
}

/// A task that ended with values set in its own context, under [`TaskHooks::isolate`]
/// with strict mode on: given to [`TaskHooks::on_leak`].
#[derive(Clone, Debug)]
pub struct Leak {
    /// The task's id.
    pub task: Id,
    /// Where the task was spawned.
    pub spawned_at: &'static Location<'static>,
    /// The names of the variables it left set.
    pub variables: Vec<&'static str>,
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ctx strict: task {} spawned at {} ended with {:?} set in its context; without \
             isolation they would have stayed on its worker thread for the next task. Set \
             them in a scope (`VAR.scope`, `VAR.sync_scope`), or spawn the task with \
             `ctx_tokio::spawn` so that it carries its creator's context",
            self.task, self.spawned_at, self.variables
        )
    }
}

impl TaskHooks {
    fn new(mode: Mode) -> Self {
        TaskHooks {
            mode,
            on_spawn: None,
            before_poll: None,
            after_poll: None,
            on_terminate: None,
            on_leak: None,
            audit: false,
            on_unwrapped: None,
        }
    }

    /// Every task runs in a copy of its spawner's context, and keeps its own `set`s from
    /// poll to poll.
    pub fn inherit() -> Self {
        TaskHooks::new(Mode::Inherit)
    }

    /// Every task runs in an empty context of its own, and keeps its own `set`s from poll
    /// to poll; with strict mode on, one that ends with values set is reported.
    pub fn isolate() -> Self {
        TaskHooks::new(Mode::Isolate)
    }

    /// Your `on_task_spawn` callback, run after ctx's (on the spawner's thread, in its
    /// context).
    #[must_use]
    pub fn on_task_spawn(mut self, f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static) -> Self {
        self.on_spawn = Some(Arc::new(f));
        self
    }

    /// Your `on_before_task_poll` callback, run after ctx's: in the task's context.
    #[must_use]
    pub fn on_before_task_poll(
        mut self,
        f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.before_poll = Some(Arc::new(f));
        self
    }

    /// Your `on_after_task_poll` callback, run before ctx's: in the task's context.
    #[must_use]
    pub fn on_after_task_poll(mut self, f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static) -> Self {
        self.after_poll = Some(Arc::new(f));
        self
    }

    /// Your `on_task_terminate` callback, run before ctx's.
    #[must_use]
    pub fn on_task_terminate(mut self, f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static) -> Self {
        self.on_terminate = Some(Arc::new(f));
        self
    }

    /// Where leaks found under [`isolate`](TaskHooks::isolate) with strict mode go (by
    /// default, to standard error).
    #[must_use]
    pub fn on_leak(mut self, f: impl Fn(&Leak) + Send + Sync + 'static) -> Self {
        self.on_leak = Some(Arc::new(f));
        self
    }

    /// Turns the audit on: each spawn site whose work would run without its spawner's
    /// values on stable tokio (without these hooks) is reported once, with its file and
    /// line, to [`on_unwrapped`](TaskHooks::on_unwrapped) (by default, to standard
    /// error). Run a test suite once with it to get the list of spawn sites to wrap with
    /// ctx's `spawn`:
    ///
    /// - plain `tokio::spawn`s (and `Handle`/`JoinSet` spawns) made from a context that
    ///   holds inheritable values, whichever mode the hooks are in;
    /// - plain `tokio::task::spawn_blocking`s, wherever they are made: no hook sees
    ///   their spawner (see "Where the hooks do not fire" in the [module docs](self)).
    ///
    /// A task spawned onto a runtime that has shut down is never run, and may be
    /// reported as a blocking one. tokio's own blocking tasks (a multi-thread runtime's
    /// workers) are not reported. The audit keeps a set of live task ids: it is for
    /// test runs, not production.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use ctx_tokio::{Context, ContextVar, hooks::{SpawnKind, TaskHooks}};
    ///
    /// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
    ///
    /// let found = Arc::new(Mutex::new(Vec::new()));
    /// let mut builder = tokio::runtime::Builder::new_current_thread();
    /// let sink = Arc::clone(&found);
    /// TaskHooks::isolate()
    ///     .audit()
    ///     .on_unwrapped(move |site| sink.lock().unwrap().push((site.kind, site.spawned_at.line())))
    ///     .install(&mut builder);
    /// let runtime = builder.build().unwrap();
    /// # Context::new().run(|| {
    /// REQUEST_ID.set(7);
    /// ctx_tokio::block_on(&runtime, async {
    ///     for _ in 0..3 {
    ///         tokio::spawn(async {}).await.unwrap(); // reported once
    ///         ctx_tokio::spawn(async {}).await.unwrap(); // carries the context: not reported
    ///     }
    /// });
    /// # });
    /// let found = found.lock().unwrap();
    /// assert_eq!(found.len(), 1, "one site, reported once");
    /// assert_eq!(found[0].0, SpawnKind::Task);
    /// ```
    #[must_use]
    pub fn audit(mut self) -> Self {
        self.audit = true;
        self
    }

    /// Where the audit's findings go (by default, to standard error); turns the audit
    /// on.
    #[must_use]
    pub fn on_unwrapped(mut self, f: impl Fn(&Unwrapped) + Send + Sync + 'static) -> Self {
        self.audit = true;
        self.on_unwrapped = Some(Arc::new(f));
        self
    }

    /// Installs the hooks on `builder`, replacing any task hooks set on it directly.
    pub fn install(self, builder: &mut Builder) -> &mut Builder {
        let audit = self.audit.then(|| Audit {
            report: self.on_unwrapped,
            sites: Mutex::default(),
            live: Mutex::default(),
        });
        let shared = Arc::new(Shared {
            mode: self.mode,
            store: Store::default(),
            on_leak: self.on_leak,
            audit,
        });
        let on_spawn = {
            let (shared, user) = (Arc::clone(&shared), self.on_spawn);
            move |meta: &TaskMeta<'_>| {
                shared.spawned(meta);
                if let Some(user) = &user {
                    user(meta);
                }
            }
        };
        let before_poll = {
            let (shared, user) = (Arc::clone(&shared), self.before_poll);
            move |meta: &TaskMeta<'_>| {
                shared.before_poll(meta.id());
                if let Some(user) = &user {
                    // If the user's hook panics, the task's context is left again
                    // before the panic goes on: no caller runs in it.
                    let leave = AfterPoll(&shared, meta.id());
                    user(meta);
                    std::mem::forget(leave);
                }
            }
        };
        let after_poll = {
            let (shared, user) = (Arc::clone(&shared), self.after_poll);
            move |meta: &TaskMeta<'_>| match &user {
                None => shared.after_poll(meta.id()),
                Some(user) => {
                    // Leaves the task's context after the user's hook, even if it panics.
                    let _leave = AfterPoll(&shared, meta.id());
                    user(meta);
                }
            }
        };
        let on_terminate = {
            let (shared, user) = (shared, self.on_terminate);
            move |meta: &TaskMeta<'_>| {
                let _terminate = Terminated(&shared, meta);
                if let Some(user) = &user {
                    user(meta);
                }
            }
        };
        builder
            .on_task_spawn(on_spawn)
            .on_before_task_poll(before_poll)
            .on_after_task_poll(after_poll)
            .on_task_terminate(on_terminate)
    }
}

/// Drops `runtime` in an empty context of its own, so that the futures of tasks still
/// pending, which tokio drops then without running any hook, never see the caller's
/// values, and what their `Drop` sets is dropped with that context.
///
/// ```
/// use ctx_tokio::{Context, ContextVar, hooks::{self, TaskHooks}};
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
///
/// /// Reports what it sees when dropped.
/// struct Probe(std::sync::mpsc::Sender<Option<&'static str>>);
/// impl Drop for Probe {
///     fn drop(&mut self) {
///         self.0.send(USER.get()).unwrap();
///     }
/// }
///
/// let mut builder = tokio::runtime::Builder::new_current_thread();
/// TaskHooks::inherit().install(&mut builder);
/// let runtime = builder.build().unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// # Context::new().run(|| {
/// USER.set("caller");
/// runtime.block_on(async {
///     let probe = Probe(tx);
///     drop(tokio::spawn(async move {
///         let _probe = probe;
///         std::future::pending::<()>().await
///     }));
///     tokio::task::yield_now().await;
/// });
/// hooks::shutdown(runtime);
/// assert_eq!(rx.recv().unwrap(), None, "not the caller's value");
/// # });
/// ```
pub fn shutdown(runtime: Runtime) {
    Context::new().run(move || drop(runtime));
}

/// Runs ctx's `after_poll` when dropped: after the user's hook, or instead of the rest
/// of a `before_poll` whose user hook panicked.
struct AfterPoll<'a>(&'a Shared, Id);

impl Drop for AfterPoll<'_> {
    fn drop(&mut self) {
        self.0.after_poll(self.1);
    }
}

/// Runs ctx's `terminated` when dropped, after the user's hook, even if it panics.
struct Terminated<'a, 'm>(&'a Shared, &'a TaskMeta<'m>);

impl Drop for Terminated<'_, '_> {
    fn drop(&mut self) {
        self.0.terminated(self.1.id(), self.1.spawned_at());
        if let Some(audit) = &self.0.audit {
            audit.terminated(self.1);
        }
    }
}

impl fmt::Debug for TaskHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHooks")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Hashes a task id for the map of its shard. tokio's ids are sequential integers, and
/// the shard is the id's low bits ([`shard_of`]): neighbours go to different shards.
/// Inside a shard the map takes its bucket from the hash's low bits and a tag from its
/// top seven. The low bits are the id's remaining bits, as they are: tasks spawned one
/// after another sit in neighbouring buckets, so a burst of spawns and then of polls
/// walks the table in order instead of touching a random cache line each. The tag is
/// the top of the id times 2^64 / the golden ratio, which mixes every bit of the id in:
/// with the identity there, every id in a shard had the same tag, and each lookup
/// compared keys across the whole group (an insert cost ~600 instructions).
#[derive(Default)]
struct IdHasher(u64);

/// 2^64 divided by the golden ratio.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;
/// The bits of a hash the map takes its tag from.
const TAG: u64 = 0x7F << 57;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let id = self.0;
        (id >> SHARDS.trailing_zeros()) & !TAG | id.wrapping_mul(FIBONACCI) & TAG
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `Id` (which writes one `u64`); any other input still hashes.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Keyed by a task's raw id ([`raw_id`]), which the end of a context hands back.
type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

const SHARDS: usize = 64;
const _: () = assert!(SHARDS.is_power_of_two());

/// The shard of a task: its id's low bits.
#[inline]
fn shard_of(id: u64) -> usize {
    id as usize % SHARDS
}

/// A task's place in its shard's [`Entries::near`]: its id's bits above the shard's.
#[inline]
fn near_of(id: u64) -> usize {
    id as usize / SHARDS % NEAR
}

/// The number tokio gives a task, as it hashes it.
#[inline]
fn raw_id(id: Id) -> u64 {
    let mut hasher = IdHasher::default();
    std::hash::Hash::hash(&id, &mut hasher);
    hasher.0
}

/// One shard of the store, starting a cache line of its own so that polls of tasks in
/// different shards never contend for a line.
#[repr(C, align(64))]
#[derive(Default)]
struct Shard {
    /// How many contexts the shard holds, readable without the lock: a poll of a task
    /// whose shard is empty takes nothing and skips the lock. Written under the lock; a
    /// task's own entry is written before the task is scheduled (at spawn) or by its
    /// previous poll, both of which happen before this poll, so a relaxed read sees it.
    /// First, beside the lock: both on the line a poll touches first.
    len: AtomicUsize,
    entries: Mutex<Entries>,
}

/// The contexts of one shard's tasks. Each id has a place of its own in `near`, picked
/// by the id's bits above the shard's and found without hashing: tasks spawned one
/// after another take neighbouring places, and with a few hundred tasks holding
/// contexts at once, most have theirs. The map takes the rest: a task whose place was
/// held by another when its context was stored.
///
/// A task's context is stored only when none is held for it (at its spawn, or after its
/// poll took it out), so an id is never in both.
#[repr(C)] // The counts first: on the line with the lock.
struct Entries {
    /// How many places in `near` are held.
    near_len: usize,
    far: IdMap<Stored>,
    near: [Option<(u64, Stored)>; NEAR],
}

/// A task's context between its polls.
struct Stored {
    context: Context,
    /// What the task inherited from an [endable](Context::endable) context, while that
    /// context has not ended.
    inherited: Option<Box<Inherited>>,
}

/// The context a task inherited from an endable context, as it was at the spawn.
struct Inherited {
    signal: EndSignal,
    base: Context,
}

impl Stored {
    #[inline]
    fn is_ended(&self) -> bool {
        self.inherited
            .as_ref()
            .is_some_and(|inherited| inherited.signal.is_ended())
    }

    /// After the end of the context the task inherited from: keeps only what the task
    /// set itself. Gives back what it replaced, to be dropped outside any lock (the
    /// request's values run user code when dropped). Runs no user code itself.
    #[cold]
    #[must_use]
    fn strip(&mut self) -> Option<(Context, Box<Inherited>)> {
        let inherited = self.inherited.take()?;
        let own = self.context.changed_since(&inherited.base);
        Some((std::mem::replace(&mut self.context, own), inherited))
    }
}

/// How many places each shard has in [`Entries::near`].
const NEAR: usize = 64;
const _: () = assert!(NEAR.is_power_of_two());

impl Default for Entries {
    fn default() -> Self {
        Entries {
            near: std::array::from_fn(|_| None),
            near_len: 0,
            far: IdMap::default(),
        }
    }
}

impl Entries {
    fn len(&self) -> usize {
        self.near_len + self.far.len()
    }

    /// Stores `context` for `id`, which holds none (see above); gives back what it
    /// replaced, to be dropped outside the lock (a context's values run user code when
    /// dropped, and it could spawn a task into this shard).
    fn insert(&mut self, id: u64, context: Stored) -> Option<Stored> {
        let place = &mut self.near[near_of(id)];
        match place {
            None => {
                debug_assert!(!self.far.contains_key(&id), "one context per task");
                *place = Some((id, context));
                self.near_len += 1;
                None
            }
            Some((held, old)) if *held == id => Some(std::mem::replace(old, context)),
            Some(_) => self.far.insert(id, context),
        }
    }

    fn remove(&mut self, id: u64) -> Option<Stored> {
        let place = &mut self.near[near_of(id)];
        if place.as_ref().is_some_and(|(held, _)| *held == id) {
            self.near_len -= 1;
            return place.take().map(|(_, context)| context);
        }
        if self.far.is_empty() {
            return None;
        }
        self.far.remove(&id)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Stored> {
        match &mut self.near[near_of(id)] {
            Some((held, stored)) if *held == id => Some(stored),
            _ => self.far.get_mut(&id),
        }
    }
}

/// Each live task's context, by id, when it is not empty: see the module docs.
struct Store {
    shards: Box<[Shard; SHARDS]>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            shards: Box::new(std::array::from_fn(|_| Shard::default())),
        }
    }
}

impl Store {
    #[inline]
    fn shard(&self, id: u64) -> &Shard {
        &self.shards[shard_of(id)]
    }

    /// Stores `stored` for `id`, which holds none (see [`Entries`]).
    #[inline]
    fn put(&self, id: u64, stored: Stored) {
        let shard = self.shard(id);
        let replaced = {
            let mut entries = lock(&shard.entries);
            // Checked under the lock: an end this misses sees the entry in its sweep
            // ([`Store::release`]), which takes this lock after the end is set.
            if stored.is_ended() {
                drop(entries);
                return self.put_ended(id, stored);
            }
            let replaced = entries.insert(id, stored);
            shard.len.store(entries.len(), Ordering::Relaxed);
            replaced
        };
        if let Some(replaced) = replaced {
            drop(replaced); // Never, by the invariant; outside the lock all the same.
        }
    }

    /// [`Store::put`] of a context inherited from one that has ended: stores what the
    /// task set itself, then drops the rest.
    #[cold]
    #[inline(never)]
    fn put_ended(&self, id: u64, mut stored: Stored) {
        let stripped = stored.strip();
        if !stored.context.is_empty() {
            self.put(id, stored);
        }
        drop(stripped);
    }

    /// At the end of the context the task `id` inherited from: strips its stored
    /// context of what it inherited (if it is stored: a task under way strips it when
    /// its poll ends, in [`Store::put`]), so that the values go now, not at its next
    /// poll, which may be far off for an idle pooled connection.
    fn release(&self, id: u64) {
        let shard = self.shard(id);
        let dropped = {
            let mut entries = lock(&shard.entries);
            let Some(stored) = entries.get_mut(id) else {
                return;
            };
            let stripped = stored.strip();
            let removed = if stored.context.is_empty() {
                let removed = entries.remove(id);
                shard.len.store(entries.len(), Ordering::Relaxed);
                removed
            } else {
                None
            };
            (stripped, removed)
        };
        drop(dropped);
    }

    #[inline]
    fn take(&self, id: u64) -> Option<Stored> {
        let shard = self.shard(id);
        if shard.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        Self::take_from(shard, id)
    }

    /// The locked half of [`Store::take`], out of line: a poll of a task with nothing
    /// stored in an empty shard never gets here.
    #[inline(never)]
    fn take_from(shard: &Shard, id: u64) -> Option<Stored> {
        let mut entries = lock(&shard.entries);
        let taken = entries.remove(id);
        shard.len.store(entries.len(), Ordering::Relaxed);
        taken
    }
}

/// A shard's lock; a panic elsewhere while it was held left the map whole (inserts and
/// removes do not run user code), so a poisoned shard is used as it is.
#[inline]
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    /// Set while one of ctx's adapters spawns a task it has wrapped in its context
    /// already: the spawn hook then stores nothing for it (no double wrap cost).
    static WRAPPED: Cell<bool> = const { Cell::new(false) };

    /// Set on a blocking thread when a closure of ctx's `spawn_blocking` has run: its
    /// task's `terminate`, which follows on that thread, then knows it was wrapped.
    static BLOCKING_WRAPPED: Cell<bool> = const { Cell::new(false) };

    /// The poll under way on this thread, if any, innermost first. Polls nest when a
    /// task starts a runtime of its own inside `block_in_place`: its tasks are polled
    /// on this thread while its own poll is under way.
    static POLL: Cell<Option<Poll>> = const { Cell::new(None) };

    /// The task whose `terminate` ran on this thread with no poll of it under way, last:
    /// tokio runs a task's `terminate` before its `spawn` when it is spawned onto a runtime
    /// that has shut down, and the spawn must then store nothing.
    static TERMINATED: Cell<Option<Id>> = const { Cell::new(None) };
}

/// A task's poll, from the hook before it to the hook after it.
///
/// Nothing in it is dropped implicitly, so that [`POLL`] needs no destructor: a
/// thread-local with one is reached through a slower path (+56 instructions a poll).
/// Every `Poll` is taken apart by `after_poll`; one left on an exiting thread (which
/// cannot be mid-poll) would be leaked, not dropped in the wrong context.
///
/// Four words: a fifth made moving it in and out of [`POLL`] a `memcpy` call.
struct Poll {
    /// The task's raw id ([`raw_id`]), and [`ENDED`] once the task ended during the
    /// poll (tokio runs `terminate` inside a task's last poll): its context is then
    /// dropped after the poll rather than stored.
    task: u64,
    /// The task's context, entered for the poll (see [`Context::enter`]).
    entry: ManuallyDrop<Entry>,
    /// What the task inherited from an endable context, stored again with its context.
    inherited: ManuallyDrop<Option<Box<Inherited>>>,
    /// The poll this one runs inside, if polls nest (see [`POLL`]).
    outer: Option<ManuallyDrop<Box<Poll>>>,
}

/// The bit of [`Poll::task`] that says the task ended. tokio counts ids up from 1:
/// they never reach it.
const ENDED: u64 = 1 << 63;

/// Puts `outer`, the poll under way when another started on this thread, under the
/// new one.
#[cold]
fn nest(outer: Poll) {
    if let Some(mut poll) = POLL.take() {
        poll.outer = Some(ManuallyDrop::new(Box::new(outer)));
        POLL.set(Some(poll));
    }
}

/// A stored task context whose inherited context has ended, stripped for its poll; the
/// rest is dropped here, before the task's context is entered.
#[cold]
#[inline(never)]
fn strip(mut stored: Stored) -> (Context, Option<Box<Inherited>>) {
    drop(stored.strip());
    (stored.context, None)
}

/// Whether a blocking task was spawned by tokio's runtime itself (a multi-thread
/// runtime's workers run as blocking tasks, reported as they end at shutdown).
fn is_runtime_internal(spawned_at: &Location<'_>) -> bool {
    let file = spawned_at.file().replace('\\', "/");
    file.contains("/tokio-") && file.contains("/src/runtime/")
}

/// Marks, when dropped (on return or panic), the end of a closure of ctx's
/// `spawn_blocking` on this thread, for the audit (see [`BLOCKING_WRAPPED`]).
pub(crate) struct BlockingWrapped;

impl Drop for BlockingWrapped {
    #[inline]
    fn drop(&mut self) {
        BLOCKING_WRAPPED.set(true);
    }
}

/// Marks the spawns of ctx's adapters on this thread until dropped.
pub(crate) struct WrappedSpawn(bool);

impl WrappedSpawn {
    #[inline]
    pub(crate) fn mark() -> Self {
        WrappedSpawn(WRAPPED.replace(true))
    }
}

impl Drop for WrappedSpawn {
    #[inline]
    fn drop(&mut self) {
        WRAPPED.set(self.0);
    }
}

struct Shared {
    mode: Mode,
    store: Store,
    on_leak: Option<LeakCallback>,
    audit: Option<Audit>,
}

/// The audit's state: see [`TaskHooks::audit`].
struct Audit {
    report: Option<UnwrappedCallback>,
    /// The sites reported so far, by file, line and column.
    sites: Mutex<HashSet<(&'static str, u32, u32)>>,
    /// The raw ids of the tasks the spawn hook saw and that have not ended: a task
    /// that ends without being in it was never seen by the spawn hook, a blocking one.
    live: Mutex<HashSet<u64>>,
}

impl Audit {
    /// On the spawner's thread, in its context.
    fn spawned(&self, meta: &TaskMeta<'_>, wrapped: bool) {
        lock(&self.live).insert(raw_id(meta.id()));
        if wrapped {
            return;
        }
        let context = Context::inherited();
        if !context.is_empty() {
            let variables = context.iter().map(|(var, _)| var.name()).collect();
            drop(context);
            self.report(meta.spawned_at(), SpawnKind::Task, variables);
        }
    }

    fn terminated(&self, meta: &TaskMeta<'_>) {
        let was_live = lock(&self.live).remove(&raw_id(meta.id()));
        if !was_live && !BLOCKING_WRAPPED.take() && !is_runtime_internal(meta.spawned_at()) {
            self.report(meta.spawned_at(), SpawnKind::Blocking, Vec::new());
        }
    }

    #[cold]
    fn report(
        &self,
        spawned_at: &'static Location<'static>,
        kind: SpawnKind,
        variables: Vec<&'static str>,
    ) {
        let site = (spawned_at.file(), spawned_at.line(), spawned_at.column());
        if !lock(&self.sites).insert(site) {
            return;
        }
        let unwrapped = Unwrapped {
            spawned_at,
            kind,
            variables,
        };
        match &self.report {
            Some(report) => report(&unwrapped),
            None => eprintln!("{unwrapped}"),
        }
    }
}

/// The end of a context that tasks inherited from: each such task's stored context is
/// stripped at once, rather than at its next poll.
impl EndWatcher for Shared {
    fn ended(&self, task: u64) {
        self.store.release(task);
    }
}

impl Shared {
    /// On the spawner's thread, in its context.
    fn spawned(self: &Arc<Self>, meta: &TaskMeta<'_>) {
        if let Some(audit) = &self.audit {
            return self.spawned_audited(meta, audit);
        }
        let id = meta.id();
        if self.mode == Mode::Isolate || WRAPPED.get() || TERMINATED.take() == Some(id) {
            return;
        }
        self.inherit(id);
    }

    /// [`Shared::spawned`] under the audit, which sees every spawn.
    #[cold]
    #[inline(never)]
    fn spawned_audited(self: &Arc<Self>, meta: &TaskMeta<'_>, audit: &Audit) {
        let id = meta.id();
        if TERMINATED.take() == Some(id) {
            return;
        }
        let wrapped = WRAPPED.get();
        audit.spawned(meta, wrapped);
        if self.mode == Mode::Inherit && !wrapped {
            self.inherit(id);
        }
    }

    /// Stores what the task `id`, being spawned, inherits.
    #[inline]
    fn inherit(self: &Arc<Self>, id: Id) {
        let context = Context::inherited();
        if context.is_empty() {
            return;
        }
        let inherited = match context.end_signal() {
            None => None,
            // Spawned after the end of the context it would inherit: nothing of it.
            Some(signal) if signal.is_ended() => return,
            Some(signal) => {
                // Watched before the entry is stored: an end between the two is seen
                // by `put`.
                signal.watch(self, raw_id(id));
                let base = context.clone();
                Some(Box::new(Inherited { signal, base }))
            }
        };
        self.store.put(raw_id(id), Stored { context, inherited });
    }

    #[inline]
    fn before_poll(&self, id: Id) {
        let (context, inherited) = match self.store.take(raw_id(id)) {
            None => (Context::new(), None),
            Some(stored) if stored.is_ended() => strip(stored),
            Some(stored) => (stored.context, stored.inherited),
        };
        let poll = Poll {
            task: raw_id(id),
            entry: ManuallyDrop::new(context.enter()),
            inherited: ManuallyDrop::new(inherited),
            outer: None,
        };
        // One visit to the thread-local; a second only when polls nest.
        if let Some(outer) = POLL.replace(Some(poll)) {
            nest(outer);
        }
    }

    #[inline]
    fn after_poll(&self, id: Id) {
        let Some(poll) = POLL.take() else { return };
        let task = raw_id(id);
        if poll.task & !ENDED != task {
            // Not this task's poll (a hook of another runtime's that panicked): the
            // poll under way stays.
            POLL.set(Some(poll));
            return;
        }
        let Poll {
            task: with_end,
            entry,
            inherited,
            outer,
        } = poll;
        if let Some(outer) = outer {
            POLL.set(Some(*ManuallyDrop::into_inner(outer)));
        }
        let context = ManuallyDrop::into_inner(entry).leave();
        let inherited = ManuallyDrop::into_inner(inherited);
        if with_end & ENDED == 0 && !context.is_empty() {
            self.store.put(task, Stored { context, inherited });
        } else if let Some(inherited) = inherited {
            drop(inherited);
        }
        // Otherwise dropped here, outside every borrow.
    }

    /// At the task's end: during its last poll, on the thread polling it, or when a
    /// runtime shuts down with the task still pending.
    fn terminated(&self, id: Id, spawned_at: &'static Location<'static>) {
        let reports = self.mode == Mode::Isolate && strict::is_enabled();
        let left = match POLL.take() {
            Some(mut poll) if poll.task & !ENDED == raw_id(id) => {
                poll.task |= ENDED;
                POLL.set(Some(poll));
                if !reports {
                    return;
                }
                // Its context is the current one until the poll ends: read for the report.
                Context::current()
            }
            other => {
                POLL.set(other);
                TERMINATED.set(Some(id));
                self.store
                    .take(raw_id(id))
                    .map(|stored| stored.context)
                    .unwrap_or_default()
            }
        };
        if reports && !left.is_empty() {
            let leak = Leak {
                task: id,
                spawned_at,
                variables: left.iter().map(|(info, _)| info.name()).collect(),
            };
            drop(left);
            match &self.on_leak {
                Some(report) => report(&leak),
                None => eprintln!("{leak}"),
            }
        }
    }
}
