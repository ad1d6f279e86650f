//! The limits a verifier enforces on its input, and the checks that need no session
//! state. Each violation is a [`WireError`] with the status code the contract names.

use tandem_decoding::{Distribution, SamplingParams};

use crate::WireError;
use crate::convert;
use crate::pb;

/// Input limits of a verifier, advertised in `Info` (see `pb::Limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tokens in one draft block.
    pub max_draft_tokens: u32,
    /// Most tokens in a prompt.
    pub max_prompt_tokens: u32,
    /// Most concurrently open sessions.
    pub max_sessions: u32,
    /// Largest encoded message, bytes.
    pub max_message_bytes: u32,
    /// Most new tokens one session may ask for.
    pub max_new_tokens: u32,
    /// Most nodes in one token tree.
    pub max_tree_nodes: u32,
    /// Deepest path in one token tree.
    pub max_tree_depth: u32,
}

impl Default for Limits {
    /// 32-token blocks, trees of 64 nodes 16 deep, 4096-token prompts and outputs, 256
    /// sessions, 8 MiB messages (a dense `q` of a 152k vocabulary is 0.6 MB per token).
    fn default() -> Self {
        Self {
            max_draft_tokens: 32,
            max_prompt_tokens: 4096,
            max_sessions: 256,
            max_message_bytes: 8 << 20,
            max_new_tokens: 4096,
            max_tree_nodes: 64,
            max_tree_depth: 16,
        }
    }
}

impl Limits {
    /// Tokens a drafting session may hold past its new tokens until a verdict: the
    /// largest block (a chain, or a tree's nodes) and the target's token.
    pub fn block_room(&self) -> usize {
        self.max_draft_tokens.max(self.max_tree_nodes) as usize + 1
    }
}

impl From<Limits> for pb::Limits {
    fn from(l: Limits) -> Self {
        pb::Limits {
            max_draft_tokens: l.max_draft_tokens,
            max_prompt_tokens: l.max_prompt_tokens,
            max_sessions: l.max_sessions,
            max_message_bytes: l.max_message_bytes,
            max_new_tokens: l.max_new_tokens,
            max_tree_nodes: l.max_tree_nodes,
            max_tree_depth: l.max_tree_depth,
        }
    }
}

impl From<pb::Limits> for Limits {
    fn from(l: pb::Limits) -> Self {
        Self {
            max_draft_tokens: l.max_draft_tokens,
            max_prompt_tokens: l.max_prompt_tokens,
            max_sessions: l.max_sessions,
            max_message_bytes: l.max_message_bytes,
            max_new_tokens: l.max_new_tokens,
            max_tree_nodes: l.max_tree_nodes,
            max_tree_depth: l.max_tree_depth,
        }
    }
}

/// An `Open` that passed [`Limits::check_open`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRequest {
    /// The prompt (or the whole committed sequence when re-opening).
    pub prompt: Vec<u32>,
    /// Sampling transform.
    pub sampling: SamplingParams,
    /// Seed of the session's streams.
    pub seed: u64,
    /// Greedy or stochastic acceptance.
    pub stochastic: bool,
    /// Tokens to generate.
    pub max_new_tokens: u32,
    /// Cloud-only generation.
    pub generate: bool,
    /// Cloud-only generation ignores EOS.
    pub ignore_eos: bool,
}

/// A `Draft` that passed [`Limits::check_draft`] (session state not yet checked).
#[derive(Debug, Clone, PartialEq)]
pub struct DraftBlock {
    /// The session it names.
    pub session_id: u64,
    /// Committed length it extends.
    pub base_len: u32,
    /// The last committed token as the edge sees it.
    pub anchor: u32,
    /// Drafted tokens.
    pub tokens: Vec<u32>,
    /// Their draft distributions (stochastic mode), else empty.
    pub q: Vec<Distribution>,
    /// A token tree's parent rows (checked: see `pb::Draft.parents`); empty: a chain.
    pub parents: Vec<u32>,
    /// The edge's sequence number.
    pub seq: u64,
}

