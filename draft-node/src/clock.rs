//! Time as the draft loop sees it: the wall clock in a real run, a virtual clock in a
//! simulation. The loop only reads the time, waits (a deadline, an emulated device's
//! extra drafting time) and races a future against a deadline, so those three are all
//! a clock has to do.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

/// A boxed future that can move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of time and of waiting.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The time now.
    fn now(&self) -> Instant;
    /// Resolves `d` from now.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// The wall clock, waiting to within tens of microseconds
/// ([`tandem_protocol::timer`]; tokio's own timer rounds up to a millisecond, which
/// would add up to a millisecond to every paced draft step).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tandem_protocol::timer::sleep(d))
    }
}

/// `fut` did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `fut` until it finishes or `d` passes on `clock`, whichever comes first.
pub async fn timeout<F: Future>(
    clock: &dyn Clock,
    d: Duration,
    fut: F,
) -> Result<F::Output, Elapsed> {
    // Pinned in place, not boxed: the draft loop races every verdict against a
    // deadline, and a simulation runs millions of rounds.
    let mut fut = std::pin::pin!(fut);
    let mut sleep = clock.sleep(d);
    std::future::poll_fn(|cx| {
        // The work first: an answer that is ready at the deadline still counts.
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        sleep.as_mut().poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timeout_returns_the_work_or_elapsed() {
        let c = SystemClock;
        let quick = timeout(&c, Duration::ZERO, async { 7 }).await;
        assert_eq!(
            quick,
            Ok(7),
            "work that is ready wins even at a zero deadline"
        );
        let never = timeout(&c, Duration::from_millis(5), std::future::pending::<()>()).await;
        assert_eq!(never, Err(Elapsed));
    }
}
