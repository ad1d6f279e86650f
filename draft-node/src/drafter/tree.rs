//! Drafting a token tree, a depth at a time.
//!
//! Each depth expands some rows of the tree so far (row 0 is the cached sequence, row
//! `j` node `j − 1`): the nodes to expand run, with their ancestors, as one tree forward
//! behind the cached sequence (each sees the sequence and its own ancestors, at the
//! position of its depth), their logits are read and the cache is cut back to the
//! sequence. The first depth reads the catch-up forward's logits, so a tree `D` deep
//! costs `D − 1` tree forwards, however wide.
//!
//! - A shape (static, or grown by the sizer): each node of the newest level that has
//!   `w` children in the shape is expanded into the `w` most likely tokens (greedy) or
//!   `w` independent draws from the draft's `q` (sampling, as the verifier's rule for
//!   independent candidates expects). Nodes are made in level order.
//! - Dynamic (EAGLE-2): the `width` nodes of the newest level with the highest
//!   cumulative probability are expanded, each into its `width` most likely tokens
//!   (`dynamic:N` is [`tandem_decoding::tree_shape::EXPAND_WIDTH`] wide); the `nodes`
//!   nodes with the highest cumulative probability are sent (a child is never likelier
//!   than its parent, so they form a tree).

use tandem_decoding::Distribution;
use tandem_decoding::analytic::best_tree::level_order;
use tandem_models::{BatchEntry, LanguageModel, Logits, Positions, SessionCache};

use super::{Block, Drafter, compute};
use crate::DraftError;
use crate::propose::TreePlan;

/// A drafted node.
struct Node {
    token: u32,
    /// Parent row (0: the sequence; `j`: node `j − 1`).
    parent: u32,
    /// Cumulative log-probability under the draft, from the sequence down.
    logp: f32,
    /// The distribution it was drawn from (sampling).
    q: Option<Distribution>,
}

impl<M: LanguageModel> Drafter<'_, M> {
    /// Drafts the tree `plan` after `seq`; the cache ends holding `seq`.
    pub(super) fn draft_tree(&mut self, seq: &[u32], plan: TreePlan) -> Result<Block, DraftError> {
        let sampling = !self.sampling.is_greedy();
        if sampling && matches!(plan, TreePlan::Dynamic { .. }) {
            return Err(DraftError::Usage(
                "a dynamic tree picks candidates by probability, which the lossless rule for \
                 sampling does not allow: use a static shape (e.g. --tree 3,2,1) or greedy \
                 decoding"
                    .into(),
            ));
        }
        // A shape in level order is the order nodes are made in; its children per row.
        let shape = match &plan {
            TreePlan::Shape(parents) => level_order(parents),
            TreePlan::Dynamic { .. } => Vec::new(),
        };
        let mut kids = vec![0usize; shape.len() + 1];
        for &p in &shape {
            kids[p as usize] += 1;
        }
        let root = self.catch_up(seq)?;
        let mut nodes: Vec<Node> = Vec::new();
        let mut frontier: Vec<u32> = vec![0];
        for depth in 0..plan.depth() {
            if let TreePlan::Shape(_) = plan {
                frontier.retain(|&r| kids[r as usize] > 0);
            }
            if frontier.is_empty() {
                break;
            }
            let rows = match depth {
                0 => root.clone(),
                _ => self.tree_logits(&nodes, &frontier)?,
            };
            let level = nodes.len();
            for (i, &row) in frontier.iter().enumerate() {
                let width = match plan {
                    TreePlan::Shape(_) => kids[row as usize],
                    TreePlan::Dynamic { width, .. } => width,
                };
                let base = row.checked_sub(1).map_or(0.0, |n| nodes[n as usize].logp);
                self.children(rows.row(i), width, row, base, &mut nodes);
            }
            frontier = (level..nodes.len()).map(|n| n as u32 + 1).collect();
            if let TreePlan::Dynamic { width, .. } = plan {
                frontier = best(&nodes, frontier, width);
            }
        }
        if let TreePlan::Dynamic { nodes: budget, .. } = plan {
            let all = (1..=nodes.len() as u32).collect();
            let rows = best(&nodes, all, budget);
            nodes = keep(nodes, rows);
        }
        let mut block = Block::default();
        for n in nodes {
            block.tokens.push(n.token);
            block.parents.push(n.parent);
            block.q.extend(n.q);
        }
        Ok(block)
    }

    /// Adds `width` children of `row` (whose logits are `logits` and cumulative
    /// log-probability `base`).
    fn children(&mut self, logits: &[f32], width: usize, row: u32, base: f32, out: &mut Vec<Node>) {
        if self.sampling.is_greedy() {
            let lse = log_sum_exp(logits);
            for token in top_tokens(logits, width) {
                out.push(Node {
                    token,
                    parent: row,
                    logp: base + logits[token as usize] - lse,
                    q: None,
                });
            }
        } else {
            let q = self.sampling.distribution(logits);
            for _ in 0..width {
                let token = q.sample(&mut self.rng);
                out.push(Node {
                    token,
                    parent: row,
                    logp: base + q.prob(token).ln(),
                    q: Some(q.clone()),
                });
            }
        }
    }

    /// The logits of `rows` (node rows), from one tree forward of them and their
    /// ancestors behind the cached sequence; the cache is cut back after.
    fn tree_logits(&mut self, nodes: &[Node], rows: &[u32]) -> Result<Logits, DraftError> {
        // The nodes to run: the rows and every ancestor, in node order.
        let mut run = vec![false; nodes.len()];
        for &row in rows {
            let mut r = row as usize;
            while r > 0 && !run[r - 1] {
                run[r - 1] = true;
                r = nodes[r - 1].parent as usize;
            }
        }
        let mut new_row = vec![0u32; nodes.len() + 1];
        let (mut tokens, mut parents) = (Vec::new(), Vec::new());
        for (i, n) in nodes.iter().enumerate().filter(|(i, _)| run[*i]) {
            tokens.push(n.token);
            parents.push(new_row[n.parent as usize]);
            new_row[i + 1] = tokens.len() as u32;
        }
        let context = self.cache.len();
        let mut entries = [BatchEntry {
            cache: &mut self.cache,
            tokens: &tokens,
            positions: Positions::All,
            tree: Some(&parents),
        }];
        let model = self.model;
        let out = compute(|| model.forward_batch(&mut entries))?
            .pop()
            .expect("one entry in, one out");
        self.cache.truncate(context)?;
        let vocab = out.vocab_size();
        let mut data = Vec::with_capacity(rows.len() * vocab);
        for &row in rows {
            data.extend_from_slice(out.row(new_row[row as usize] as usize - 1));
        }
        Ok(Logits::new(data, vocab))
    }
}

