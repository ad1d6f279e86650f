//! The expected accepted length of a token tree.
//!
//! Terms: a tree as [`crate::DraftTree`] takes it (parent rows); at each row its
//! children are tested in node order, so a child's *rank* is its place among its
//! siblings (0 first). `a[d][r]` is the probability that the rank-`r` candidate at depth
//! `d + 1` is accepted given that its row was reached and its earlier siblings were
//! rejected (the last rank, and the last depth, repeat).
//!
//! A node is on the accepted path when its parent is and it is the sibling accepted:
//!
//! ```text
//! P(node) = P(parent) · Π_{r' < r} (1 − a[d][r']) · a[d][r]        P(context) = 1
//! E[accepted] = Σ_nodes P(node)            E[committed] = E[accepted] + 1
//! ```
//!
//! A chain (one child a row) with `a = α` everywhere gives `Σ_{i=1..k} α^i`, the chain
//! formula's `E[N] − 1`. For candidates drawn independently from `q` against a target
//! `p` the conditional acceptance by rank follows from the residuals the rule leaves
//! ([`acceptance_by_rank`]); a verdict's own outcomes by rank, the counts `a[·][r]` is
//! measured from, are [`rank_outcomes`].

use crate::Distribution;

/// `a[d][r]`, with the last depth and the last rank repeating (0 when empty).
fn rate(a: &[Vec<f64>], depth: usize, rank: usize) -> f64 {
    let by_rank = match a.get(depth).or(a.last()) {
        Some(r) => r,
        None => return 0.0,
    };
    by_rank
        .get(rank)
        .or(by_rank.last())
        .copied()
        .unwrap_or(0.0)
        .clamp(0.0, 1.0)
}

/// The expected number of accepted nodes of the tree whose parent rows are `parents`
/// (checked as [`crate::DraftTree::new`] checks them; a bad tree counts 0), with
/// acceptance `a` by depth and sibling rank.
pub fn expected_tree_accepted(parents: &[u32], a: &[Vec<f64>]) -> f64 {
    if parents.iter().enumerate().any(|(i, &p)| p as usize > i) {
        return 0.0;
    }
    // Per row: probability it is on the path, its depth, and how many of its children
    // have been placed (the next child's rank), and the probability all were rejected.
    let mut on_path = vec![0.0f64; parents.len() + 1];
    let mut depth = vec![0usize; parents.len() + 1];
    let mut rejected = vec![1.0f64; parents.len() + 1];
    let mut placed = vec![0usize; parents.len() + 1];
    on_path[0] = 1.0;
    for (node, &parent) in parents.iter().enumerate() {
        let p = parent as usize;
        let r = rate(a, depth[p], placed[p]);
        on_path[node + 1] = on_path[p] * rejected[p] * r;
        rejected[p] *= 1.0 - r;
        placed[p] += 1;
        depth[node + 1] = depth[p] + 1;
    }
    on_path[1..].iter().sum()
}

/// What one verdict tells of acceptance by sibling rank: for each rank below `R`
/// (rank `R − 1` standing for it and every later one), how many candidates of that
/// rank were tested and how many accepted. Walking the accepted `path` (nodes from the
/// context down) through the tree of `parents`: at each row the candidates before the
/// accepted one were tested and rejected, the accepted one tested and accepted; at the
/// row where the path stops, every child was tested and rejected. `None` when `path`
/// is not a path of the tree.
pub fn rank_outcomes<const R: usize>(parents: &[u32], path: &[u32]) -> Option<[RankCount; R]> {
    let mut children = vec![Vec::new(); parents.len() + 1];
    for (node, &p) in parents.iter().enumerate() {
        children.get_mut(p as usize)?.push(node as u32);
    }
    const { assert!(R > 0, "at least one rank") };
    let mut out = [RankCount::default(); R];
    let bucket = |r: usize| r.min(R - 1);
    let mut row = 0usize;
    for &node in path {
        let rank = children.get(row)?.iter().position(|&c| c == node)?;
        for r in 0..=rank {
            out[bucket(r)].tested += 1;
        }
        out[bucket(rank)].accepted += 1;
        row = node as usize + 1;
    }
    for r in 0..children[row].len() {
        out[bucket(r)].tested += 1;
    }
    Some(out)
}

/// Candidates of one sibling rank: how many were tested, how many accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RankCount {
    /// Tested (their row was reached and every earlier sibling rejected).
    pub tested: u32,
    /// Accepted.
    pub accepted: u32,
}

