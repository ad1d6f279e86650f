//! The verifier's checks of what a client sends (`limits.rs`), on any message that
//! decodes: an `Open` against a small vocabulary and context, a `Draft` in both greedy
//! and stochastic sessions. Nothing may panic; an accepted block keeps its tokens in
//! range and, when stochastic, carries one normalised `q` per token that gives each
//! drafted token positive probability.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tandem_protocol::{Limits, pb};

const VOCAB: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = pb::EdgeMessage::decode(data) else {
        return;
    };
    let limits = Limits {
        max_draft_tokens: 8,
        max_prompt_tokens: 32,
        ..Limits::default()
    };
    match m.kind {
        Some(pb::edge_message::Kind::Open(o)) => {
            if let Ok(req) = limits.check_open(o, VOCAB, 48, "fp") {
                assert!(req.prompt.iter().all(|&t| (t as usize) < VOCAB));
                assert!(!req.prompt.is_empty() && req.prompt.len() <= 32);
            }
        }
        Some(pb::edge_message::Kind::Draft(d)) => {
            for stochastic in [false, true] {
                if let Ok(block) = limits.check_draft(d.clone(), VOCAB, stochastic) {
                    assert!(!block.tokens.is_empty() && block.tokens.len() <= 8);
                    assert!(block.tokens.iter().all(|&t| (t as usize) < VOCAB));
                    if stochastic {
                        assert_eq!(block.q.len(), block.tokens.len());
                        for (q, &t) in block.q.iter().zip(&block.tokens) {
                            assert!(q.prob(t) > 0.0);
                        }
                    }
                }
            }
        }
        _ => {}
    }
});
