//! Token trees are verified losslessly.
//!
//! The target here is a Markov chain whose table depends on the depth: the first token
//! from `P0`, the next after token `a` from `P1[a]`, the third after `b` from `P2[b]`.
//! Plain target decoding would emit `(a, b, c)` with probability `P0(a)·P1[a](b)·P2[b](c)`.
//! Each trial drafts a tree of branching 3 then 2 (3 candidates, each with 2 children)
//! from a draft chain of its own, verifies it, and completes what the round committed
//! to three tokens from the target (as the next rounds would): the triples must follow
//! the target's joint distribution (Pearson's chi-square over 216 cells, significance
//! 1e-3, 10⁵ seeded trials). A negative control — candidates drawn without replacement
//! but tested with the rule for independent ones — must fail the same test.

mod common;

use common::{chi2_p_value, random_dense};
use tandem_decoding::{
    Candidates, Distribution, DraftTree, LogitRows, SessionRng, TokenId, verify_greedy,
    verify_stochastic, verify_tree_greedy, verify_tree_stochastic,
};

const TRIALS: usize = 100_000;
const SIGNIFICANCE: f64 = 1e-3;
const VOCAB: usize = 6;
/// Candidates at depth 1, and children of each at depth 2.
const BRANCHING: [usize; 2] = [3, 2];

/// A depth-dependent Markov chain: `first`, then `after[d][token]` for depth `d + 1`.
struct Chain {
    first: Distribution,
    after: [Vec<Distribution>; 2],
}

impl Chain {
    fn random(rng: &mut SessionRng, zeros: usize) -> Chain {
        let first = random_dense(rng, VOCAB, zeros);
        let mut table = || {
            (0..VOCAB)
                .map(|_| random_dense(rng, VOCAB, zeros))
                .collect()
        };
        Chain {
            first,
            after: [table(), table()],
        }
    }

    /// The distribution after `token` at `depth` (0: the context).
    fn at(&self, depth: usize, token: Option<TokenId>) -> &Distribution {
        match token {
            None => &self.first,
            Some(t) => &self.after[depth - 1][t as usize],
        }
    }

    /// Probability of the triple `(a, b, c)`.
    fn joint(&self, a: usize, b: usize, c: usize) -> f64 {
        f64::from(self.first.prob(a as TokenId))
            * f64::from(self.after[0][a].prob(b as TokenId))
            * f64::from(self.after[1][b].prob(c as TokenId))
    }
}

/// `n` tokens from `q`, independently or without replacement.
fn draw(q: &Distribution, n: usize, how: Candidates, rng: &mut SessionRng) -> Vec<TokenId> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let t = match how {
            Candidates::Independent => q.sample(rng),
            Candidates::WithoutReplacement => {
                let w: Vec<(TokenId, f32)> = (0..VOCAB as TokenId)
                    .filter(|t| !out.contains(t))
                    .map(|t| (t, q.prob(t)))
                    .filter(|&(_, p)| p > 0.0)
                    .collect();
                Distribution::sparse(w, VOCAB).unwrap().sample(rng)
            }
        };
        out.push(t);
    }
    out
}

/// A drafted tree: tokens, parent rows, each node's `q`, each row's target distribution.
struct Drafted {
    tokens: Vec<TokenId>,
    parents: Vec<u32>,
    q: Vec<Distribution>,
    rows: Vec<Distribution>,
}

fn draft_tree(draft: &Chain, target: &Chain, how: Candidates, rng: &mut SessionRng) -> Drafted {
    let mut d = Drafted {
        tokens: Vec::new(),
        parents: Vec::new(),
        q: Vec::new(),
        rows: vec![target.first.clone()],
    };
    // Rows to expand at the current depth: (row, its token).
    let mut frontier: Vec<(u32, Option<TokenId>)> = vec![(0, None)];
    for (depth, &width) in BRANCHING.iter().enumerate() {
        let mut next = Vec::new();
        for (row, token) in frontier {
            let q = draft.at(depth, token);
            for t in draw(q, width, how, rng) {
                d.tokens.push(t);
                d.parents.push(row);
                d.q.push(q.clone());
                d.rows.push(target.at(depth + 1, Some(t)).clone());
                next.push((d.tokens.len() as u32, Some(t)));
            }
        }
        frontier = next;
    }
    d
}

/// Counts of the first three tokens over `TRIALS` rounds, completed from the target.
fn triples(
    draft: &Chain,
    target: &Chain,
    drawn: Candidates,
    rule: Candidates,
    seed: u64,
) -> Vec<u64> {
    let mut draft_rng = SessionRng::for_stream(seed, 1);
    let mut verify_rng = SessionRng::for_stream(seed, 2);
    let mut rest_rng = SessionRng::for_stream(seed, 3);
    let mut counts = vec![0u64; VOCAB * VOCAB * VOCAB];
    for _ in 0..TRIALS {
        let mut d = draft_tree(draft, target, drawn, &mut draft_rng);
        let tree = DraftTree::new(&d.tokens, &d.parents).unwrap();
        let v = verify_tree_stochastic(tree, &d.q, d.rows.as_mut_slice(), &mut verify_rng, rule)
            .unwrap();
        let mut seq: Vec<TokenId> = v.path.iter().map(|&n| d.tokens[n]).collect();
        seq.push(v.next_token);
        while seq.len() < 3 {
            let last = *seq.last().unwrap();
            seq.push(target.at(seq.len(), Some(last)).sample(&mut rest_rng));
        }
        counts[(seq[0] as usize * VOCAB + seq[1] as usize) * VOCAB + seq[2] as usize] += 1;
    }
    counts
}