/// The conditional acceptance of the first `ranks` candidates of a row drawn
/// independently from `q` against a target `p`: rank 0 accepts with `Σ min(p, q)`,
/// and after each rejection the rule tests the next against the residual
/// `r ← norm(max(0, r − q))`, so rank `n` accepts with `Σ min(r_n, q)`.
pub fn acceptance_by_rank(p: &Distribution, q: &Distribution, ranks: usize) -> Vec<f64> {
    let vocab = p.vocab_size();
    let dense = |d: &Distribution| {
        let mut v = vec![0.0f64; vocab];
        d.for_each(|t, w| v[t as usize] = f64::from(w));
        v
    };
    let (mut r, q) = (dense(p), dense(q));
    let mut out = Vec::with_capacity(ranks);
    for _ in 0..ranks {
        out.push(r.iter().zip(&q).map(|(a, b)| a.min(*b)).sum());
        let next: Vec<f64> = r.iter().zip(&q).map(|(a, b)| (a - b).max(0.0)).collect();
        let total: f64 = next.iter().sum();
        if total <= 0.0 {
            // Nothing left to reject into: every later candidate is accepted.
            out.resize(ranks, 1.0);
            break;
        }
        r = next.into_iter().map(|x| x / total).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_by_rank_follow_the_path_and_the_row_it_stops_at() {
        // Three root candidates; the second has two children, the second of which has one.
        let parents = [0, 0, 0, 2, 2, 5];
        let c = |tested, accepted| RankCount { tested, accepted };
        assert_eq!(
            rank_outcomes::<2>(&parents, &[1, 4, 5]),
            Some([c(3, 1), c(2, 2)])
        );
        assert_eq!(rank_outcomes::<2>(&parents, &[0]), Some([c(1, 1), c(0, 0)]));
        // Nothing accepted: every root candidate was tested; ranks past the last share it.
        assert_eq!(rank_outcomes::<2>(&parents, &[]), Some([c(1, 0), c(2, 0)]));
        assert_eq!(
            rank_outcomes::<3>(&parents, &[]),
            Some([c(1, 0), c(1, 0), c(1, 0)])
        );
        // Stopping at a row with children: they were all tested.
        assert_eq!(rank_outcomes::<2>(&parents, &[1]), Some([c(2, 0), c(2, 1)]));
        assert_eq!(
            rank_outcomes::<2>(&parents, &[3]),
            None,
            "not a root candidate"
        );
        assert_eq!(
            rank_outcomes::<2>(&[0, 7], &[]),
            None,
            "a parent out of range"
        );
    }

    #[test]
    fn a_chain_gives_the_chain_formula() {
        for (alpha, k) in [(0.7, 4usize), (0.3, 2), (1.0, 5)] {
            let parents: Vec<u32> = (0..k as u32).collect();
            let want = crate::analytic::expected_tokens_per_round(alpha, k) - 1.0;
            let got = expected_tree_accepted(&parents, &[vec![alpha]]);
            assert!(
                (got - want).abs() < 1e-12,
                "α {alpha}, k {k}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn siblings_add_the_chance_that_an_earlier_one_was_rejected() {
        // Three candidates at the context: 1 − (1−0.5)(1−0.4)(1−0.3) = 0.79.
        let got = expected_tree_accepted(&[0, 0, 0], &[vec![0.5, 0.4, 0.3]]);
        assert!((got - 0.79).abs() < 1e-12, "{got}");
        // One child under the first candidate, accepted at depth 2 with 0.6:
        // 0.79 + 0.5 · 0.6.
        let got = expected_tree_accepted(&[0, 0, 0, 1], &[vec![0.5, 0.4, 0.3], vec![0.6]]);
        assert!((got - 1.09).abs() < 1e-12, "{got}");
        assert_eq!(
            expected_tree_accepted(&[0, 2], &[vec![0.5]]),
            0.0,
            "a bad tree"
        );
    }

    #[test]
    fn acceptance_by_rank_follows_the_residuals() {
        let p = Distribution::dense(vec![0.6, 0.3, 0.1]).unwrap();
        let q = Distribution::dense(vec![0.2, 0.7, 0.1]).unwrap();
        // Rank 0: Σ min = 0.2 + 0.3 + 0.1 = 0.6; the residual is then [1, 0, 0], and
        // rank 1 accepts with min(1, 0.2) = 0.2; then [1, 0, 0] again.
        let a = acceptance_by_rank(&p, &q, 3);
        for (got, want) in a.iter().zip([0.6, 0.2, 0.2]) {
            assert!((got - want).abs() < 1e-6, "{a:?}");
        }
    }
}