/// The rows of the `n` nodes among `rows` with the highest cumulative probability (ties:
/// the earlier node), in node order.
fn best(nodes: &[Node], mut rows: Vec<u32>, n: usize) -> Vec<u32> {
    let logp = |r: u32| nodes[r as usize - 1].logp;
    rows.sort_by(|&a, &b| logp(b).total_cmp(&logp(a)).then(a.cmp(&b)));
    rows.truncate(n);
    rows.sort_unstable();
    rows
}

/// The nodes at `rows` (increasing, closed under ancestors), renumbered.
fn keep(nodes: Vec<Node>, rows: Vec<u32>) -> Vec<Node> {
    let mut new_row = vec![0u32; nodes.len() + 1];
    let mut out = Vec::with_capacity(rows.len());
    let mut wanted = rows.into_iter().peekable();
    for (i, mut n) in nodes.into_iter().enumerate() {
        if wanted.next_if_eq(&(i as u32 + 1)).is_some() {
            n.parent = new_row[n.parent as usize];
            out.push(n);
            new_row[i + 1] = out.len() as u32;
        }
    }
    out
}

/// The `n` tokens with the highest logits, best first (ties: the lower id).
fn top_tokens(logits: &[f32], n: usize) -> Vec<u32> {
    let mut top: Vec<(f32, u32)> = Vec::with_capacity(n + 1);
    for (t, &l) in logits.iter().enumerate() {
        if top.len() == n && top.last().is_some_and(|&(worst, _)| l <= worst) {
            continue;
        }
        let at = top.partition_point(|&(v, _)| v >= l);
        top.insert(at, (l, t as u32));
        top.truncate(n);
    }
    top.into_iter().map(|(_, t)| t).collect()
}

fn log_sum_exp(xs: &[f32]) -> f32 {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + xs.iter().map(|&x| (x - max).exp()).sum::<f32>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(parent: u32, logp: f32) -> Node {
        Node {
            token: 0,
            parent,
            logp,
            q: None,
        }
    }

    #[test]
    fn top_tokens_are_the_largest_best_first() {
        assert_eq!(top_tokens(&[0.1, 3.0, -1.0, 3.0, 2.0], 3), [1, 3, 4]);
        assert_eq!(top_tokens(&[0.5, 0.2], 4), [0, 1]);
    }

    #[test]
    fn the_best_nodes_stay_a_tree() {
        // 0 → {1 (−0.1), 2 (−1)}; 1 → {3 (−0.3), 4 (−2)}; 3 → {5 (−0.3, ties its parent)}
        let nodes = vec![
            node(0, -0.1),
            node(0, -1.0),
            node(1, -0.3),
            node(1, -2.0),
            node(3, -0.3),
        ];
        let rows = best(&nodes, (1..=5).collect(), 3);
        assert_eq!(rows, [1, 3, 5]);
        let kept = keep(nodes, rows);
        let parents: Vec<u32> = kept.iter().map(|n| n.parent).collect();
        assert_eq!(parents, [0, 1, 2]);
    }
}
