//! One session as the verifier holds it: committed tokens, KV cache, sampling, random
//! stream, and (for cloud-only generation) where its tokens go.
//!
//! Invariant between passes: the cache holds every committed token but the newest,
//! `cache.len() == committed.len() - 1`. So each pass feeds the newest committed token
//! first, then the block:
//!
//! ```text
//! committed: [p0 p1 p2 | t3]          cache: p0 p1 p2
//! draft block: d4 d5 d6               input: t3 d4 d5 d6   → 4 rows of logits
//! row i predicts position 4 + i: row 0 checks d4, row 1 d5, row 2 d6, row 3 is the bonus
//! verdict: accepted 1, next x  →  committed: p0 p1 p2 t3 d4 x,  cache truncated to 5
//! ```

use tandem_decoding::acceptance::FromLogits;
use tandem_decoding::rng::stream;
use tandem_decoding::{
    Candidates, DraftTree, SamplingParams, SessionRng, verify_greedy, verify_stochastic,
    verify_tree_greedy, verify_tree_stochastic,
};
use tandem_models::{Logits, SessionCache};
use tandem_protocol::WireError;
use tandem_protocol::limits::{DraftBlock, OpenRequest};
use tokio::sync::mpsc;

use super::GenEvent;
use super::scheduler::{Base, check_extends};

/// Cloud-only generation state.
pub(super) struct Generation {
    pub events: mpsc::UnboundedSender<GenEvent>,
    pub remaining: u32,
    pub ignore_eos: bool,
}

pub(super) struct Session<C> {
    pub id: u64,
    pub cache: C,
    pub committed: Vec<u32>,
    pub sampling: SamplingParams,
    pub stochastic: bool,
    pub rng: SessionRng,
    /// Longest committed length this session may reach.
    pub max_len: usize,
    pub generation: Option<Generation>,
    /// When the session last had work done: idle eviction looks at it.
    pub last_active: std::time::Instant,
    /// Its life in the logs: every block's span is a child of it.
    pub span: tracing::Span,
}

impl<C: SessionCache> Session<C> {
    pub fn new(id: u64, cache: C, req: &OpenRequest, max_len: usize) -> Self {
        let stream_id = if req.generate {
            stream::GENERATE
        } else {
            stream::VERIFY
        };
        Self {
            id,
            cache,
            committed: req.prompt.clone(),
            sampling: req.sampling,
            stochastic: req.stochastic,
            rng: SessionRng::for_stream(req.seed, stream_id),
            max_len,
            generation: None,
            last_active: std::time::Instant::now(),
            span: tracing::info_span!("session", id, prompt = req.prompt.len()),
        }
    }

    /// What the next block must extend.
    pub fn base(&self) -> Base {
        Base {
            len: self.committed.len(),
            newest: self.newest(),
        }
    }

    /// The newest committed token (the next pass's first input).
    pub fn newest(&self) -> u32 {
        *self.committed.last().expect("never empty")
    }

    /// The target's token from one row of logits, by the session's sampling.
    pub fn pick(&mut self, row: &[f32]) -> u32 {
        if self.sampling.is_greedy() {
            tandem_decoding::sampling::argmax(row)
        } else {
            self.sampling.distribution(row).sample(&mut self.rng)
        }
    }

    /// Appends a token the target produced from a pass whose input ended at the newest
    /// committed token.
    pub fn push(&mut self, token: u32) {
        self.committed.push(token);
        self.last_active = std::time::Instant::now();
    }

    /// Checks that `block` extends exactly what this session has committed.
    pub fn check_block(&self, block: &DraftBlock) -> Result<(), WireError> {
        if self.generation.is_some() {
            return Err(WireError::precondition(
                "this session generates alone (Open.generate); it takes no drafts",
            ));
        }
        let len = self.committed.len();
        let base = Base {
            len: block.base_len as usize,
            newest: block.anchor,
        };
        check_extends(base, self.base())?;
        let after = len + block.tokens.len() + 1;
        if after > self.max_len {
            return Err(WireError::invalid(format!(
                "a block of {} tokens would grow the sequence to {after} tokens, past this session's limit of {} (context or max_new_tokens + max_draft_tokens)",
                block.tokens.len(),
                self.max_len
            )));
        }
        Ok(())
    }

