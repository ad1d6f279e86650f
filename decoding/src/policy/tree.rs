//! Sizing a token tree by the link it crosses (`--tree auto`).
//!
//! Each round the [`TreeSizer`] grows the best tree for the acceptance seen so far
//! ([`crate::analytic::best_tree`]: every prefix of the growth is the best tree of its
//! size) and keeps the prefix that maximises expected committed tokens per second of
//! round time:
//!
//! ```text
//! goodput(shape) = (E[accepted](shape, a) + 1) / (t_draft(shape) + t_remote(shape))
//! t_draft  = depth · t_level                        (a tree forward per depth)
//! t_remote = t_fixed + nodes · t_pass_node           (round trip, queue, pass, upload)
//! ```
//!
//! - `a[r]`: acceptance of a row's rank-`r` candidate given the earlier ones were
//!   rejected, counted off each verdict's path (every candidate tested before the
//!   accepted one, and all children of the row where the path stops, were rejected);
//!   `E[accepted]` is [`crate::analytic::tree::expected_tree_accepted`].
//! - `t_remote` is a least-squares line through the rounds' (nodes, remote time); until
//!   the rounds differ in size its slope is the verifier's pass time per token (from
//!   the verdicts' timing), its intercept what the rest of the round took.
//! - `t_level` is the rounds' drafting time per depth (a level's forward is taken to
//!   cost the same whatever its width, as for a memory-bound draft).
//!
//! All sums decay by [`DECAY`] a round, so the sizer follows a changing link or text.
//! On a LAN, where a round costs little beyond the pass, the slope wins and the sizer
//! sends near-chains; over a satellite link the fixed round trip wins and it sends the
//! widest tree the budget allows.

use crate::analytic::best_tree::{grow_tree, level_order};
use crate::tree_shape::{MAX_TREE_DEPTH, tree_depth};

/// Weight of the past in every estimate (per round).
const DECAY: f64 = 0.9;

/// Sibling ranks estimated separately; later ranks share the last estimate.
const RANKS: usize = 4;

/// What the edge learned from one verified tree round.
#[derive(Debug, Clone, Copy)]
pub struct TreeObservation<'a> {
    /// The tree's parent rows, as sent.
    pub parents: &'a [u32],
    /// The accepted nodes, from the context down (the verdict's path).
    pub path: &'a [u32],
    /// Time spent drafting the tree, seconds.
    pub draft_s: f64,
    /// Time from sending the tree to its verdict, seconds.
    pub remote_s: f64,
    /// The verifier's pass time for the round (forward and pacing), seconds.
    pub pass_s: f64,
}

/// A decayed least-squares fit of `y = intercept + slope · x`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Line {
    w: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
}

impl Line {
    fn add(&mut self, x: f64, y: f64) {
        for (s, v) in [
            (&mut self.w, 1.0),
            (&mut self.x, x),
            (&mut self.y, y),
            (&mut self.xx, x * x),
            (&mut self.xy, x * y),
        ] {
            *s = DECAY * *s + v;
        }
    }

    /// `(intercept, slope)`; `slope_hint` is used while the points barely differ in `x`.
    fn fit(&self, slope_hint: f64) -> Option<(f64, f64)> {
        if self.w <= 0.0 {
            return None;
        }
        let (mx, my) = (self.x / self.w, self.y / self.w);
        let var = self.xx / self.w - mx * mx;
        let slope = if var > 1.0 {
            ((self.xy / self.w - mx * my) / var).max(0.0)
        } else {
            slope_hint
        };
        Some(((my - slope * mx).max(0.0), slope))
    }
}

/// Picks each round's tree from the link and the acceptance seen so far.
#[derive(Debug, Clone)]
pub struct TreeSizer {
    max_nodes: usize,
    max_depth: usize,
    /// The tree to draft next, as parent rows in level order.
    choice: Vec<u32>,
    accepted: [f64; RANKS],
    tested: [f64; RANKS],
    remote: Line,
    pass_per_token: Option<f64>,
    draft_per_level: Option<f64>,
    rounds: u64,
}

impl TreeSizer {
    /// A sizer of trees of at most `max_nodes` nodes and `max_depth` depths. It starts
    /// with the chain of 4 (or the longest allowed).
    pub fn new(max_nodes: usize, max_depth: usize) -> Self {
        let max_nodes = max_nodes.max(1);
        let max_depth = max_depth.clamp(1, MAX_TREE_DEPTH);
        Self {
            max_nodes,
            max_depth,
            choice: (0..4.min(max_nodes).min(max_depth) as u32).collect(),
            accepted: [1.0; RANKS],
            tested: [2.0; RANKS],
            remote: Line::default(),
            pass_per_token: None,
            draft_per_level: None,
            rounds: 0,
        }
    }

    /// The tree to draft next: its parent rows (0: the context, `j`: node `j − 1`) in
    /// level order.
    pub fn next(&self) -> &[u32] {
        &self.choice
    }

    /// The estimated acceptance of a row's rank-`r` candidate (`r ≥ RANKS` shares the
    /// last).
    pub fn acceptance(&self, rank: usize) -> f64 {
        let r = rank.min(RANKS - 1);
        self.accepted[r] / self.tested[r]
    }

    /// Feeds back a verified round and re-picks the shape.
    pub fn observe(&mut self, o: &TreeObservation<'_>) {
        self.rounds += 1;
        self.count_acceptance(o.parents, o.path);
        let nodes = o.parents.len() as f64;
        let depth = tree_depth(o.parents).max(1) as f64;
        self.remote.add(nodes, o.remote_s);
        let per_token = o.pass_s / (nodes + 1.0);
        self.pass_per_token = Some(ewma(self.pass_per_token, per_token));
        self.draft_per_level = Some(ewma(self.draft_per_level, o.draft_s / depth));
        self.choice = self.best();
    }

