//! A variable's default: built lazily, at most once, even when builders read each other.
//!
//! `OnceLock::get_or_init` alone would do for independent defaults, but a builder may
//! read other variables, and so their defaults. Two builders that read each other,
//! started first on two threads at once, would then each wait forever for the other's
//! `OnceLock`. So the choice of who builds is made here, under one process-wide lock
//! that also records who waits for whom. A thread about to wait for a build that
//! (through any chain of waiting threads) waits for a build of its own would close a
//! cycle: it reads no default instead, exactly what a builder that reads its own
//! variable on one thread sees. The lock is taken only until a default exists: reads
//! after that are one atomic load.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

/// The default of one variable.
pub(crate) struct LazyDefault<T> {
    build: Option<fn() -> T>,
    value: OnceLock<T>,
}

/// The builds in progress, process-wide.
struct Builds {
    /// (default, thread building it).
    building: Vec<(usize, u64)>,
    /// (thread, default it waits for).
    waiting: Vec<(u64, usize)>,
}

static BUILDS: Mutex<Builds> = Mutex::new(Builds {
    building: Vec::new(),
    waiting: Vec::new(),
});

/// Signalled whenever a build ends, finished or panicked.
static BUILD_ENDED: Condvar = Condvar::new();

fn lock_builds() -> MutexGuard<'static, Builds> {
    // Nothing runs user code under this lock, so a poisoned one is still consistent.
    BUILDS.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Builds {
    fn builder_of(&self, key: usize) -> Option<u64> {
        self.building
            .iter()
            .find(|&&(k, _)| k == key)
            .map(|&(_, t)| t)
    }

    /// Whether `thread`, through the chain of builds it waits for, waits for `me`.
    fn waits_for(&self, mut thread: u64, me: u64) -> bool {
        // Each thread waits for at most one build, so the chain has no branches; it is
        // at most as long as the list of waiters.
        for _ in 0..=self.waiting.len() {
            let Some(&(_, key)) = self.waiting.iter().find(|&&(t, _)| t == thread) else {
                return false;
            };
            match self.builder_of(key) {
                Some(builder) if builder == me => return true,
                Some(builder) => thread = builder,
                None => return false,
            }
        }
        false
    }
}

/// A process-unique number for the calling thread, or `None` while it is exiting.
fn thread_key() -> Option<u64> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static KEY: Cell<u64> = const { Cell::new(0) };
    }
    KEY.try_with(|key| {
        if key.get() == 0 {
            key.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        key.get()
    })
    .ok()
}

impl<T> LazyDefault<T> {
    pub(crate) const fn new(build: Option<fn() -> T>) -> Self {
        LazyDefault {
            build,
            value: OnceLock::new(),
        }
    }

    pub(crate) fn exists(&self) -> bool {
        self.build.is_some()
    }

    /// The default, built on first use; `None` without a builder, and for a read that
    /// would wait on itself (see the module documentation).
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        let build = self.build?;
        match self.value.get() {
            Some(value) => Some(value),
            None => self.build(build),
        }
    }

    #[cold]
    fn build(&self, build: fn() -> T) -> Option<&T> {
        let Some(me) = thread_key() else {
            // An exiting thread cannot be told apart from others: build as OnceLock
            // does, without the cycle check.
            return Some(self.value.get_or_init(build));
        };
        let key = std::ptr::from_ref(self).addr();
        let mut builds = lock_builds();
        loop {
            if let Some(value) = self.value.get() {
                return Some(value);
            }
            match builds.builder_of(key) {
                None => break,
                // The builder reads its own variable, directly or through others.
                Some(builder) if builder == me => return None,
                Some(builder) if builds.waits_for(builder, me) => return None,
                Some(_) => {
                    builds.waiting.push((me, key));
                    builds = BUILD_ENDED
                        .wait(builds)
                        .unwrap_or_else(PoisonError::into_inner);
                    builds.waiting.retain(|&(t, _)| t != me);
                }
            }
        }
        builds.building.push((key, me));
        drop(builds);

        /// Ends the build, finished or panicked, and wakes the waiters.
        struct Building(usize);
        impl Drop for Building {
            fn drop(&mut self) {
                lock_builds().building.retain(|&(key, _)| key != self.0);
                BUILD_ENDED.notify_all();
            }
        }
        let _building = Building(key);
        // Only the registered builder gets here, so the cell is still empty.
        let _unused = self.value.set(build());
        self.value.get()
    }
}