impl Limits {
    /// Checks an `Open` against the limits and the target's vocabulary, context and
    /// tokenizer fingerprint.
    pub fn check_open(
        &self,
        open: pb::Open,
        vocab: usize,
        max_context: usize,
        fingerprint: &str,
    ) -> Result<OpenRequest, WireError> {
        if open.tokenizer_fingerprint != fingerprint {
            return Err(WireError::precondition(format!(
                "tokenizer fingerprint '{}' does not match the verifier's '{fingerprint}': draft and target must share one tokenizer",
                open.tokenizer_fingerprint
            )));
        }
        let n = open.prompt_ids.len();
        if n == 0 {
            return Err(WireError::invalid("prompt_ids is empty"));
        }
        if n > self.max_prompt_tokens as usize {
            return Err(WireError::invalid(format!(
                "prompt of {n} tokens is longer than the limit of {} (Limits.max_prompt_tokens)",
                self.max_prompt_tokens
            )));
        }
        if n >= max_context {
            return Err(WireError::invalid(format!(
                "prompt of {n} tokens leaves no room in the model's context of {max_context}"
            )));
        }
        check_ids("prompt_ids", &open.prompt_ids, vocab)?;
        if open.max_new_tokens == 0 {
            return Err(WireError::invalid("max_new_tokens must be at least 1"));
        }
        if open.max_new_tokens > self.max_new_tokens {
            return Err(WireError::invalid(format!(
                "max_new_tokens {} is above the limit of {} (Limits.max_new_tokens)",
                open.max_new_tokens, self.max_new_tokens
            )));
        }
        let sampling = convert::sampling_from_pb(open.sampling.unwrap_or_default());
        sampling
            .validate()
            .map_err(|e| WireError::invalid(e.to_string()))?;
        let stochastic = match pb::AcceptanceMode::try_from(open.mode) {
            Ok(pb::AcceptanceMode::Greedy) => {
                if !sampling.is_greedy() {
                    return Err(WireError::invalid(format!(
                        "greedy acceptance needs temperature 0, got {}",
                        sampling.temperature
                    )));
                }
                false
            }
            Ok(pb::AcceptanceMode::Stochastic) => true,
            Ok(pb::AcceptanceMode::Unspecified) => {
                return Err(WireError::invalid(
                    "Open.mode is unspecified: set ACCEPTANCE_MODE_GREEDY (temperature 0) or ACCEPTANCE_MODE_STOCHASTIC",
                ));
            }
            Err(_) => {
                return Err(WireError::invalid(format!(
                    "unknown acceptance mode {}",
                    open.mode
                )));
            }
        };
        Ok(OpenRequest {
            prompt: open.prompt_ids,
            sampling,
            seed: open.seed,
            stochastic,
            max_new_tokens: open.max_new_tokens,
            generate: open.generate,
            ignore_eos: open.ignore_eos,
        })
    }

    /// Checks a `Draft` against the limits and the vocabulary. `stochastic` says whether
    /// the session needs `q`.
    pub fn check_draft(
        &self,
        draft: pb::Draft,
        vocab: usize,
        stochastic: bool,
    ) -> Result<DraftBlock, WireError> {
        let k = draft.tokens.len();
        if k == 0 {
            return Err(WireError::invalid("draft block has no tokens"));
        }
        if !draft.parents.is_empty() {
            self.check_tree(&draft.tokens, &draft.parents)?;
        } else if k > self.max_draft_tokens as usize {
            return Err(WireError::invalid(format!(
                "draft block of {k} tokens is longer than the limit of {} (Limits.max_draft_tokens)",
                self.max_draft_tokens
            )));
        }
        check_ids("tokens", &draft.tokens, vocab)?;
        check_ids("anchor", &[draft.anchor], vocab)?;
        let q = if stochastic {
            if draft.q.len() != k {
                return Err(WireError::invalid(format!(
                    "stochastic acceptance needs one q per drafted token: {k} tokens, {} q",
                    draft.q.len()
                )));
            }
            draft
                .q
                .into_iter()
                .enumerate()
                .map(|(i, d)| {
                    let dist = convert::distribution_from_pb(d, vocab)
                        .map_err(|e| WireError::invalid(format!("q at position {i}: {e}")))?;
                    if dist.prob(draft.tokens[i]) <= 0.0 {
                        return Err(WireError::invalid(format!(
                            "q at position {i} gives drafted token {} probability 0",
                            draft.tokens[i]
                        )));
                    }
                    Ok(dist)
                })
                .collect::<Result<_, _>>()?
        } else {
            if !draft.q.is_empty() {
                return Err(WireError::invalid(
                    "greedy acceptance takes no q: the session was opened greedy",
                ));
            }
            Vec::new()
        };
        Ok(DraftBlock {
            session_id: draft.session_id,
            base_len: draft.base_len,
            anchor: draft.anchor,
            tokens: draft.tokens,
            q,
            parents: draft.parents,
            seq: draft.seq,
        })
    }

