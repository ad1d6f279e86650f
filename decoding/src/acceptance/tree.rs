//! Verifying a token tree: several candidate continuations in one block.
//!
//! Terms. A tree of `n` nodes is sent in topological order, each node a token and the
//! row of its parent. Rows are the target's positions: row 0 follows the committed
//! context, row `j` follows node `j − 1` (so node `i`'s parent row is at most `i`). A
//! chain of `k` tokens is the tree whose parents are `0, 1, …, k − 1`. The target gives
//! one distribution (or logits row) per row, `n + 1` in all; the children of a row are
//! its candidates, in node order.
//!
//! - [`verify_tree_greedy`]: from row 0, follow the child equal to the target's argmax;
//!   commit the path and the argmax of the row where it stops.
//! - [`verify_tree_stochastic`]: at each row, test the candidates in turn against the
//!   target's distribution and, after each rejection, against the residual that is
//!   left (SpecInfer's multi-step speculative sampling, Miao et al. 2024, arXiv
//!   2305.09781, for candidates drawn independently; recursive rejection sampling,
//!   Jeon et al. 2024, arXiv 2402.14160, for candidates drawn without replacement).
//!   The committed tokens are distributed exactly as the target's.
//!
//! Worked example, stochastic, one row, vocabulary {a, b, c}, two candidates drawn
//! independently from `q = [0.2, 0.7, 0.1]`, target `p = [0.6, 0.3, 0.1]`:
//!
//! ```text
//! candidate 1 = b: accept with p(b)/q(b) = 3/7; else the residual is
//!     norm(max(0, p − q)) = [1, 0, 0]
//! candidate 2 = b again: accept with r(b)/q(b) = 0; else the residual is
//!     norm(max(0, r − q)) = [1, 0, 0] → emit a
//! ```
//!
//! Drawn without replacement, candidate 2 comes from `q` without b, `[2/3, 0, 1/3]`, and
//! the residual after rejecting it is `norm(max(0, r − q₂))`.
//!
//! Random numbers are drawn in a fixed order (one uniform per tested candidate, one for
//! the token the target adds), so a session's seed fixes its tokens.

use super::stochastic::{TargetProbs, check_sampled, sample_residual};
use super::{check_rows, check_tokens};
use crate::sampling::argmax;
use crate::{DecodingError, Distribution, LogitRows, SessionRng, TokenId};

/// A draft tree, borrowed: `tokens[i]` is node `i`, `parents[i]` its parent row.
#[derive(Debug, Clone, Copy)]
pub struct DraftTree<'a> {
    /// The nodes' tokens, in topological order.
    pub tokens: &'a [TokenId],
    /// Each node's parent row (0: the context; `j`: node `j − 1`).
    pub parents: &'a [u32],
}

impl<'a> DraftTree<'a> {
    /// A tree, checked: as many parents as tokens, each an earlier row.
    pub fn new(tokens: &'a [TokenId], parents: &'a [u32]) -> Result<Self, DecodingError> {
        if tokens.len() != parents.len() {
            return Err(DecodingError::TreeShapeMismatch {
                tokens: tokens.len(),
                parents: parents.len(),
            });
        }
        if let Some((node, &parent)) = parents.iter().enumerate().find(|&(i, &p)| p as usize > i) {
            return Err(DecodingError::TreeParent {
                node,
                parent: parent as usize,
            });
        }
        Ok(Self { tokens, parents })
    }

    /// Nodes in the tree.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether it has no node.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Each row's children, in node order (`n + 1` lists).
    pub fn children(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.len() + 1];
        for (node, &parent) in self.parents.iter().enumerate() {
            out[parent as usize].push(node);
        }
        out
    }

    /// Each node's depth (a child of the context has depth 1).
    pub fn depths(&self) -> Vec<usize> {
        let mut depth = vec![0usize; self.len() + 1];
        for (node, &parent) in self.parents.iter().enumerate() {
            depth[node + 1] = depth[parent as usize] + 1;
        }
        depth[1..].to_vec()
    }
}

