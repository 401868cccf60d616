//! OpenTelemetry's current context, following ctx: an OpenTelemetry
//! [`Context`](opentelemetry::Context) stored in the ctx context is the one
//! `opentelemetry::Context::current()` returns, in every task and thread that context
//! reaches.
//!
//! OpenTelemetry keeps its current context per thread, attached and detached by guards;
//! a task that moves between worker threads, or that a library spawns, leaves it behind.
//! ctx's context already goes wherever the work goes. Once [`install`]ed, the bridge, a
//! [context observer](ctx_vars::observer), attaches the OpenTelemetry context held by
//! each ctx context it is entered (each `run`, each poll of a ctx-wrapped future) and
//! detaches it when the context is left:
//!
//! ```
//! use ctx_vars::Context;
//! use opentelemetry::baggage::BaggageExt;
//! use opentelemetry::KeyValue;
//!
//! ctx_opentelemetry::bridge::install();
//! Context::new().run(|| {
//!     let otel = opentelemetry::Context::new().with_baggage([KeyValue::new("tenant", "acme")]);
//!     ctx_opentelemetry::bridge::set(otel);
//!     // A thread, a task: wherever the ctx context is copied to.
//!     ctx_vars::thread::spawn(|| {
//!         let current = opentelemetry::Context::current();
//!         assert_eq!(current.baggage().get("tenant").unwrap().as_str(), "acme");
//!     })
//!     .join()
//!     .unwrap();
//! });
//! ```
//!
//! Work that ctx does not enter (a task spawned with plain `tokio::spawn` by a library)
//! does not see it, as it sees no other ctx value.

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;

use ctx_vars::ContextVar;
use ctx_vars::observer::{self, Observer};
use opentelemetry::{Context as OtelContext, ContextGuard};

/// The OpenTelemetry context of the ctx context.
static OTEL: ContextVar<OtelContext> = ContextVar::new("opentelemetry.context");

thread_local! {
    /// How many ctx contexts the bridge has seen entered, and not yet left, on this
    /// thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };

    /// The guards of the OpenTelemetry contexts attached for entered ctx contexts,
    /// innermost last, each with the depth of its context. Contexts that hold none
    /// have no entry, so that most polls never touch this.
    static ATTACHED: RefCell<Vec<(u32, ContextGuard)>> = const { RefCell::new(Vec::new()) };

    /// The depth of the last entry of `ATTACHED` (0 when empty): read on every exit,
    /// so kept where reading it costs nothing.
    static TOP: Cell<u32> = const { Cell::new(0) };

    /// What [`set`] attached outside any entered context.
    static BASE: RefCell<Option<ContextGuard>> = const { RefCell::new(None) };
}

/// Records `guard` as attached for the context at `depth`, replacing the one attached
/// for it before, if any (given back, to be dropped outside the borrow).
fn push(depth: u32, guard: ContextGuard) -> Option<ContextGuard> {
    ATTACHED
        .try_with(|stack| {
            let mut stack = stack.borrow_mut();
            let replaced = match stack.last_mut() {
                Some((top, old)) if *top == depth => Some(std::mem::replace(old, guard)),
                _ => {
                    stack.push((depth, guard));
                    None
                }
            };
            TOP.set(depth);
            replaced
        })
        // A thread being torn down: the guard is dropped at once.
        .unwrap_or(None)
}

struct Bridge;

impl Observer for Bridge {
    fn entered(&self) {
        let depth = DEPTH.get() + 1;
        DEPTH.set(depth);
        if let Some(otel) = OTEL.get() {
            drop(push(depth, otel.attach()));
        }
    }

    fn leaving(&self) {
        let depth = DEPTH.get();
        DEPTH.set(depth.saturating_sub(1));
        if TOP.get() != depth || depth == 0 {
            return;
        }
        let guard = ATTACHED
            .try_with(|stack| {
                let mut stack = stack.borrow_mut();
                let guard = stack.pop();
                TOP.set(stack.last().map_or(0, |(depth, _)| *depth));
                guard
            })
            .ok()
            .flatten();
        // Detached after the stack's borrow ends: a context's drop is user code.
        drop(guard);
    }
}

static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Makes OpenTelemetry's current context follow ctx's, for the rest of the process;
/// whether the bridge is on (it is off only when every
/// [observer slot](ctx_vars::observer::MAX_OBSERVERS) was taken already). Calling it
/// again does nothing.
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| observer::install(Box::new(Bridge)).is_ok())
}

/// Whether [`install`] has put the bridge on.
pub fn is_installed() -> bool {
    INSTALLED.get().copied().unwrap_or(false)
}

/// Stores `otel` in the current ctx context, where every copy of it (spawned tasks,
/// threads) finds it, and attaches it on this thread at once: from here on, in this
/// context, `opentelemetry::Context::current()` is `otel`.
pub fn set(otel: OtelContext) {
    drop(OTEL.set(otel.clone()));
    if !is_installed() {
        return;
    }
    let guard = otel.attach();
    // Inside an entered context, the guard replaces the one attached at its entry; at
    // the thread's base, it stays until the next `set` there.
    let replaced = match DEPTH.get() {
        0 => BASE
            .try_with(|base| base.borrow_mut().replace(guard))
            .ok()
            .flatten(),
        depth => push(depth, guard),
    };
    drop(replaced);
}

/// The OpenTelemetry context stored in the current ctx context, if any.
pub fn get() -> Option<OtelContext> {
    OTEL.get()
}
