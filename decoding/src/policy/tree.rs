//! Sizing a token tree by the link it crosses (`--tree auto`).
//!
//! Each round the [`TreeSizer`] grows the best tree for the acceptance seen so far
//! ([`crate::analytic::best_tree`]: every prefix of the growth is the best tree of its
//! size) and keeps the prefix that maximises expected committed tokens per second of
//! round time:
//!
//! ```text
//! goodput(shape) = (E[accepted](shape, a) + 1) / (t_draft(shape) + t_remote(shape))
//! t_draft  = depth · t_level + nodes · t_node        (a tree forward per depth)
//! t_remote = t_net + (1 + queue/pass) · t_pass
//! t_pass   = pass_0 + pass_token · sessions · (nodes + 1)
//! ```
//!
//! - `a[r]`: acceptance of a row's rank-`r` candidate given the earlier ones were
//!   rejected, counted off each verdict's path (every candidate tested before the
//!   accepted one, and all children of the row where the path stops, were rejected);
//!   `E[accepted]` is [`crate::analytic::tree::expected_tree_accepted`].
//! - `t_pass` is a least-squares line through the verdicts' (tokens in the pass, pass
//!   time); until the passes differ in size, half a pass is taken as fixed and half as
//!   per token. The
//!   verifier is shared: every session in the pass (`sessions`, the verdicts' batch
//!   size) is taken to size its tree as this one does, so a node more here is
//!   `sessions` tokens more in the pass. A sizer that counted only its own nodes would
//!   grow trees that are free to it and ruinous to a full verifier.
//! - `t_net` is what the round took beyond the verifier's queue and pass (the link, the
//!   upload); the queue wait is counted in passes (`queue/pass`), which a busier pass
//!   lengthens in proportion.
//! - `t_level` and `t_node` are a least-squares fit (no intercept) of the rounds'
//!   drafting times: a memory-bound draft costs a forward per depth whatever its
//!   width, a compute-bound one (a CPU) also pays per node. Until the rounds' shapes
//!   tell the two apart (chains only), all of it is `t_level`.
//!
//! The session's open ([`TreeSizer::observe_open`]) gives the link, the queue and a
//! pass before any tree, so the first tree is already sized by the link: with no
//! drafting timed yet it is a chain (a step a depth on any draft), as long as the
//! round trip makes worth it; the second round on may branch.
//!
//! All estimates decay by [`DECAY`] a round, so the sizer follows a changing link or
//! text. On a LAN, where a round costs little beyond the pass and the draft, nodes
//! cost more than they win and the sizer sends near-chains; over a satellite link the
//! round trip wins and it sends the widest tree the budget allows.

use crate::analytic::best_tree::{grow_tree, level_order};
use crate::analytic::tree::rank_outcomes;
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
    /// The verifier's queue wait before that pass, seconds.
    pub queue_s: f64,
    /// Sessions in that pass.
    pub batch_sessions: u32,
    /// Tokens in that pass.
    pub batch_tokens: u32,
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

/// A decayed least-squares fit of `y = a · u + b · v` (no intercept), `a, b ≥ 0`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Plane {
    uu: f64,
    uv: f64,
    vv: f64,
    uy: f64,
    vy: f64,
}

impl Plane {
    fn add(&mut self, u: f64, v: f64, y: f64) {
        for (s, x) in [
            (&mut self.uu, u * u),
            (&mut self.uv, u * v),
            (&mut self.vv, v * v),
            (&mut self.uy, u * y),
            (&mut self.vy, v * y),
        ] {
            *s = DECAY * *s + x;
        }
    }

    /// `(a, b)`; `b = 0` while `u` and `v` move together (or `b` would be negative).
    fn fit(&self) -> Option<(f64, f64)> {
        if self.uu <= 0.0 {
            return None;
        }
        let alone = ((self.uy / self.uu).max(0.0), 0.0);
        let det = self.uu * self.vv - self.uv * self.uv;
        if det <= 1e-6 * self.uu * self.vv {
            return Some(alone);
        }
        let a = (self.uy * self.vv - self.vy * self.uv) / det;
        let b = (self.vy * self.uu - self.uy * self.uv) / det;
        Some(if a >= 0.0 && b >= 0.0 { (a, b) } else { alone })
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
    pass: Line,
    pass_per_token: Option<f64>,
    sessions: Option<f64>,
    queue_per_pass: Option<f64>,
    net_s: Option<f64>,
    draft: Plane,
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
            pass: Line::default(),
            pass_per_token: None,
            sessions: None,
            queue_per_pass: None,
            net_s: None,
            draft: Plane::default(),
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
        self.count_acceptance(o.parents, o.path);
        let nodes = o.parents.len() as f64;
        let depth = tree_depth(o.parents).max(1) as f64;
        self.draft.add(depth, nodes, o.draft_s);
        self.observe_round_trip(o);
    }