    /// The pass input for a block: the newest committed token, then the block.
    pub fn verify_input(&self, block: &DraftBlock) -> Vec<u32> {
        let mut v = Vec::with_capacity(block.tokens.len() + 1);
        v.push(self.newest());
        v.extend_from_slice(&block.tokens);
        v
    }

    /// Applies the acceptance rule to the block's `k + 1` rows, commits, and rolls the
    /// cache back to the committed length (a tree: keeps the accepted path's rows).
    pub fn accept(&mut self, block: &DraftBlock, rows: &Logits) -> Result<Judged, WireError> {
        let start = self.committed.len() - 1;
        let verdict = match judge(self.stochastic, self.sampling, block, rows, &mut self.rng) {
            Ok(v) => v,
            Err(e) => {
                // Undo the pass: the cache goes back to the committed tokens.
                self.cache
                    .truncate(start)
                    .map_err(|e| WireError::internal(e.to_string()))?;
                return Err(WireError::invalid(e.to_string()));
            }
        };
        let kept = if block.parents.is_empty() {
            self.cache.truncate(start + 1 + verdict.path.len())
        } else {
            // The pass ran the newest committed token, then the nodes: keep it and the
            // path's rows.
            let rows: Vec<usize> = std::iter::once(0)
                .chain(verdict.path.iter().map(|&n| n + 1))
                .collect();
            self.cache.keep_rows(start, &rows)
        };
        kept.map_err(|e| WireError::internal(e.to_string()))?;
        self.committed
            .extend(verdict.path.iter().map(|&n| block.tokens[n]));
        self.push(verdict.next_token);
        Ok(verdict)
    }
}

/// The pass's parent rows for a tree block: the newest committed token first (row 0
/// of the pass), then the block's nodes, each parent one row further on. `None`: a
/// chain.
pub fn pass_tree(block: &DraftBlock) -> Option<Vec<u32>> {
    (!block.parents.is_empty()).then(|| {
        std::iter::once(0)
            .chain(block.parents.iter().map(|&p| p + 1))
            .collect()
    })
}

/// A block's verdict, chain or tree: the accepted nodes (a chain's first `accepted`
/// tokens) and the target's token after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// Tokens (nodes) in the block.
    pub drafted: usize,
    /// The accepted nodes, from the committed sequence down.
    pub path: Vec<usize>,
    /// The target's token after them.
    pub next_token: u32,
}

impl Judged {
    /// Accepted tokens.
    pub fn accepted(&self) -> usize {
        self.path.len()
    }

    /// The path as the wire names it: a tree's nodes, empty for a chain.
    pub fn wire_path(&self, block: &DraftBlock) -> Vec<u32> {
        if block.parents.is_empty() {
            Vec::new()
        } else {
            self.path.iter().map(|&n| n as u32).collect()
        }
    }
}

