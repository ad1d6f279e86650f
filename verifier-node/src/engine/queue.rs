//! The jobs waiting for a pass, in arrival order and by session. Filing a job, reading
//! the head, taking out the jobs a pass picked and dropping a closed session's jobs cost
//! O(log n) each, and the tokens waiting are kept as jobs come and go: with a hundred
//! thousand sessions queued (a saturated verifier in the simulator), a pass costs what
//! it takes, not the length of the queue.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;

use super::scheduler::Waiting;

/// Waiting jobs, each at a place in line: later places behind, a job filed in front
/// takes a place before the first.
#[derive(Debug)]
pub struct Queue<J> {
    jobs: BTreeMap<i64, Waiting<J>>,
    /// Tokens of every waiting job.
    tokens: usize,
    /// The places of each session's jobs (sessions with none are absent).
    lines: FxHashMap<u64, Line>,
}

/// The places of one session's jobs, in order. The first is kept inline: a session
/// mostly has one job waiting, and filing it then allocates nothing.
#[derive(Debug)]
struct Line {
    first: i64,
    rest: Vec<i64>,
}

impl Line {
    fn places(&self) -> impl Iterator<Item = i64> + '_ {
        std::iter::once(self.first).chain(self.rest.iter().copied())
    }

    /// Takes `place` out; false when none is left.
    fn take(&mut self, place: i64) -> bool {
        if self.first == place {
            if self.rest.is_empty() {
                return false;
            }
            self.first = self.rest.remove(0);
        } else {
            self.rest.retain(|&p| p != place);
        }
        true
    }
}

impl<J> Default for Queue<J> {
    fn default() -> Self {
        Self {
            jobs: BTreeMap::new(),
            tokens: 0,
            lines: FxHashMap::default(),
        }
    }
}

impl<J> Queue<J> {
    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Tokens of every waiting job.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The job that came first.
    pub fn front(&self) -> Option<&Waiting<J>> {
        self.jobs.values().next()
    }

    /// The jobs, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Waiting<J>> {
        self.jobs.values()
    }

    /// Whether `session` has a job waiting.
    pub fn has_work(&self, session: u64) -> bool {
        self.lines.contains_key(&session)
    }

    /// Files a job behind every other.
    pub fn push_back(&mut self, w: Waiting<J>) {
        let place = self.jobs.last_key_value().map_or(0, |(&p, _)| p + 1);
        self.file(place, w);
    }

    /// Files a job ahead of every other.
    pub fn push_front(&mut self, w: Waiting<J>) {
        let place = self.jobs.first_key_value().map_or(0, |(&p, _)| p - 1);
        self.file(place, w);
    }

    fn file(&mut self, place: i64, w: Waiting<J>) {
        self.tokens += w.size.tokens();
        match self.lines.entry(w.session) {
            Entry::Occupied(mut line) => line.get_mut().rest.push(place),
            Entry::Vacant(v) => {
                v.insert(Line {
                    first: place,
                    rest: Vec::new(),
                });
            }
        }
        self.jobs.insert(place, w);
    }

    fn take(&mut self, place: i64) -> Option<Waiting<J>> {
        let w = self.jobs.remove(&place)?;
        self.forget_place(&w, place);
        Some(w)
    }

    /// Unaccounts `w`, just taken out of `place`.
    fn forget_place(&mut self, w: &Waiting<J>, place: i64) {
        self.tokens -= w.size.tokens();
        if let Some(line) = self.lines.get_mut(&w.session)
            && !line.take(place)
        {
            self.lines.remove(&w.session);
        }
    }

    /// Takes out the jobs at these positions in line (0 the front), in order; the
    /// positions must ascend. Costs the last position, not the queue's length.
    pub fn take_at(&mut self, positions: &[usize]) -> Vec<Waiting<J>> {
        if positions.iter().enumerate().all(|(i, &p)| i == p) {
            // The front of the line (a pass that took everyone in turn): no search.
            let mut out = Vec::with_capacity(positions.len());
            for _ in positions {
                let (place, w) = self.jobs.pop_first().expect("positions within the queue");
                self.forget_place(&w, place);
                out.push(w);
            }
            return out;
        }
        let mut wanted = positions.iter().peekable();
        let places: Vec<i64> = self
            .jobs
            .keys()
            .enumerate()
            .filter(|&(i, _)| wanted.next_if_eq(&&i).is_some())
            .take(positions.len())
            .map(|(_, &p)| p)
            .collect();
        places.into_iter().filter_map(|p| self.take(p)).collect()
    }

    /// Takes out every job of `session`.
    pub fn forget(&mut self, session: u64) {
        let places: Vec<i64> = self
            .lines
            .get(&session)
            .map(|line| line.places().collect())
            .unwrap_or_default();
        for place in places {
            self.take(place);
        }
    }

    /// Takes out every job, in order.
    pub fn take_all(&mut self) -> Vec<Waiting<J>> {
        self.tokens = 0;
        self.lines.clear();
        std::mem::take(&mut self.jobs).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::engine::scheduler::Size;

    fn job(session: u64, tokens: usize) -> Waiting<u64> {
        Waiting {
            session,
            arrived: Instant::now(),
            size: Size::Block(tokens),
            job: session,
        }
    }

    fn order(q: &Queue<u64>) -> Vec<u64> {
        q.iter().map(|w| w.job).collect()
    }

    #[test]
    fn keeps_order_tokens_and_lines_as_jobs_come_and_go() {
        let mut q = Queue::default();
        for (s, t) in [(1, 3), (2, 4), (3, 5), (4, 6)] {
            q.push_back(job(s, t));
        }
        q.push_front(job(9, 1));
        assert_eq!(order(&q), [9, 1, 2, 3, 4]);
        assert_eq!(q.tokens(), 19);
        let taken: Vec<u64> = q.take_at(&[1, 3]).iter().map(|w| w.job).collect();
        assert_eq!(taken, [1, 3]);
        assert_eq!(order(&q), [9, 2, 4]);
        assert_eq!(q.tokens(), 11);
        assert!(!q.has_work(1) && q.has_work(2));
        q.forget(2);
        assert_eq!(order(&q), [9, 4]);
        assert_eq!((q.tokens(), q.len()), (7, 2));
        q.forget(2); // nothing left of it: no change
        assert_eq!(q.front().map(|w| w.job), Some(9));
        let all: Vec<u64> = q.take_all().iter().map(|w| w.job).collect();
        assert_eq!(all, [9, 4]);
        assert!(q.is_empty() && q.tokens() == 0 && !q.has_work(4));
    }

    #[test]
    fn a_session_with_several_jobs_loses_them_all() {
        let mut q = Queue::default();
        for s in [1, 2, 1, 1] {
            q.push_back(job(s, 2));
        }
        q.forget(1);
        assert_eq!(order(&q), [2]);
        assert_eq!(q.tokens(), 2);
    }

    #[test]
    fn taking_the_front_keeps_the_lines_of_what_is_left() {
        let mut q = Queue::default();
        for (s, t) in [(1, 2), (2, 3), (1, 4), (3, 5)] {
            q.push_back(job(s, t));
        }
        let taken: Vec<u64> = q.take_at(&[0, 1]).iter().map(|w| w.job).collect();
        assert_eq!(taken, [1, 2]);
        assert_eq!(order(&q), [1, 3]);
        assert_eq!(q.tokens(), 9);
        assert!(q.has_work(1) && !q.has_work(2) && q.has_work(3));
        // Session 1's second job is now the first of its line: forgetting it empties it.
        q.forget(1);
        assert_eq!(order(&q), [3]);
        assert!(!q.has_work(1));
    }
}
