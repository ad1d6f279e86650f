//! Waiting to within tens of microseconds, for the emulated link and an emulated
//! device's pace.
//!
//! tokio's timer ticks once a millisecond and rounds every deadline up to a tick, so a
//! LAN's 0.25 ms one-way delay became 1–2 ms in each direction (the quickstart's LAN
//! speculative rounds spent 3.2 ms "on the network" where the link model asked for
//! 0.5 ms). [`sleep_until`] waits on tokio's timer until a couple of milliseconds
//! before the deadline (cheap, however many wait), then on one shared thread that
//! sleeps to the earliest deadline with the operating system's own precision
//! (`Condvar::wait_timeout`, a futex on Linux) and wakes each waiter when its time has
//! come.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long before a deadline the wait moves from tokio's timer to the precise thread:
/// more than tokio's rounding (one tick) and its scheduling slack.
const HANDOVER: Duration = Duration::from_millis(3);

/// Resolves at `at`, late by the operating system's wake-up latency only.
pub async fn sleep_until(at: Instant) {
    if let Some(coarse) = at.checked_sub(HANDOVER)
        && coarse > Instant::now()
    {
        tokio::time::sleep_until(coarse.into()).await;
    }
    Fine { at, slot: None }.await
}

/// Resolves `d` from now (see [`sleep_until`]).
pub async fn sleep(d: Duration) {
    sleep_until(Instant::now() + d).await
}

/// A waiter the thread wakes.
#[derive(Default)]
struct Slot {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// A deadline in the thread's queue: the earliest first, then in order of arrival.
struct Entry {
    at: Instant,
    order: u64,
    slot: Arc<Slot>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

#[derive(Default)]
struct Queue {
    due: BinaryHeap<Reverse<Entry>>,
    next: u64,
}

/// The precise thread's queue and its doorbell.
#[derive(Default)]
struct Timer {
    queue: Mutex<Queue>,
    bell: Condvar,
}

impl Timer {
    /// The one timer, its thread started on first use.
    fn get() -> &'static Timer {
        static TIMER: OnceLock<&'static Timer> = OnceLock::new();
        TIMER.get_or_init(|| {
            let timer: &'static Timer = Box::leak(Box::default());
            std::thread::Builder::new()
                .name("tandem-timer".into())
                .spawn(move || timer.run())
                .expect("spawning the timer thread");
            timer
        })
    }

    fn add(&self, at: Instant, slot: Arc<Slot>) {
        let mut q = self.queue.lock().expect("timer queue");
        let earliest = q.due.peek().is_none_or(|Reverse(e)| at < e.at);
        let order = q.next;
        q.next += 1;
        q.due.push(Reverse(Entry { at, order, slot }));
        drop(q);
        if earliest {
            self.bell.notify_one();
        }
    }

    /// Wakes each waiter at its deadline, forever.
    fn run(&self) {
        let mut q = self.queue.lock().expect("timer queue");
        loop {
            let now = Instant::now();
            while q.due.peek().is_some_and(|Reverse(e)| e.at <= now) {
                let Reverse(e) = q.due.pop().expect("peeked");
                e.slot.fired.store(true, Ordering::Release);
                if let Some(w) = e.slot.waker.lock().expect("waker").take() {
                    w.wake();
                }
            }
            q = match q.due.peek().map(|Reverse(e)| e.at - now) {
                Some(wait) => self.bell.wait_timeout(q, wait).expect("timer queue").0,
                None => self.bell.wait(q).expect("timer queue"),
            };
        }
    }
}

/// The last stretch of a wait, on the precise thread.
struct Fine {
    at: Instant,
    slot: Option<Arc<Slot>>,
}

impl Future for Fine {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        match &self.slot {
            Some(slot) => {
                *slot.waker.lock().expect("waker") = Some(cx.waker().clone());
                if slot.fired.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
            }
            None => {
                let slot = Arc::new(Slot {
                    fired: AtomicBool::new(false),
                    waker: Mutex::new(Some(cx.waker().clone())),
                });
                Timer::get().add(self.at, slot.clone());
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits of a fraction of a millisecond end after their deadline, never before,
    /// and many at once all end (the queue wakes each, in deadline order or not).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sub_millisecond_waits_end_at_their_deadline_not_before() {
        let start = Instant::now();
        let waits: Vec<_> = (0..200u64)
            .map(|i| {
                let at = start + Duration::from_micros(250 + (i * 37) % 5000);
                tokio::spawn(async move {
                    sleep_until(at).await;
                    Instant::now() >= at
                })
            })
            .collect();
        for w in waits {
            assert!(w.await.unwrap(), "a wait ended before its deadline");
        }
        // A deadline already past resolves at once.
        sleep_until(start).await;
    }
}