fn expected(target: &Chain) -> Vec<f64> {
    let mut e = Vec::with_capacity(VOCAB.pow(3));
    for a in 0..VOCAB {
        for b in 0..VOCAB {
            for c in 0..VOCAB {
                e.push(target.joint(a, b, c));
            }
        }
    }
    e
}

fn pairs(seed: u64) -> (Chain, Chain) {
    let mut rng = SessionRng::new(seed);
    let target = Chain::random(&mut rng, 1);
    let draft = Chain::random(&mut rng, 0);
    (draft, target)
}

#[test]
fn independent_candidates_commit_the_targets_distribution() {
    let (draft, target) = pairs(1);
    let counts = triples(
        &draft,
        &target,
        Candidates::Independent,
        Candidates::Independent,
        10,
    );
    let pv = chi2_p_value(&counts, &expected(&target));
    assert!(pv > SIGNIFICANCE, "p-value {pv:.2e}");
}

#[test]
fn candidates_without_replacement_commit_the_targets_distribution() {
    let (draft, target) = pairs(2);
    let how = Candidates::WithoutReplacement;
    let counts = triples(&draft, &target, how, how, 20);
    let pv = chi2_p_value(&counts, &expected(&target));
    assert!(pv > SIGNIFICANCE, "p-value {pv:.2e}");
}

#[test]
fn a_draft_far_from_the_target_still_commits_its_distribution() {
    // The draft puts most of its mass on the one token the target never emits.
    let (_, target) = pairs(3);
    let peaked = Distribution::dense(vec![0.02, 0.02, 0.02, 0.02, 0.02, 0.9]).unwrap();
    let draft = Chain {
        first: peaked.clone(),
        after: [vec![peaked.clone(); VOCAB], vec![peaked; VOCAB]],
    };
    for (how, seed) in [
        (Candidates::Independent, 30),
        (Candidates::WithoutReplacement, 31),
    ] {
        let counts = triples(&draft, &target, how, how, seed);
        let pv = chi2_p_value(&counts, &expected(&target));
        assert!(pv > SIGNIFICANCE, "{how:?}: p-value {pv:.2e}");
    }
}

/// The classic mistake: siblings drawn without replacement (distinct, as top-k or
/// Gumbel-top-k gives them) but tested as if drawn independently from `q`. The test
/// above must catch it, so that its passing means something.
#[test]
fn negative_control_without_replacement_tested_as_independent() {
    let (_, target) = pairs(4);
    let peaked = Distribution::dense(vec![0.6, 0.2, 0.05, 0.05, 0.05, 0.05]).unwrap();
    let draft = Chain {
        first: peaked.clone(),
        after: [vec![peaked.clone(); VOCAB], vec![peaked; VOCAB]],
    };
    let counts = triples(
        &draft,
        &target,
        Candidates::WithoutReplacement,
        Candidates::Independent,
        40,
    );
    let pv = chi2_p_value(&counts, &expected(&target));
    assert!(pv < 1e-9, "the broken rule passed with p-value {pv:.2e}");
}

/// A chain is the tree whose parents are 0, 1, …: same seed, same verdicts as the
/// chain rule, draw for draw.
#[test]
fn a_chain_verified_as_a_tree_is_the_chain_rule() {
    let mut rng = SessionRng::new(5);
    for k in [1usize, 3, 6] {
        let p: Vec<Distribution> = (0..=k).map(|_| random_dense(&mut rng, VOCAB, 1)).collect();
        let q: Vec<Distribution> = (0..k).map(|_| random_dense(&mut rng, VOCAB, 0)).collect();
        let parents: Vec<u32> = (0..k as u32).collect();
        let (mut a, mut b) = (
            SessionRng::new(50 + k as u64),
            SessionRng::new(50 + k as u64),
        );
        let mut draft_rng = SessionRng::new(60);
        for _ in 0..20_000 {
            let draft: Vec<TokenId> = q.iter().map(|d| d.sample(&mut draft_rng)).collect();
            let chain = verify_stochastic(&draft, &q, p.clone().as_mut_slice(), &mut a).unwrap();
            let tree = DraftTree::new(&draft, &parents).unwrap();
            let t = verify_tree_stochastic(
                tree,
                &q,
                p.clone().as_mut_slice(),
                &mut b,
                Candidates::Independent,
            )
            .unwrap();
            assert_eq!(t.path, (0..chain.accepted).collect::<Vec<_>>());
            assert_eq!(t.next_token, chain.next_token);
        }
    }
}

