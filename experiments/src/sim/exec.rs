//! A single-threaded executor on a virtual clock: discrete-event simulation for
//! async code. Tasks run until every one of them waits; then the clock jumps to the
//! earliest timer and wakes its task. Nothing waits in real time, so a simulated hour
//! takes as long as its events take to compute, and the order of events depends only
//! on the program (timers due at the same instant fire in the order they were set).
//!
//! The draft loop runs on it unchanged through [`tandem_draft::Clock`]; channels are
//! tokio's, which need no runtime.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tandem_draft::clock::{BoxFuture, Clock};

use super::radix_heap::RadixHeap;

/// A timer set by a [`Sleep`].
#[derive(Debug, Default)]
struct Timer {
    cancelled: AtomicBool,
    /// In the queue (until it fires or is swept out).
    queued: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// What a due timer does.
enum Fire {
    /// Wakes the task of a [`Sleep`].
    Wake(Arc<Timer>),
    /// Runs a callback ([`VirtualClock::call_at`]).
    Call(Box<dyn FnOnce() + Send>),
}

/// Fewest timers in the queue before cancelled ones are swept out.
const SWEEP_FROM: usize = 4096;

#[derive(Default)]
struct Timers {
    /// Earliest first, then first set: keyed by time (ns).
    queue: RadixHeap<Fire>,
    /// Cancelled timers still in the queue. Every round trip sets a timeout that is
    /// cancelled long before it is due; once they are half the queue they are swept
    /// out, so the queue holds what may still fire (with 100 000 sessions it would
    /// otherwise hold millions).
    cancelled: usize,
}

impl Timers {
    fn cancel(&mut self) {
        self.cancelled += 1;
        if self.queue.len() >= SWEEP_FROM && self.cancelled * 2 > self.queue.len() {
            self.queue.retain(|fire| match fire {
                Fire::Wake(t) if t.cancelled.load(Ordering::Relaxed) => {
                    t.queued.store(false, Ordering::Relaxed);
                    false
                }
                _ => true,
            });
            self.cancelled = 0;
        }
    }
}

/// What the executor, its tasks and their clocks share.
struct Shared {
    origin: Instant,
    now_ns: AtomicU64,
    timers: Mutex<Timers>,
    ready: Mutex<VecDeque<usize>>,
    spawned: Mutex<Vec<BoxFuture<'static, ()>>>,
    /// Something is in `spawned`: the executor looks after every poll, and takes the
    /// lock only then.
    any_spawned: AtomicBool,
}

/// The virtual clock, and a handle to spawn tasks on the executor it belongs to.
#[derive(Clone)]
pub struct VirtualClock(Arc<Shared>);

impl std::fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VirtualClock(t = {:?})", self.elapsed())
    }
}

impl VirtualClock {
    /// Runs `f` when the clock reaches `at`, as a timer of its own: no task, no
    /// poll. For what only hands something on at a time (a message leaving the link),
    /// the cost of an event rather than of a task. A time already passed runs `f` from
    /// a task, in turn with the tasks ready now.
    pub fn call_at(&self, at: Instant, f: impl FnOnce() + Send + 'static) {
        let at = at.saturating_duration_since(self.0.origin).as_nanos() as u64;
        if at <= self.0.now_ns.load(Ordering::Relaxed) {
            self.spawn(async move { f() });
            return;
        }
        let mut timers = self.0.timers.lock().expect("timer lock");
        timers.queue.push(at, Fire::Call(Box::new(f)));
    }

    /// Time since the simulation began.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.0.now_ns.load(Ordering::Relaxed))
    }

    /// Resolves at `at` (at once if that has passed).
    pub fn sleep_until(&self, at: Instant) -> Sleep {
        let at = at.saturating_duration_since(self.0.origin).as_nanos() as u64;
        Sleep {
            shared: self.0.clone(),
            at,
            timer: None,
        }
    }

    /// Runs `fut` as a task of the executor.
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        // Out of tokio's cooperative budget: run from a tokio task that never yields
        // (the executor's caller), a budgeted channel would stay "not ready" for ever.
        let fut = tokio::task::unconstrained(fut);
        self.0
            .spawned
            .lock()
            .expect("spawn lock")
            .push(Box::pin(fut));
        self.0.any_spawned.store(true, Ordering::Release);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.0.origin + self.elapsed()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(self.sleep_until(self.now() + d))
    }
}