    /// A token tree's shape: its parents in order and in range, its nodes and depth
    /// within the limits.
    pub fn check_tree(&self, tokens: &[u32], parents: &[u32]) -> Result<(), WireError> {
        let tree = tandem_decoding::DraftTree::new(tokens, parents)
            .map_err(|e| WireError::invalid(e.to_string()))?;
        if tree.len() > self.max_tree_nodes as usize {
            return Err(WireError::invalid(format!(
                "token tree of {} nodes is larger than the limit of {} (Limits.max_tree_nodes)",
                tree.len(),
                self.max_tree_nodes
            )));
        }
        let depth = tree.depths().into_iter().max().unwrap_or(0);
        if depth > self.max_tree_depth as usize {
            return Err(WireError::invalid(format!(
                "token tree {depth} deep is deeper than the limit of {} (Limits.max_tree_depth)",
                self.max_tree_depth
            )));
        }
        Ok(())
    }
}

fn check_ids(field: &str, ids: &[u32], vocab: usize) -> Result<(), WireError> {
    match ids.iter().position(|&t| t as usize >= vocab) {
        Some(i) => Err(WireError::invalid(format!(
            "{field}[{i}] = {} is out of range for vocabulary size {vocab}",
            ids[i]
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn open(prompt: Vec<u32>) -> pb::Open {
        pb::Open {
            prompt_ids: prompt,
            tokenizer_fingerprint: "fp".into(),
            max_new_tokens: 8,
            mode: pb::AcceptanceMode::Greedy as i32,
            ..Default::default()
        }
    }

    fn draft(tokens: Vec<u32>) -> pb::Draft {
        pb::Draft {
            session_id: 1,
            base_len: 3,
            anchor: 0,
            tokens,
            q: vec![],
            seq: 1,
            parents: vec![],
        }
    }

    #[test]
    fn open_violations_get_their_codes() {
        let l = Limits {
            max_prompt_tokens: 4,
            ..Limits::default()
        };
        let code = |o: pb::Open| l.check_open(o, 10, 100, "fp").unwrap_err().code;
        assert_eq!(code(open(vec![1; 5])), Code::InvalidArgument);
        assert_eq!(code(open(vec![1, 10])), Code::InvalidArgument);
        assert_eq!(code(open(vec![])), Code::InvalidArgument);
        let mut wrong_fp = open(vec![1]);
        wrong_fp.tokenizer_fingerprint = "other".into();
        assert_eq!(code(wrong_fp), Code::FailedPrecondition);
        let mut hot_greedy = open(vec![1]);
        hot_greedy.mode = pb::AcceptanceMode::Greedy as i32;
        hot_greedy.sampling = Some(pb::Sampling {
            temperature: 0.7,
            ..Default::default()
        });
        assert_eq!(code(hot_greedy), Code::InvalidArgument);
        let mut unspecified = open(vec![1]);
        unspecified.mode = pb::AcceptanceMode::Unspecified as i32;
        assert_eq!(code(unspecified), Code::InvalidArgument);
        let ok = l.check_open(open(vec![1, 9]), 10, 100, "fp").unwrap();
        assert!(!ok.stochastic && ok.sampling.is_greedy());
    }

    #[test]
    fn out_of_range_token_is_named() {
        let e = Limits::default()
            .check_draft(draft(vec![1, 2, 700]), 600, false)
            .unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(e.message.contains("tokens[2] = 700"), "{}", e.message);
    }

    #[test]
    fn long_block_and_missing_q_are_refused() {
        let l = Limits {
            max_draft_tokens: 2,
            ..Limits::default()
        };
        let e = l.check_draft(draft(vec![1, 2, 3]), 10, false).unwrap_err();
        assert!(e.message.contains("limit of 2"), "{}", e.message);
        let e = l.check_draft(draft(vec![1]), 10, true).unwrap_err();
        assert!(
            e.message.contains("one q per drafted token"),
            "{}",
            e.message
        );
    }

    #[test]
    fn q_must_cover_its_token() {
        let mut d = draft(vec![3]);
        d.q = vec![pb::DraftDistribution {
            ids: vec![1, 2],
            probs: vec![0.5, 0.5],
            ..Default::default()
        }];
        let e = Limits::default().check_draft(d, 10, true).unwrap_err();
        assert!(e.message.contains("probability 0"), "{}", e.message);
    }
}
