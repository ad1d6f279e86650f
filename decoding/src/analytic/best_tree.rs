//! The token tree with the largest expected accepted length for a node budget.
//!
//! Terms as in [`super::tree`]: a row's rank-`r` candidate is accepted with `a[r]`
//! given that its earlier siblings were rejected (the last rank repeats), at every
//! depth. A node is on the accepted path with probability
//! `P(parent) · Π_{r' < r}(1 − a[r']) · a[r]`, and the expected accepted length is the
//! sum of these over the nodes; adding a node changes no other node's. So the tree is
//! grown a node at a time (Sequoia, Chen et al. 2024, arXiv 2402.12374, builds the same
//! optimum by dynamic programming): among the nodes a tree can take next (each row's
//! next-rank child, each node's first child), add the one most likely on the path.
//! Every prefix of the growth is the tree of its size, so one growth serves every
//! budget: a sizer sums the prefix and picks the size ([`crate::policy::TreeSizer`]).
//!
//! Worked example, `a = [0.5, 0.4]`: the first node (rank 0 at the context) is on the
//! path with 0.5; its child (0.25) beats the context's second candidate
//! (0.5 · 0.4 = 0.2), which comes third; then the chain's third node (0.125) beats the
//! context's third candidate (0.5 · 0.6 · 0.4 = 0.12). With `a = [0.8, 0.4]` the chain
//! wins for eleven nodes (0.8¹¹ = 0.086 > 0.08): a confident draft grows a chain.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A node of a grown tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grown {
    /// Its parent row, in growth order (0: the context; `j`: the `j`-th node grown).
    pub parent: u32,
    /// Its depth (a child of the context: 1).
    pub depth: usize,
    /// The probability that it is on the accepted path.
    pub on_path: f64,
}

/// A node the tree can take next.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    on_path: f64,
    /// Order of discovery (ties: the earlier).
    order: usize,
    parent: u32,
    rank: usize,
    depth: usize,
    /// Probability that its row is reached and its earlier siblings rejected.
    reach: f64,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.on_path
            .total_cmp(&other.on_path)
            .then(other.order.cmp(&self.order))
    }
}

fn rate(a: &[f64], rank: usize) -> f64 {
    a.get(rank)
        .or(a.last())
        .copied()
        .unwrap_or(0.0)
        .clamp(0.0, 1.0)
}

/// Grows the best tree of up to `max_nodes` nodes at most `max_depth` deep for
/// acceptance `a` by rank, in growth order.
pub fn grow_tree(a: &[f64], max_nodes: usize, max_depth: usize) -> Vec<Grown> {
    let mut out: Vec<Grown> = Vec::with_capacity(max_nodes);
    if max_depth == 0 {
        return out;
    }
    let mut heap = BinaryHeap::new();
    let mut order = 0;
    let mut push = |heap: &mut BinaryHeap<Candidate>, parent, rank, depth, reach: f64| {
        heap.push(Candidate {
            on_path: reach * rate(a, rank),
            order,
            parent,
            rank,
            depth,
            reach,
        });
        order += 1;
    };
    push(&mut heap, 0, 0, 1, 1.0);
    while out.len() < max_nodes {
        let Some(c) = heap.pop() else { break };
        out.push(Grown {
            parent: c.parent,
            depth: c.depth,
            on_path: c.on_path,
        });
        let row = out.len() as u32;
        // Its next sibling, then its own first child.
        let left = c.reach * (1.0 - rate(a, c.rank));
        push(&mut heap, c.parent, c.rank + 1, c.depth, left);
        if c.depth < max_depth {
            push(&mut heap, row, 0, c.depth + 1, c.on_path);
        }
    }
    out
}

/// A tree's parent rows (0: the context, `j`: node `j − 1`) renumbered level by level,
/// each row's children together in their order, rows in level order: the order a
/// drafter that expands a depth at a time creates nodes in.
pub fn level_order(parents: &[u32]) -> Vec<u32> {
    let mut children = vec![Vec::new(); parents.len() + 1];
    for (node, &p) in parents.iter().enumerate() {
        if let Some(kids) = children.get_mut(p as usize) {
            kids.push(node + 1);
        }
    }
    let mut out = Vec::with_capacity(parents.len());
    let mut queue = std::collections::VecDeque::from([(0usize, 0u32)]);
    while let Some((row, new_row)) = queue.pop_front() {
        for &kid in &children[row] {
            out.push(new_row);
            queue.push_back((kid, out.len() as u32));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tree::expected_tree_accepted;
    use super::*;

    #[test]
    fn grows_the_likeliest_nodes_first() {
        let grown = grow_tree(&[0.5, 0.4], 8, 16);
        let parents: Vec<u32> = grown.iter().map(|g| g.parent).collect();
        assert_eq!(parents[..4], [0, 1, 0, 2], "{parents:?}");
        assert!((grown[2].on_path - 0.2).abs() < 1e-12);
        assert!(grown.windows(2).all(|w| w[0].on_path >= w[1].on_path));
        // Each prefix's expected accepted length is its on-path sum.
        for n in 1..=grown.len() {
            let sum: f64 = grown[..n].iter().map(|g| g.on_path).sum();
            let want = expected_tree_accepted(&parents[..n], &[vec![0.5, 0.4]]);
            assert!((sum - want).abs() < 1e-12, "{n}: {sum} vs {want}");
        }
        // A confident draft grows a chain.
        let chain: Vec<u32> = grow_tree(&[0.8, 0.4], 11, 16)
            .iter()
            .map(|g| g.parent)
            .collect();
        assert_eq!(chain, (0..11).collect::<Vec<u32>>());
    }

    #[test]
    fn no_tree_of_the_same_size_does_better() {
        // Every tree of 4 nodes: each parent row at most its index.
        let a = [0.6, 0.5, 0.3];
        let best: f64 = grow_tree(&a, 4, 16).iter().map(|g| g.on_path).sum();
        for p1 in 0..=1u32 {
            for p2 in 0..=2u32 {
                for p3 in 0..=3u32 {
                    let t = [0, p1, p2, p3];
                    let e = expected_tree_accepted(&t, &[a.to_vec()]);
                    assert!(e <= best + 1e-12, "{t:?}: {e} > {best}");
                }
            }
        }
    }

    #[test]
    fn depth_is_capped_and_level_order_keeps_the_tree() {
        let grown = grow_tree(&[0.9, 0.5], 10, 3);
        assert!(grown.iter().all(|g| g.depth <= 3));
        let parents: Vec<u32> = grown.iter().map(|g| g.parent).collect();
        let level = level_order(&parents);
        let a = [vec![0.9, 0.5]];
        let (e1, e2) = (
            expected_tree_accepted(&parents, &a),
            expected_tree_accepted(&level, &a),
        );
        assert!((e1 - e2).abs() < 1e-12);
        // Level order: depths never decrease.
        let tree = crate::DraftTree::new(&[0; 10], &level).unwrap();
        assert!(tree.depths().windows(2).all(|w| w[0] <= w[1]), "{level:?}");
        assert_eq!(level_order(&[0, 1, 0]), [0, 0, 1]);
    }
}