/// Waits until the virtual clock reaches a time.
pub struct Sleep {
    shared: Arc<Shared>,
    at: u64,
    timer: Option<Arc<Timer>>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.now_ns.load(Ordering::Relaxed) >= self.at {
            return Poll::Ready(());
        }
        let timer = match &self.timer {
            Some(t) => t.clone(),
            None => {
                let t = Arc::new(Timer::default());
                t.queued.store(true, Ordering::Relaxed);
                let mut timers = self.shared.timers.lock().expect("timer lock");
                timers.queue.push(self.at, Fire::Wake(t.clone()));
                drop(timers);
                self.timer = Some(t.clone());
                t
            }
        };
        *timer.waker.lock().expect("waker lock") = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        // A dropped timer must not move the clock when its time comes.
        if let Some(t) = &self.timer {
            t.cancelled.store(true, Ordering::Relaxed);
            if t.queued.load(Ordering::Relaxed) {
                self.shared.timers.lock().expect("timer lock").cancel();
            }
        }
    }
}

struct TaskWaker {
    id: usize,
    shared: Arc<Shared>,
    queued: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared
                .ready
                .lock()
                .expect("ready lock")
                .push_back(self.id);
        }
    }
}

struct Task {
    fut: BoxFuture<'static, ()>,
    /// Its waker, and the flag behind it (made once, not once a poll).
    waker: Waker,
    wake: Arc<TaskWaker>,
}