/// The outcome of verifying a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeVerdict {
    /// Nodes in the tree.
    pub nodes: usize,
    /// The accepted nodes, from the context down: each a child of the row before.
    pub path: Vec<usize>,
    /// The token the target appends after the path.
    pub next_token: TokenId,
}

impl TreeVerdict {
    /// Drafted tokens accepted (the path's length).
    pub fn accepted(&self) -> usize {
        self.path.len()
    }

    /// Tokens this round commits: the path and the target's token.
    pub fn committed(&self) -> usize {
        self.path.len() + 1
    }
}

/// Verifies a greedy tree against the target's logits, `tree.len() + 1` rows. Only the
/// rows on the accepted path are read.
pub fn verify_tree_greedy(
    tree: DraftTree<'_>,
    target: LogitRows<'_>,
) -> Result<TreeVerdict, DecodingError> {
    check_rows(tree.len(), target.rows())?;
    check_tokens(tree.tokens, target.vocab_size())?;
    let children = tree.children();
    let (mut row, mut path) = (0usize, Vec::new());
    loop {
        let best = argmax(target.row(row));
        match children[row].iter().find(|&&c| tree.tokens[c] == best) {
            Some(&c) => {
                path.push(c);
                row = c + 1;
            }
            None => {
                return Ok(TreeVerdict {
                    nodes: tree.len(),
                    path,
                    next_token: best,
                });
            }
        }
    }
}

/// How a row's candidates were drawn from its draft distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidates {
    /// Each independently (with replacement): siblings may repeat a token.
    Independent,
    /// Without replacement (e.g. Gumbel-top-k): each from what the earlier ones left.
    WithoutReplacement,
}

/// Verifies a tree drafted by sampling. `q[i]` is the draft distribution node `i` was
/// drawn from, its parent row's (siblings share it; the first sibling's is used).
///
/// Errors (all checked before any randomness is drawn): `q` and the tree differ in
/// length; `target` does not have `tree.len() + 1` rows; a token or a `q` is outside
/// the target's vocabulary; a node has probability 0 under its `q`; siblings drawn
/// without replacement repeat a token.
pub fn verify_tree_stochastic<T: TargetProbs + ?Sized>(
    tree: DraftTree<'_>,
    q: &[Distribution],
    target: &mut T,
    rng: &mut SessionRng,
    candidates: Candidates,
) -> Result<TreeVerdict, DecodingError> {
    let vocab = check_sampled(tree.tokens, q, target, "tree node")?;
    let children = tree.children();
    if candidates == Candidates::WithoutReplacement {
        check_distinct(tree, &children)?;
    }

    let (mut row, mut path) = (0usize, Vec::new());
    loop {
        let kids = &children[row];
        let p = target.row(row);
        let Some(&first) = kids.first() else {
            // A leaf's row: the target's token is a bonus drawn from p.
            let next_token = p.sample(rng);
            return Ok(TreeVerdict {
                nodes: tree.len(),
                path,
                next_token,
            });
        };
        let mut left = Row::new(p, &q[first], vocab);
        let accepted = kids.iter().find(|&&c| {
            let token = tree.tokens[c];
            if rng.uniform() < left.ratio(token) {
                return true;
            }
            left.reject(token, candidates);
            false
        });
        match accepted {
            Some(&c) => {
                path.push(c);
                row = c + 1;
            }
            None => {
                let next_token = left.sample(rng);
                return Ok(TreeVerdict {
                    nodes: tree.len(),
                    path,
                    next_token,
                });
            }
        }
    }
}

/// Siblings drawn without replacement are distinct.
fn check_distinct(tree: DraftTree<'_>, children: &[Vec<usize>]) -> Result<(), DecodingError> {
    for kids in children {
        for (j, &c) in kids.iter().enumerate() {
            if kids[..j].iter().any(|&e| tree.tokens[e] == tree.tokens[c]) {
                return Err(DecodingError::RepeatedCandidate {
                    node: c,
                    token: tree.tokens[c],
                });
            }
        }
    }
    Ok(())
}

