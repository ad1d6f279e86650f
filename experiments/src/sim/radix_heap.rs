//! A radix heap: the simulator's timer queue. A priority queue for keys that never go
//! below the last one popped (a clock's timers are never set in the past), in which a
//! push is O(1) and a pop moves each key down at most once per bit of distance to the
//! minimum, scanning one bucket at a time instead of sifting through a binary heap
//! (a cache miss a level at ~10⁶ timers).
//!
//! Bucket `b` holds the keys whose highest bit differing from the last popped key is
//! bit `b - 1`; the keys equal to it are due, first in first out. A pop with nothing
//! due finds the first non-empty bucket, takes its least key as the new last, and
//! redistributes the bucket into lower ones, which its keys all fall into.
//!
//! Items of equal keys come out in the order they were pushed: they always share a
//! bucket (a key's bucket depends only on it and the last key), buckets are appended
//! to and redistributed in order, and the due queue is taken from the front.

use std::collections::VecDeque;

/// Buckets 1–64 (bucket 0 is the due queue).
const BUCKETS: usize = u64::BITS as usize;

/// A monotone priority queue of `u64` keys (a clock's nanoseconds).
pub struct RadixHeap<T> {
    last: u64,
    /// Items whose key is `last`, in the order pushed.
    due: VecDeque<T>,
    /// `buckets[b - 1]` is bucket `b`.
    buckets: Vec<Vec<(u64, T)>>,
    /// Bit `b - 1` set: bucket `b` holds keys.
    occupied: u64,
    len: usize,
}

impl<T> Default for RadixHeap<T> {
    fn default() -> Self {
        Self {
            last: 0,
            due: VecDeque::new(),
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            occupied: 0,
            len: 0,
        }
    }
}

impl<T> RadixHeap<T> {
    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Queues `item` at `key`, which must not be below the last key popped (or the
    /// floor given to [`RadixHeap::rebase`]).
    pub fn push(&mut self, key: u64, item: T) {
        assert!(key >= self.last, "a radix heap's keys never go back");
        self.file(key, item);
        self.len += 1;
    }

    fn file(&mut self, key: u64, item: T) {
        match key ^ self.last {
            0 => self.due.push_back(item),
            x => {
                let b = x.ilog2() as usize;
                self.buckets[b].push((key, item));
                self.occupied |= 1 << b;
            }
        }
    }

    /// Takes the item with the least key (of equal keys, the first pushed).
    pub fn pop(&mut self) -> Option<(u64, T)> {
        if self.due.is_empty() {
            if self.occupied == 0 {
                return None;
            }
            let b = self.occupied.trailing_zeros() as usize;
            self.occupied &= !(1 << b);
            let mut moved = std::mem::take(&mut self.buckets[b]);
            self.last = moved
                .iter()
                .map(|(k, _)| *k)
                .min()
                .expect("a non-empty bucket");
            for (k, item) in moved.drain(..) {
                self.file(k, item);
            }
            // Its keys all went lower; it keeps its allocation for the next ones.
            self.buckets[b] = moved;
        }
        let item = self.due.pop_front()?;
        self.len -= 1;
        Some((self.last, item))
    }

    /// Lets keys from `floor` on in again, once it is empty: a clock that popped a
    /// cancelled timer and threw it away has not moved to its time.
    pub fn rebase(&mut self, floor: u64) {
        assert_eq!(self.len, 0, "only an empty radix heap is rebased");
        self.last = floor;
    }

    /// Keeps the items `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.due.retain(&mut keep);
        self.occupied = 0;
        for (b, bucket) in self.buckets.iter_mut().enumerate() {
            bucket.retain(|(_, item)| keep(item));
            if !bucket.is_empty() {
                self.occupied |= 1 << b;
            }
        }
        self.len = self.due.len() + self.buckets.iter().map(Vec::len).sum::<usize>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_key_order_while_keys_are_pushed_between_pops() {
        // A clock's pattern: each pop may set later timers, never earlier ones.
        let mut heap = RadixHeap::default();
        let mut reference = std::collections::BTreeSet::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Keys with ties (times drawn from a small range), each item its push order.
        let (mut seq, mut now) = (0u64, 0u64);
        for _ in 0..1000 {
            seq += 1;
            let key = next() % 5_000;
            heap.push(key, seq);
            reference.insert((key, seq));
        }
        let mut popped = 0;
        while let Some((key, item)) = heap.pop() {
            assert_eq!(Some((key, item)), reference.pop_first());
            assert!(key >= now);
            now = key;
            popped += 1;
            for _ in 0..(next() % 3) {
                seq += 1;
                let later = now + next() % 5_000;
                if popped < 5000 {
                    heap.push(later, seq);
                    reference.insert((later, seq));
                }
            }
            assert_eq!(heap.len(), reference.len());
        }
        assert!(reference.is_empty());
        assert!(popped > 5000);
    }

    #[test]
    fn equal_times_pop_in_the_order_pushed() {
        let mut heap = RadixHeap::default();
        // Some pushed before the clock reached 7, some once it had (due at once).
        for seq in 1..=3 {
            heap.push(7, seq);
        }
        heap.push(9, 0);
        assert_eq!(heap.pop(), Some((7, 1)));
        heap.push(7, 4);
        heap.push(7, 5);
        let order: Vec<(u64, u32)> = std::iter::from_fn(|| heap.pop()).collect();
        assert_eq!(order, [(7, 2), (7, 3), (7, 4), (7, 5), (9, 0)]);
    }

    #[test]
    fn retain_drops_items_and_counts_the_rest() {
        let mut heap = RadixHeap::default();
        for k in 1..=100u64 {
            heap.push(k, k);
        }
        heap.retain(|k| k % 2 == 0);
        assert_eq!(heap.len(), 50);
        assert_eq!(heap.pop(), Some((2, 2)));
    }

    #[test]
    #[should_panic(expected = "never go back")]
    fn a_key_below_the_last_popped_is_refused() {
        let mut heap = RadixHeap::default();
        heap.push(10, ());
        heap.push(20, ());
        heap.pop();
        heap.push(9, ());
    }

    #[test]
    fn an_emptied_heap_rebased_takes_keys_from_its_floor() {
        let mut heap = RadixHeap::default();
        heap.push(10, 'a');
        assert_eq!(heap.pop(), Some((10, 'a')));
        heap.rebase(5);
        heap.push(12, 'c');
        heap.push(9, 'b');
        assert_eq!(heap.pop(), Some((9, 'b')));
        assert_eq!(heap.pop(), Some((12, 'c')));
    }
}