/// The executor: owns the tasks, runs them to the end of the simulation.
pub struct Executor {
    shared: Arc<Shared>,
    tasks: Vec<Option<Task>>,
    free: Vec<usize>,
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor {
    /// An executor at virtual time zero, with no tasks.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                origin: Instant::now(),
                now_ns: AtomicU64::new(0),
                timers: Mutex::default(),
                ready: Mutex::default(),
                spawned: Mutex::default(),
                any_spawned: AtomicBool::new(false),
            }),
            tasks: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Its clock (also the handle to spawn on it).
    pub fn clock(&self) -> VirtualClock {
        VirtualClock(self.shared.clone())
    }

    /// Runs until no task can make progress and no timer is left. Returns how many
    /// tasks were still waiting then (0 when every task finished).
    pub fn run(&mut self) -> usize {
        // The tasks ready now, taken from the shared queue at once and polled in
        // order. Tasks they wake (or spawn) join the shared queue behind them: the
        // order is first woken, first polled, as with one pop a poll.
        let mut batch = VecDeque::new();
        loop {
            self.adopt();
            std::mem::swap(
                &mut batch,
                &mut *self.shared.ready.lock().expect("ready lock"),
            );
            if batch.is_empty() {
                if !self.fire_next_timer() {
                    break;
                }
                continue;
            }
            while let Some(id) = batch.pop_front() {
                self.poll(id);
                self.adopt();
            }
        }
        self.tasks.iter().filter(|t| t.is_some()).count()
    }

    /// Takes in the tasks spawned since the last look; each is ready.
    fn adopt(&mut self) {
        if !self.shared.any_spawned.swap(false, Ordering::Acquire) {
            return;
        }
        let new = std::mem::take(&mut *self.shared.spawned.lock().expect("spawn lock"));
        for fut in new {
            let id = self.free.pop().unwrap_or_else(|| {
                self.tasks.push(None);
                self.tasks.len() - 1
            });
            let wake = Arc::new(TaskWaker {
                id,
                shared: self.shared.clone(),
                queued: AtomicBool::new(false),
            });
            wake.wake_by_ref();
            let waker = Waker::from(wake.clone());
            self.tasks[id] = Some(Task { fut, waker, wake });
        }
    }

    fn poll(&mut self, id: usize) {
        // A waker of a finished task may name a slot that is empty or reused: a
        // spurious poll, which futures allow.
        let Some(task) = self.tasks[id].as_mut() else {
            return;
        };
        task.wake.queued.store(false, Ordering::Release);
        let mut cx = Context::from_waker(&task.waker);
        if task.fut.as_mut().poll(&mut cx).is_ready() {
            self.tasks[id] = None;
            self.free.push(id);
        }
    }

    /// Moves the clock to the earliest live timer and wakes its task (or runs its
    /// callback); false if none.
    fn fire_next_timer(&self) -> bool {
        let mut timers = self.shared.timers.lock().expect("timer lock");
        // A cancelled timer popped leaves the clock where it is; the next live one is
        // no earlier, so the clock catches up with the queue's last key.
        while let Some((at, fire)) = timers.queue.pop() {
            if let Fire::Wake(t) = &fire {
                t.queued.store(false, Ordering::Relaxed);
                if t.cancelled.load(Ordering::Relaxed) {
                    timers.cancelled = timers.cancelled.saturating_sub(1);
                    continue;
                }
            }
            drop(timers);
            self.shared.now_ns.fetch_max(at, Ordering::Relaxed);
            match fire {
                Fire::Wake(t) => {
                    if let Some(w) = t.waker.lock().expect("waker lock").take() {
                        w.wake();
                    }
                }
                Fire::Call(f) => f(),
            }
            return true;
        }
        // Only cancelled timers were left, maybe later than the clock: timers set from
        // here on (a later run) may be earlier than they were.
        timers
            .queue
            .rebase(self.shared.now_ns.load(Ordering::Relaxed));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_time_order_and_time_is_exact() {
        let mut ex = Executor::new();
        let clock = ex.clock();
        let log = Arc::new(Mutex::new(Vec::new()));
        for (name, us) in [("c", 300u64), ("a", 100), ("b", 200), ("a2", 100)] {
            let (clock2, log) = (clock.clone(), log.clone());
            clock.spawn(async move {
                clock2.sleep(Duration::from_micros(us)).await;
                log.lock().unwrap().push((name, clock2.elapsed()));
            });
        }
        assert_eq!(ex.run(), 0);
        let us = Duration::from_micros;
        assert_eq!(
            *log.lock().unwrap(),
            [
                ("a", us(100)),
                ("a2", us(100)),
                ("b", us(200)),
                ("c", us(300))
            ]
        );
    }

    #[test]
    fn callbacks_run_at_their_time_in_turn_with_sleeps() {
        let mut ex = Executor::new();
        let clock = ex.clock();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (c, l) = (clock.clone(), log.clone());
        clock.spawn(async move {
            let t0 = c.now();
            for (name, us) in [("call 200", 200u64), ("call 100", 100)] {
                let (c2, l2) = (c.clone(), l.clone());
                c.call_at(t0 + Duration::from_micros(us), move || {
                    l2.lock().unwrap().push((name, c2.elapsed()));
                });
            }
            c.sleep(Duration::from_micros(150)).await;
            l.lock().unwrap().push(("sleep 150", c.elapsed()));
        });
        assert_eq!(ex.run(), 0);
        let us = Duration::from_micros;
        assert_eq!(
            *log.lock().unwrap(),
            [
                ("call 100", us(100)),
                ("sleep 150", us(150)),
                ("call 200", us(200))
            ]
        );
    }

    #[test]
    fn a_cancelled_timer_does_not_move_the_clock() {
        let mut ex = Executor::new();
        let clock = ex.clock();
        let c = clock.clone();
        clock.spawn(async move {
            let r = tandem_draft::clock::timeout(&c, Duration::from_secs(30), async {
                c.sleep(Duration::from_millis(5)).await;
            })
            .await;
            assert!(r.is_ok());
        });
        assert_eq!(ex.run(), 0);
        assert_eq!(clock.elapsed(), Duration::from_millis(5));
        // The cancelled 30 s timer was popped and thrown away: a timer set afterwards,
        // earlier than it, still runs.
        let c = clock.clone();
        clock.spawn(async move { c.sleep(Duration::from_secs(1)).await });
        assert_eq!(ex.run(), 0);
        assert_eq!(clock.elapsed(), Duration::from_millis(1005));
    }

    #[test]
    fn cancelled_timers_are_swept_out_and_live_ones_still_fire() {
        let mut ex = Executor::new();
        let clock = ex.clock();
        let c = clock.clone();
        let queued = Arc::new(Mutex::new(0));
        let (q, shared) = (queued.clone(), ex.shared.clone());
        clock.spawn(async move {
            let live = c.sleep(Duration::from_secs(100));
            for _ in 0..10 * SWEEP_FROM {
                // A timeout set, and cancelled when the answer comes: a round trip.
                let answer = c.sleep(Duration::from_micros(1));
                let r = tandem_draft::clock::timeout(&c, Duration::from_secs(60), answer).await;
                assert!(r.is_ok());
            }
            *q.lock().unwrap() = shared.timers.lock().unwrap().queue.len();
            live.await;
            assert_eq!(c.elapsed(), Duration::from_secs(100));
        });
        assert_eq!(ex.run(), 0);
        let n = *queued.lock().unwrap();
        assert!(n < 2 * SWEEP_FROM, "{n} timers queued");
    }

    #[tokio::test]
    async fn channels_work_inside_a_tokio_task_that_never_yields() {
        let mut ex = Executor::new();
        let clock = ex.clock();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let c = clock.clone();
        clock.spawn(async move {
            for i in 0..1000 {
                c.sleep(Duration::from_micros(1)).await;
                tx.send(i).unwrap();
            }
        });
        let got = Arc::new(Mutex::new(0));
        let g = got.clone();
        clock.spawn(async move {
            while rx.recv().await.is_some() {
                *g.lock().unwrap() += 1;
            }
        });
        assert_eq!(ex.run(), 0);
        assert_eq!(*got.lock().unwrap(), 1000);
    }

    #[test]
    fn a_task_waiting_for_ever_is_reported() {
        let mut ex = Executor::new();
        let (_tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        ex.clock().spawn(async move {
            rx.recv().await;
        });
        assert_eq!(ex.run(), 1);
    }
}