/// One row's state while its candidates are tested: what the target still wants
/// (`p`, then the residual after each rejection) and what the next candidate is drawn
/// from (`q`, less the rejected tokens when drawn without replacement).
struct Row<'a> {
    p: &'a Distribution,
    q: &'a Distribution,
    vocab: usize,
    left: Left,
    /// Tokens drawn so far without replacement, and the mass of `q` they took.
    taken: Vec<TokenId>,
    taken_mass: f64,
}

/// What the target still wants at a row.
enum Left {
    /// `p`: nothing rejected yet.
    Target,
    /// `norm(max(0, p − q))` after one rejection, not yet computed: a chain's row never
    /// needs more, and samples it as the chain rule does.
    FirstResidual,
    /// The residual after further rejections, normalised.
    Residual(Vec<f64>),
}

impl<'a> Row<'a> {
    fn new(p: &'a Distribution, q: &'a Distribution, vocab: usize) -> Self {
        Self {
            p,
            q,
            vocab,
            left: Left::Target,
            taken: Vec::new(),
            taken_mass: 0.0,
        }
    }

    /// What the next candidate is drawn from, at `token`.
    fn proposal(&self, token: TokenId) -> f64 {
        if self.taken.contains(&token) {
            return 0.0;
        }
        f64::from(self.q.prob(token)) / (1.0 - self.taken_mass)
    }

    /// The acceptance probability of a candidate (may exceed 1: always accepted).
    fn ratio(&mut self, token: TokenId) -> f64 {
        let wanted = match &self.left {
            Left::Target => f64::from(self.p.prob(token)),
            Left::FirstResidual => self.residual()[token as usize],
            Left::Residual(r) => r[token as usize],
        };
        wanted / self.proposal(token)
    }

    /// The residual as a vector, computed now if it was left implicit.
    fn residual(&mut self) -> &[f64] {
        if let Left::FirstResidual = self.left {
            let mut r = vec![0.0; self.vocab];
            self.p.for_each(|t, v| r[t as usize] = f64::from(v));
            // Nothing was taken before the first rejection: the proposal was q.
            self.left = Left::Residual(self.subtract(r, &[], 0.0));
        }
        match &self.left {
            Left::Residual(r) => r,
            _ => unreachable!("computed above"),
        }
    }

    /// `norm(max(0, r − proposal))`; `r` itself if nothing is left (the proposal equalled
    /// it: a rejection of probability 0, reached only by rounding).
    /// The proposal is `q` less the tokens `taken` (their mass `taken_mass`).
    fn subtract(&self, r: Vec<f64>, taken: &[TokenId], taken_mass: f64) -> Vec<f64> {
        let mut out = r.clone();
        let scale = 1.0 / (1.0 - taken_mass);
        self.q.for_each(|t, v| {
            if !taken.contains(&t) {
                let x = &mut out[t as usize];
                *x = (*x - f64::from(v) * scale).max(0.0);
            }
        });
        let total: f64 = out.iter().sum();
        if total > 0.0 && total.is_finite() {
            out.iter_mut().for_each(|x| *x /= total);
            out
        } else {
            r
        }
    }

    /// After rejecting `token`: the residual loses the proposal, and the next proposal
    /// loses `token` when drawn without replacement.
    fn reject(&mut self, token: TokenId, candidates: Candidates) {
        if let Left::Target = self.left {
            self.left = Left::FirstResidual;
        } else {
            let r = self.residual().to_vec();
            self.left = Left::Residual(self.subtract(r, &self.taken, self.taken_mass));
        }
        if candidates == Candidates::WithoutReplacement {
            self.taken.push(token);
            self.taken_mass += f64::from(self.q.prob(token));
        }
    }