    /// Feeds back the session's open (its prompt's pass, no tree) and re-picks the
    /// shape: the first tree is sized by the link it will cross. Until a tree has been
    /// drafted and timed it is a chain, its drafting taken as free (the round trip and
    /// the verifier's pass, which grows with the nodes of every session in it, bound
    /// it).
    pub fn observe_open(&mut self, o: &TreeObservation<'_>) {
        self.observe_round_trip(o);
    }

    /// The pass, the queue and the link of a round trip.
    fn observe_round_trip(&mut self, o: &TreeObservation<'_>) {
        let tokens = f64::from(o.batch_tokens.max(1));
        self.pass.add(tokens, o.pass_s);
        // Until the passes differ in size: half of a pass fixed, half per token.
        self.pass_per_token = Some(ewma(self.pass_per_token, 0.5 * o.pass_s / tokens));
        self.sessions = Some(ewma(self.sessions, f64::from(o.batch_sessions.max(1))));
        let queue = o.queue_s / o.pass_s.max(1e-9);
        self.queue_per_pass = Some(ewma(self.queue_per_pass, queue));
        let net = (o.remote_s - o.pass_s - o.queue_s).max(0.0);
        self.net_s = Some(ewma(self.net_s, net));
        self.choice = self.best();
    }

    /// Counts each tested candidate's rank as accepted or rejected.
    fn count_acceptance(&mut self, parents: &[u32], path: &[u32]) {
        for r in 0..RANKS {
            self.accepted[r] *= DECAY;
            self.tested[r] *= DECAY;
        }
        // Not a path of this tree: nothing to learn from it.
        for (r, c) in rank_outcomes::<RANKS>(parents, path)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            self.tested[r] += f64::from(c.tested);
            self.accepted[r] += f64::from(c.accepted);
        }
    }

    /// The prefix of the best growth with the highest predicted goodput, in level
    /// order; the current choice until a round trip has been seen.
    fn best(&self) -> Vec<u32> {
        let estimates = (
            self.pass_per_token,
            self.sessions,
            self.queue_per_pass,
            self.net_s,
        );
        let (Some(hint), Some(sessions), Some(queue), Some(net)) = estimates else {
            return self.choice.clone();
        };
        let Some((pass_0, per_token)) = self.pass.fit(hint) else {
            return self.choice.clone();
        };
        // No tree timed yet (sized from the open): a chain, its drafting taken as free
        // (a step a depth whatever the draft).
        let (a, (level, node)) = match self.draft.fit() {
            Some(fit) => ((0..RANKS).map(|r| self.acceptance(r)).collect(), fit),
            None => (vec![self.acceptance(0), 0.0], (0.0, 0.0)),
        };
        let grown = grow_tree(&a, self.max_nodes, self.max_depth);
        let (mut expected, mut depth) = (0.0, 0usize);
        let mut best = (1, f64::NEG_INFINITY);
        for (n, g) in grown.iter().enumerate() {
            expected += g.on_path;
            depth = depth.max(g.depth);
            let nodes = (n + 1) as f64;
            let pass = pass_0 + per_token * sessions * (nodes + 1.0);
            let time = depth as f64 * level + node * nodes + net + (1.0 + queue) * pass;
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
        run_with(&mut rng(), sizer, a, rtt_s, pass_s, rounds);
    }

    /// [`run`] drawing from `rng`.
    fn run_with(
        rng: &mut SessionRng,
        sizer: &mut TreeSizer,
        a: [f64; 3],
        rtt_s: f64,
        pass_s: f64,
        rounds: usize,
    ) {
        run_drafting(rng, sizer, a, rtt_s, pass_s, 0.0, 1, rounds);
    }

    fn rng() -> SessionRng {
        SessionRng::for_stream(5, 0)
    }

    /// [`run`] with a draft that also pays `node_s` a node (compute-bound).
    #[allow(clippy::too_many_arguments)]
    fn run_drafting(
        rng: &mut SessionRng,
        sizer: &mut TreeSizer,
        a: [f64; 3],
        rtt_s: f64,
        pass_s: f64,
        node_s: f64,
        sessions: u32,
        rounds: usize,
    ) {
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
            // Every session in the pass sends a tree this size.
            let tokens = sessions * (parents.len() as u32 + 1);
            let pass = pass_s * f64::from(tokens);
            sizer.observe(&TreeObservation {
                parents: &parents,
                path: &path,
                draft_s: 0.002 * tree_depth(&parents) as f64 + node_s * parents.len() as f64,
                remote_s: rtt_s + pass,
                pass_s: pass,
                queue_s: 0.0,
                batch_sessions: sessions,
                batch_tokens: tokens,
            });
        }
    }

    #[test]
    fn learns_acceptance_by_rank() {
        // The estimates track ~10 rounds, so they are averaged over 200.
        let (mut s, mut rng) = (TreeSizer::new(64, 8), rng());
        run_with(&mut rng, &mut s, [0.6, 0.3, 0.1], 0.3, 0.001, 50);
        let mut mean = [0.0; 2];
        for _ in 0..200 {
            run_with(&mut rng, &mut s, [0.6, 0.3, 0.1], 0.3, 0.001, 1);
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
    fn a_draft_that_pays_per_node_gets_smaller_trees() {
        let a = [0.6, 0.3, 0.1];
        let mut free = TreeSizer::new(64, 8);
        run_drafting(&mut rng(), &mut free, a, 0.6, 0.0001, 0.0, 1, 200);
        let mut costly = TreeSizer::new(64, 8);
        run_drafting(&mut rng(), &mut costly, a, 0.6, 0.0001, 0.02, 1, 200);
        let (f, c) = (free.next().len(), costly.next().len());
        assert!(c < f, "per-node drafting: {c} nodes, free: {f}");
    }

    #[test]
    fn a_shared_verifier_gets_smaller_trees_than_a_lone_one() {
        // 0.1 ms a token in the pass: to a lone session a node costs 0.1 ms, to each of
        // 200 sessions sizing alike 20 ms.
        let a = [0.6, 0.3, 0.1];
        let mut lone = TreeSizer::new(64, 8);
        run_drafting(&mut rng(), &mut lone, a, 0.1, 0.0001, 0.0, 1, 200);
        let mut shared = TreeSizer::new(64, 8);
        run_drafting(&mut rng(), &mut shared, a, 0.1, 0.0001, 0.0, 200, 200);
        let (l, s) = (lone.next().len(), shared.next().len());
        assert!(s * 2 <= l, "shared: {s} nodes, lone: {l}");
    }

    /// The session's open over a link of `rtt_s`: a 0.1 s prefill pass of 100 tokens.
    fn open(rtt_s: f64) -> TreeObservation<'static> {
        TreeObservation {
            parents: &[],
            path: &[],
            draft_s: 0.0,
            remote_s: rtt_s + 0.1,
            pass_s: 0.1,
            queue_s: 0.0,
            batch_sessions: 1,
            batch_tokens: 100,
        }
    }

    #[test]
    fn the_open_sizes_the_first_tree_as_a_chain() {
        // Before it: the chain of 4, whatever the link.
        let mut sat = TreeSizer::new(64, 12);
        assert_eq!(sat.next(), [0, 1, 2, 3]);
        // After it, no tree timed yet: a chain, as long as the link makes worth it.
        sat.observe_open(&open(0.6));
        let mut lan = TreeSizer::new(64, 12);
        lan.observe_open(&open(0.0005));
        let chain = |t: &[u32]| t.iter().enumerate().all(|(n, &p)| p as usize == n);
        let (s, l) = (sat.next(), lan.next());
        assert!(chain(s) && chain(l), "satellite {s:?}, LAN {l:?}");
        assert!(s.len() > l.len(), "satellite {s:?}, LAN {l:?}");
        // Once trees are timed, the satellite's grows wide.
        run(&mut sat, [0.6, 0.3, 0.1], 0.6, 0.0001, 20);
        assert!(sat.next().iter().filter(|&&p| p == 0).count() >= 2);
    }

    #[test]
    fn stays_within_its_budget() {
        let mut s = TreeSizer::new(10, 3);
        run(&mut s, [0.9, 0.5, 0.5], 1.0, 0.0001, 50);
        let t = s.next();
        assert!(t.len() <= 10 && tree_depth(t) <= 3, "{t:?}");
    }
}
