//! A cap on the bytes a server holds for messages not yet complete, shared by every
//! stream of every connection: a client that announces large messages and never
//! finishes them cannot make the server hold more than the cap, all together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The shared cap (cheap to clone).
#[derive(Debug, Clone)]
pub struct ByteBudget {
    used: Arc<AtomicU64>,
    cap: u64,
}

/// Taking more would pass the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{wanted} more bytes for an unfinished message would pass the verifier's limit of {cap} bytes held for unfinished messages (Connections.max_buffered_bytes)"
)]
pub struct OverBudget {
    /// Bytes asked for.
    pub wanted: u64,
    /// The cap.
    pub cap: u64,
}

impl ByteBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: u64) -> Self {
        Self {
            used: Arc::default(),
            cap,
        }
    }

    /// Bytes held now, all holders together.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// A holder of no bytes yet, for one message.
    pub fn holder(&self) -> Held {
        Held {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// Bytes one unfinished message holds; given back when released or dropped.
#[derive(Debug)]
pub struct Held {
    budget: ByteBudget,
    bytes: u64,
}

impl Held {
    /// Takes `n` more bytes, or refuses if the budget would pass its cap.
    pub fn grow(&mut self, n: u64) -> Result<(), OverBudget> {
        let b = &self.budget;
        let before = b.used.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > b.cap {
            b.used.fetch_sub(n, Ordering::AcqRel);
            return Err(OverBudget {
                wanted: n,
                cap: b.cap,
            });
        }
        self.bytes += n;
        Ok(())
    }

    /// Gives every byte back (the message is complete).
    pub fn release(&mut self) {
        self.budget
            .used
            .fetch_sub(std::mem::take(&mut self.bytes), Ordering::AcqRel);
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_share_the_cap_and_give_back_on_drop() {
        let b = ByteBudget::new(100);
        let mut one = b.holder();
        let mut two = b.holder();
        one.grow(60).unwrap();
        assert_eq!(
            two.grow(41),
            Err(OverBudget {
                wanted: 41,
                cap: 100
            })
        );
        two.grow(40).unwrap();
        assert_eq!(b.used(), 100);
        one.release();
        assert_eq!((b.used(), one.bytes()), (40, 0));
        drop(two);
        assert_eq!(b.used(), 0);
    }
}
