//! Streams before their first message. Per connection the count is a hard cap (the
//! stream past it is refused). Overall, a full count drops the stream that has waited
//! longest to admit the new one: a healthy client sends its first message within a
//! round trip and leaves the count at once, while a flood of silent streams only ever
//! waits, so the flood cannot keep a healthy client out for the first-message timeout
//! (refusing the newcomer instead would, for as long as the flood lasts).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// One connection's count of streams before their first message (cheap to clone).
#[derive(Debug, Clone)]
pub struct ConnectionPending(pub(super) Arc<Semaphore>);

/// Every connection's streams before their first message, oldest first.
#[derive(Debug)]
pub struct PendingStreams {
    cap: usize,
    waiting: Mutex<Waiting>,
}

#[derive(Debug, Default)]
struct Waiting {
    next: u64,
    /// By admission order; the sender tells a stream it was dropped.
    streams: BTreeMap<u64, oneshot::Sender<()>>,
}

/// A stream counted as pending (on its connection and overall) until it is dropped,
/// which its owner does when the first message has arrived.
#[derive(Debug)]
pub struct Pending {
    _connection: OwnedSemaphorePermit,
    id: u64,
    all: Arc<PendingStreams>,
    /// Fires when a newer stream took this one's place; `None` once it has.
    dropped: Option<oneshot::Receiver<()>>,
}

impl PendingStreams {
    /// At most `cap` streams (at least one) waiting at once.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            waiting: Mutex::new(Waiting::default()),
        })
    }

    /// Counts a stream holding `connection`'s permit, dropping the longest-waiting
    /// stream if the count is full.
    pub fn admit(self: &Arc<Self>, connection: OwnedSemaphorePermit) -> Pending {
        let (tx, rx) = oneshot::channel();
        let mut w = self.waiting.lock().expect("pending streams lock");
        if w.streams.len() >= self.cap
            && let Some((_, oldest)) = w.streams.pop_first()
        {
            let _ = oldest.send(());
        }
        let id = w.next;
        w.next += 1;
        w.streams.insert(id, tx);
        Pending {
            _connection: connection,
            id,
            all: self.clone(),
            dropped: Some(rx),
        }
    }

    /// Streams waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting
            .lock()
            .expect("pending streams lock")
            .streams
            .len()
    }
}

impl Pending {
    /// Ready once a newer stream has taken this one's place (then never again).
    pub fn poll_dropped(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(rx) = &mut self.dropped else {
            return Poll::Pending;
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(())) => {
                self.dropped = None;
                Poll::Ready(())
            }
            // The sender goes only with this stream's own entry: never while it waits.
            Poll::Ready(Err(_)) => {
                self.dropped = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Resolves once a newer stream has taken this one's place.
    pub async fn dropped(&mut self) {
        std::future::poll_fn(|cx| self.poll_dropped(cx)).await
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut w) = self.all.waiting.lock() {
            w.streams.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permit() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    fn is_dropped(p: &mut Pending) -> bool {
        let waker = std::task::Waker::noop();
        p.poll_dropped(&mut Context::from_waker(waker)).is_ready()
    }

    #[test]
    fn a_full_count_drops_the_longest_waiting_stream_for_the_newest() {
        let all = PendingStreams::new(2);
        let mut a = all.admit(permit());
        let mut b = all.admit(permit());
        assert!(!is_dropped(&mut a) && !is_dropped(&mut b));
        let mut c = all.admit(permit());
        assert!(is_dropped(&mut a), "the oldest gives way");
        assert!(!is_dropped(&mut b) && !is_dropped(&mut c));
        assert_eq!(all.waiting(), 2);
        // A stream whose first message came leaves room: nobody else is dropped.
        drop(b);
        let mut d = all.admit(permit());
        assert!(!is_dropped(&mut c) && !is_dropped(&mut d));
        assert!(!is_dropped(&mut a), "a stream is dropped once");
        drop(a);
        assert_eq!(all.waiting(), 2, "and no longer counts");
    }
}