/// Greedy: the tree's path is the root-to-leaf chain the chain rule accepts furthest
/// along (sibling tokens distinct), and the tokens it commits are that chain's.
#[test]
fn greedy_tree_equals_its_best_chain() {
    let mut rng = SessionRng::new(7);
    for _ in 0..2_000 {
        // A random tree of up to 12 nodes whose siblings are distinct.
        let n = 1 + (rng.next_u64() % 12) as usize;
        let (mut tokens, mut parents) = (Vec::new(), Vec::new());
        for i in 0..n {
            let parent = (rng.next_u64() % (i as u64 + 1)) as u32;
            let taken: Vec<TokenId> = (0..i)
                .filter(|&j| parents[j] == parent)
                .map(|j| tokens[j])
                .collect();
            let free: Vec<TokenId> = (0..VOCAB as TokenId)
                .filter(|t| !taken.contains(t))
                .collect();
            if free.is_empty() {
                break;
            }
            tokens.push(free[(rng.next_u64() % free.len() as u64) as usize]);
            parents.push(parent);
        }
        let rows = tokens.len() + 1;
        // Peaked logits, so the argmax is often a drafted token.
        let logits: Vec<f32> = (0..rows * VOCAB)
            .map(|_| (rng.uniform() * 3.0).powi(3) as f32)
            .collect();
        let tree = DraftTree::new(&tokens, &parents).unwrap();
        let v = verify_tree_greedy(tree, LogitRows::new(&logits, VOCAB).unwrap()).unwrap();
        // Every leaf's chain, verified on its own rows.
        let children = tree.children();
        let mut best: Option<(usize, TokenId)> = None;
        for leaf in (0..tokens.len()).filter(|&i| children[i + 1].is_empty()) {
            let mut path = vec![leaf];
            while parents[*path.last().unwrap()] > 0 {
                path.push(parents[*path.last().unwrap()] as usize - 1);
            }
            path.reverse();
            let chain: Vec<TokenId> = path.iter().map(|&i| tokens[i]).collect();
            let mut chain_rows = logits[..VOCAB].to_vec();
            for &i in &path {
                chain_rows.extend_from_slice(&logits[(i + 1) * VOCAB..(i + 2) * VOCAB]);
            }
            let c = verify_greedy(&chain, LogitRows::new(&chain_rows, VOCAB).unwrap()).unwrap();
            if best.is_none_or(|(a, _)| c.accepted > a) {
                best = Some((c.accepted, c.next_token));
            }
            if c.accepted == v.accepted() && path[..c.accepted] == v.path[..] {
                assert_eq!(c.next_token, v.next_token, "{tokens:?} {parents:?}");
            }
        }
        if let Some((accepted, _)) = best {
            assert_eq!(v.accepted(), accepted, "{tokens:?} {parents:?}");
        }
    }
}

/// The analytical expected accepted length of a tree
/// ([`tandem_decoding::analytic::tree`]) is what the rule gives: a context-independent
/// target and draft, candidates drawn independently, the Monte-Carlo mean of accepted
/// nodes within four standard errors of the formula.
#[test]
fn expected_accepted_length_matches_the_analytical_model() {
    use tandem_decoding::analytic::tree::{acceptance_by_rank, expected_tree_accepted};
    let mut rng = SessionRng::new(8);
    let p = random_dense(&mut rng, VOCAB, 1);
    let q = random_dense(&mut rng, VOCAB, 0);
    let by_rank = acceptance_by_rank(&p, &q, 4);
    for parents in [
        vec![0u32, 1, 2, 3],
        vec![0, 0, 0, 1, 1, 2, 4],
        vec![0, 0, 0, 0, 1, 1, 2, 5, 5, 8],
    ] {
        let n = parents.len();
        let qs = vec![q.clone(); n];
        let mut rows = vec![p.clone(); n + 1];
        let mut draft_rng = SessionRng::for_stream(80 + n as u64, 1);
        let mut verify_rng = SessionRng::for_stream(80 + n as u64, 2);
        let trials = TRIALS / 2;
        let (mut sum, mut sum_sq) = (0.0, 0.0);
        for _ in 0..trials {
            let tokens: Vec<TokenId> = (0..n).map(|_| q.sample(&mut draft_rng)).collect();
            let tree = DraftTree::new(&tokens, &parents).unwrap();
            let v = verify_tree_stochastic(
                tree,
                &qs,
                rows.as_mut_slice(),
                &mut verify_rng,
                Candidates::Independent,
            )
            .unwrap();
            let a = v.accepted() as f64;
            sum += a;
            sum_sq += a * a;
        }
        let mean = sum / trials as f64;
        let se = ((sum_sq / trials as f64 - mean * mean) / trials as f64).sqrt();
        let formula = expected_tree_accepted(&parents, std::slice::from_ref(&by_rank));
        assert!(
            (mean - formula).abs() < 4.0 * se,
            "{parents:?}: Monte-Carlo {mean:.4} ± {se:.4}, formula {formula:.4}"
        );
    }
}