    /// Counts each tested candidate's rank as accepted or rejected.
    fn count_acceptance(&mut self, parents: &[u32], path: &[u32]) {
        for r in 0..RANKS {
            self.accepted[r] *= DECAY;
            self.tested[r] *= DECAY;
        }
        let mut children = vec![Vec::new(); parents.len() + 1];
        for (node, &p) in parents.iter().enumerate() {
            if let Some(kids) = children.get_mut(p as usize) {
                kids.push(node as u32);
            }
        }
        let mut row = 0usize;
        for &node in path {
            let Some(rank) = children[row].iter().position(|&c| c == node) else {
                return; // not a path of this tree: learn nothing more from it
            };
            for r in 0..=rank {
                self.tested[r.min(RANKS - 1)] += 1.0;
            }
            self.accepted[rank.min(RANKS - 1)] += 1.0;
            row = node as usize + 1;
        }
        for r in 0..children[row].len() {
            self.tested[r.min(RANKS - 1)] += 1.0;
        }
    }

    /// The prefix of the best growth with the highest predicted goodput, in level
    /// order; the current choice until every estimate has a value.
    fn best(&self) -> Vec<u32> {
        let (Some(pass), Some(level)) = (self.pass_per_token, self.draft_per_level) else {
            return self.choice.clone();
        };
        let Some((fixed, per_node)) = self.remote.fit(pass) else {
            return self.choice.clone();
        };
        let a: Vec<f64> = (0..RANKS).map(|r| self.acceptance(r)).collect();
        let grown = grow_tree(&a, self.max_nodes, self.max_depth);
        let (mut expected, mut depth) = (0.0, 0usize);
        let mut best = (1, f64::NEG_INFINITY);
        for (n, g) in grown.iter().enumerate() {
            expected += g.on_path;
            depth = depth.max(g.depth);
            let time = depth as f64 * level + fixed + per_node * (n + 1) as f64;
            let goodput = (expected + 1.0) / time.max(1e-9);
            if goodput > best.1 {
                best = (n + 1, goodput);
            }
        }
        let parents: Vec<u32> = grown[..best.0].iter().map(|g| g.parent).collect();
        level_order(&parents)
    }
}

fn ewma(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |o| DECAY * o + (1.0 - DECAY) * new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionRng;

    /// Link and acceptance of a simulated edge: `rtt_s` of fixed round trip, `pass_s`
    /// per verified token, rank-`r` candidates accepted with `a[r]`.
    fn run(sizer: &mut TreeSizer, a: [f64; 3], rtt_s: f64, pass_s: f64, rounds: usize) {
        let mut rng = SessionRng::for_stream(5, sizer.rounds);
        for _ in 0..rounds {
            let parents = sizer.next().to_vec();
            let tokens = vec![0u32; parents.len()];
            let tree = crate::DraftTree::new(&tokens, &parents).unwrap();
            let children = tree.children();
            let (mut row, mut path) = (0usize, Vec::new());
            'walk: loop {
                for (rank, &c) in children[row].iter().enumerate() {
                    if rng.uniform() < a[rank.min(2)] {
                        path.push(c as u32);
                        row = c + 1;
                        continue 'walk;
                    }
                }
                break;
            }
            let pass = pass_s * (parents.len() + 1) as f64;
            sizer.observe(&TreeObservation {
                parents: &parents,
                path: &path,
                draft_s: 0.002 * tree_depth(&parents) as f64,
                remote_s: rtt_s + pass,
                pass_s: pass,
            });
        }
    }

    #[test]
    fn learns_acceptance_by_rank() {
        // The estimates track ~10 rounds, so they are averaged over 200.
        let mut s = TreeSizer::new(64, 8);
        run(&mut s, [0.6, 0.3, 0.1], 0.3, 0.001, 50);
        let mut mean = [0.0; 2];
        for _ in 0..200 {
            run(&mut s, [0.6, 0.3, 0.1], 0.3, 0.001, 1);
            mean[0] += s.acceptance(0) / 200.0;
            mean[1] += s.acceptance(1) / 200.0;
        }
        assert!((mean[0] - 0.6).abs() < 0.05, "a0 = {}", mean[0]);
        assert!((mean[1] - 0.3).abs() < 0.05, "a1 = {}", mean[1]);
    }

    #[test]
    fn near_chains_on_a_lan_wide_trees_over_a_satellite() {
        let a = [0.6, 0.3, 0.1];
        let mut lan = TreeSizer::new(64, 8);
        run(&mut lan, a, 0.0005, 0.002, 200);
        let mut sat = TreeSizer::new(64, 8);
        run(&mut sat, a, 0.6, 0.002, 200);
        let (l, s) = (lan.next(), sat.next());
        assert!(l.len() <= 6, "LAN: {l:?}");
        assert!(s.len() >= 3 * l.len(), "satellite {s:?} vs LAN {l:?}");
        let roots = s.iter().filter(|&&p| p == 0).count();
        assert!(roots >= 2, "satellite: {s:?}");
    }

    #[test]
    fn stays_within_its_budget() {
        let mut s = TreeSizer::new(10, 3);
        run(&mut s, [0.9, 0.5, 0.5], 1.0, 0.0001, 50);
        let t = s.next();
        assert!(t.len() <= 10 && tree_depth(t) <= 3, "{t:?}");
    }
}