    /// The target's token when every candidate was rejected (or there was none).
    fn sample(&self, rng: &mut SessionRng) -> TokenId {
        match &self.left {
            Left::Target => self.p.sample(rng),
            Left::FirstResidual => sample_residual(self.p, self.q, rng),
            Left::Residual(r) => {
                // `r` is normalised: one uniform, the first token whose running sum
                // passes it (the last with mass, if rounding leaves it short).
                let goal = rng.uniform();
                let mut acc = 0.0;
                let mut last = 0;
                for (t, &w) in r.iter().enumerate().filter(|(_, w)| **w > 0.0) {
                    acc += w;
                    last = t;
                    if goal < acc {
                        break;
                    }
                }
                last as TokenId
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_checked_and_described() {
        let tokens = [5, 6, 7, 8];
        // 0 → {node 0, node 1}; node 0 → node 2; node 2 → node 3.
        let parents = [0, 0, 1, 3];
        let t = DraftTree::new(&tokens, &parents).unwrap();
        assert_eq!(
            t.children(),
            vec![vec![0, 1], vec![2], vec![], vec![3], vec![]]
        );
        assert_eq!(t.depths(), vec![1, 1, 2, 3]);
        assert_eq!(
            DraftTree::new(&tokens, &[0, 0, 3, 1]).unwrap_err(),
            DecodingError::TreeParent { node: 2, parent: 3 },
            "a parent after its child"
        );
        assert_eq!(
            DraftTree::new(&tokens, &[1, 0, 1, 2]).unwrap_err(),
            DecodingError::TreeParent { node: 0, parent: 1 },
            "a node its own parent"
        );
        assert!(matches!(
            DraftTree::new(&tokens, &[0, 0]),
            Err(DecodingError::TreeShapeMismatch { .. })
        ));
    }

    /// Logits rows whose argmax is `best[r]` (vocabulary 10).
    fn rows_with_argmax(best: &[u32]) -> Vec<f32> {
        best.iter()
            .flat_map(|&b| (0..10).map(move |t| if t == b { 2.0 } else { 0.0 }))
            .collect()
    }

    #[test]
    fn greedy_follows_the_argmax_child_and_reads_only_its_path() {
        let tokens = [5, 6, 7, 8];
        let parents = [0, 0, 1, 3];
        let tree = DraftTree::new(&tokens, &parents).unwrap();
        // Row 0 wants 6 (node 1), row 2 (after node 1) wants 9: stop there.
        let logits = rows_with_argmax(&[6, 0, 9, 0, 0]);
        let v = verify_tree_greedy(tree, LogitRows::new(&logits, 10).unwrap()).unwrap();
        assert_eq!((v.path.clone(), v.next_token), (vec![1], 9));
        // Row 0 wants 5, row 1 wants 7, row 3 wants 8, row 4 (a leaf) gives the bonus 2.
        let logits = rows_with_argmax(&[5, 7, 0, 8, 2]);
        let v = verify_tree_greedy(tree, LogitRows::new(&logits, 10).unwrap()).unwrap();
        assert_eq!(
            (v.path.clone(), v.next_token, v.committed()),
            (vec![0, 2, 3], 2, 4)
        );
    }

    #[test]
    fn stochastic_inputs_are_checked_before_any_draw() {
        let tokens = [1, 1];
        let parents = [0, 0];
        let tree = DraftTree::new(&tokens, &parents).unwrap();
        let q = Distribution::dense(vec![0.5, 0.5, 0.0]).unwrap();
        let p = Distribution::dense(vec![0.2, 0.3, 0.5]).unwrap();
        let mut rows = vec![p.clone(), p.clone(), p];
        let mut rng = SessionRng::new(1);
        let before = rng.clone();
        let e = verify_tree_stochastic(
            tree,
            &[q.clone(), q.clone()],
            rows.as_mut_slice(),
            &mut rng,
            Candidates::WithoutReplacement,
        )
        .unwrap_err();
        assert_eq!(e, DecodingError::RepeatedCandidate { node: 1, token: 1 });
        assert_eq!(rng.next_u64(), before.clone().next_u64(), "no draw");
        let zero = Distribution::dense(vec![1.0, 0.0, 0.0]).unwrap();
        let e = verify_tree_stochastic(
            tree,
            &[q, zero],
            rows.as_mut_slice(),
            &mut rng,
            Candidates::Independent,
        )
        .unwrap_err();
        assert_eq!(
            e,
            DecodingError::ZeroDraftProbability {
                position: 1,
                token: 1
            }
        );
    }
}
