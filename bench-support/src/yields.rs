//! A future that yields a given number of times, and a loop that drives it: the poll
//! benchmarks' workload, shared by ctx-vars' and ctx-opentelemetry's benches and
//! instruction-count harnesses.

use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context as TaskContext, Poll, Waker};

/// Returns `Pending` `n` times, then `Ready`.
#[derive(Debug)]
pub struct Yields(
    /// How many more times to return `Pending`.
    pub u32,
);

impl Future for Yields {
    type Output = ();
    #[inline]
    fn poll(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<()> {
        // Opaque to the optimiser, so the bare loop is not folded away.
        let left = black_box(&mut self.0);
        if *left == 0 {
            return Poll::Ready(());
        }
        *left -= 1;
        Poll::Pending
    }
}

/// Polls `fut` with a no-op waker until it is ready.
pub fn drive(fut: impl Future<Output = ()>) {
    let mut fut = pin!(fut);
    let mut cx = TaskContext::from_waker(Waker::noop());
    while fut.as_mut().poll(&mut cx).is_pending() {}
}