/// The acceptance rule on a block's `k + 1` rows: stochastic (drawing from `rng`) or
/// greedy, for a chain or a tree (its candidates drawn independently). Commits nothing.
pub fn judge(
    stochastic: bool,
    sampling: SamplingParams,
    block: &DraftBlock,
    rows: &Logits,
    rng: &mut SessionRng,
) -> Result<Judged, tandem_decoding::DecodingError> {
    let drafted = block.tokens.len();
    if !block.parents.is_empty() {
        let tree = DraftTree::new(&block.tokens, &block.parents)?;
        let v = if stochastic {
            let mut target = FromLogits::new(rows.rows(), sampling);
            verify_tree_stochastic(tree, &block.q, &mut target, rng, Candidates::Independent)?
        } else {
            verify_tree_greedy(tree, rows.rows())?
        };
        return Ok(Judged {
            drafted,
            path: v.path,
            next_token: v.next_token,
        });
    }
    let v = if stochastic {
        let mut target = FromLogits::new(rows.rows(), sampling);
        verify_stochastic(&block.tokens, &block.q, &mut target, rng)?
    } else {
        verify_greedy(&block.tokens, rows.rows())?
    };
    Ok(Judged {
        drafted,
        path: (0..v.accepted).collect(),
        next_token: v.next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_decoding::SamplingParams;

    /// A cache that only counts tokens: all `Session` needs from one.
    struct Counting(usize);

    impl SessionCache for Counting {
        fn len(&self) -> usize {
            self.0
        }
        fn truncate(&mut self, len: usize) -> tandem_models::Result<()> {
            self.0 = self.0.min(len);
            Ok(())
        }
        fn bytes(&self) -> usize {
            0
        }
        fn keep_rows(&mut self, start: usize, keep: &[usize]) -> tandem_models::Result<()> {
            self.0 = start + keep.len();
            Ok(())
        }
    }

    const VOCAB: usize = 8;

    /// A session with committed [1, 2, 3] whose cache holds the first two.
    fn session() -> Session<Counting> {
        let req = OpenRequest {
            prompt: vec![1, 2],
            sampling: SamplingParams::greedy(),
            seed: 0,
            stochastic: false,
            max_new_tokens: 8,
            generate: false,
            ignore_eos: false,
        };
        let mut s = Session::new(7, Counting(2), &req, 10);
        s.push(3);
        s
    }

    fn block(base_len: u32, anchor: u32, tokens: Vec<u32>) -> DraftBlock {
        DraftBlock {
            session_id: 7,
            base_len,
            anchor,
            tokens,
            q: vec![],
            parents: vec![],
            seq: 1,
        }
    }

    /// Rows whose argmax is `argmax[i]`.
    fn rows(argmax: &[u32]) -> Logits {
        let mut data = vec![0.0; argmax.len() * VOCAB];
        for (i, &t) in argmax.iter().enumerate() {
            data[i * VOCAB + t as usize] = 1.0;
        }
        Logits::new(data, VOCAB)
    }

    #[test]
    fn a_block_must_extend_the_committed_sequence_exactly() {
        let s = session();
        assert!(s.check_block(&block(3, 3, vec![4])).is_ok());
        for b in [
            block(2, 3, vec![4]),
            block(4, 3, vec![4]),
            block(3, 2, vec![4]),
        ] {
            let e = s.check_block(&b).unwrap_err();
            assert_eq!(e.code, tonic::Code::FailedPrecondition, "{}", e.message);
        }
        // 3 committed + 6 drafted + 1 verifier token = 10: the limit. One more is not.
        assert!(s.check_block(&block(3, 3, vec![4; 6])).is_ok());
        let e = s.check_block(&block(3, 3, vec![4; 7])).unwrap_err();
        assert_eq!(e.code, tonic::Code::InvalidArgument);
    }

    #[test]
    fn a_partial_accept_commits_prefix_and_correction_and_rolls_the_cache_back() {
        let mut s = session();
        let b = block(3, 3, vec![4, 5, 6]);
        assert_eq!(s.verify_input(&b), vec![3, 4, 5, 6]);
        s.cache.0 += 4; // the pass appended its input
        // The target agrees on 4, then wants 7 where the draft said 5.
        let v = s.accept(&b, &rows(&[4, 7, 0, 0])).unwrap();
        assert_eq!((v.accepted(), v.next_token), (1, 7));
        assert_eq!(s.committed, vec![1, 2, 3, 4, 7]);
        assert_eq!(s.cache.len(), 4, "every committed token but the newest");
    }

    #[test]
    fn a_full_accept_adds_the_bonus() {
        let mut s = session();
        let b = block(3, 3, vec![4, 5]);
        s.cache.0 += 3;
        let v = s.accept(&b, &rows(&[4, 5, 6])).unwrap();
        assert_eq!((v.accepted(), v.next_token), (2, 6));
        assert_eq!(s.committed, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(s.cache.len(), 5);
    }

    #[test]
    fn a_failed_rule_leaves_the_session_as_it_was() {
        let mut s = session();
        let b = block(3, 3, vec![4, 5]);
        s.cache.0 += 3;
        // Two rows for two drafted tokens: one short.
        assert!(s.accept(&b, &rows(&[4, 5])).is_err());
        assert_eq!(s.committed, vec![1, 2, 3]);
        assert_eq!(s.cache.len(), 2);
    }
}
