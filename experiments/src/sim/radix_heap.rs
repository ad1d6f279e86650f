//! A radix heap: the simulator's timer queue. A priority queue for keys that never go
//! below the last one popped (a clock's timers are never set in the past), in which a
//! push is O(1) and a pop moves each key down at most once per bit of distance to the
//! minimum, scanning one bucket at a time instead of sifting through a binary heap
//! (a cache miss a level at ~10⁶ timers).
//!
//! Bucket `b` holds the keys whose highest bit differing from the last popped key is
//! bit `b - 1` (bucket 0: equal to it). A pop from an empty bucket 0 finds the first
//! non-empty bucket, takes its least key as the new last, and redistributes the bucket
//! into lower ones, which its keys all fall into.

/// Keys are `u128`: a time and a tie-break (both increasing), so every key is unique.
pub struct RadixHeap<T> {
    last: u128,
    buckets: Vec<Vec<(u128, T)>>,
    len: usize,
}

impl<T> Default for RadixHeap<T> {
    fn default() -> Self {
        Self {
            last: 0,
            buckets: (0..=u128::BITS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }
}

fn bucket(x: u128) -> usize {
    (u128::BITS - x.leading_zeros()) as usize
}

impl<T> RadixHeap<T> {
    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Queues `item` at `key`, which must not be below the last key popped.
    pub fn push(&mut self, key: u128, item: T) {
        assert!(key >= self.last, "a radix heap's keys never go back");
        self.buckets[bucket(key ^ self.last)].push((key, item));
        self.len += 1;
    }

    /// Takes the item with the least key.
    pub fn pop(&mut self) -> Option<(u128, T)> {
        if self.buckets[0].is_empty() {
            let i = self.buckets.iter().position(|b| !b.is_empty())?;
            let mut moved = std::mem::take(&mut self.buckets[i]);
            self.last = moved
                .iter()
                .map(|(k, _)| *k)
                .min()
                .expect("a non-empty bucket");
            for (k, item) in moved.drain(..) {
                self.buckets[bucket(k ^ self.last)].push((k, item));
            }
            // Its keys all went lower; it keeps its allocation for the next ones.
            self.buckets[i] = moved;
        }
        let top = self.buckets[0].pop();
        self.len -= usize::from(top.is_some());
        top
    }

    /// Keeps the items `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for b in &mut self.buckets {
            b.retain(|(_, item)| keep(item));
        }
        self.len = self.buckets.iter().map(Vec::len).sum();
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
        let (mut seq, mut now) = (0u128, 0u128);
        for _ in 0..1000 {
            seq += 1;
            let key = ((next() % 1_000_000) as u128) << 64 | seq;
            heap.push(key, key);
            reference.insert(key);
        }
        let mut popped = 0;
        while let Some((key, item)) = heap.pop() {
            assert_eq!(key, item);
            assert_eq!(Some(key), reference.pop_first());
            assert!(key >= now);
            now = key;
            popped += 1;
            for _ in 0..(next() % 3) {
                seq += 1;
                let later = ((now >> 64) + 1 + (next() % 1_000_000) as u128) << 64 | seq;
                if popped < 5000 {
                    heap.push(later, later);
                    reference.insert(later);
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
        for seq in 1..=5u128 {
            heap.push(7u128 << 64 | seq, seq);
        }
        let order: Vec<u128> = std::iter::from_fn(|| heap.pop().map(|(_, s)| s)).collect();
        assert_eq!(order, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn retain_drops_items_and_counts_the_rest() {
        let mut heap = RadixHeap::default();
        for k in 1..=100u128 {
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
        heap.pop();
        heap.push(9, ());
    }
}
