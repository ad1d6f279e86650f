//! The seam in use: greedy speculative decoding with the shipped pair, the draft and
//! the target each rolling its own cache back after every verdict, one session at a
//! time and many sessions verified in one ragged batch. Either way the output must be
//! token for token the target's own greedy decoding.

mod common;

use common::greedy;
use common::spec::{NEW, PROMPTS, batched, one_at_a_time, prompt_ids};
use tandem_models::{LoadOptions, Loaded, ModelSpec};

fn pair() -> (Loaded, Loaded) {
    tandem_models::load_pair(
        &"builtin:tiny-draft".parse::<ModelSpec>().unwrap(),
        &"builtin:tiny-target".parse::<ModelSpec>().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap()
}

#[test]
fn speculative_greedy_equals_target_greedy_one_session_at_a_time() {
    let (d, t) = pair();
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| prompt_ids(&t, p)).collect();
    for k in [1, 3, 5] {
        let (outputs, stats) = one_at_a_time(&d, &t, k, &prompts);
        for ((out, prompt), text) in outputs.iter().zip(&prompts).zip(PROMPTS) {
            assert_eq!(out, &greedy(&t, prompt, NEW), "k={k} prompt {text:?}");
            if k == 3 {
                eprintln!("{text}|{}", t.tokenizer.decode(out).unwrap());
            }
        }
        eprintln!(
            "k={k}: acceptance rate {:.3}, mean accepted length {:.2}",
            stats.acceptance_rate(),
            stats.mean_acceptance_length()
        );
        // The pair agrees often but not always, so both full accepts and rollbacks ran.
        assert!(
            stats.acceptance_rate() > 0.0,
            "the draft never agrees with the target"
        );
        assert!(
            stats.acceptance_rate() < 1.0,
            "no partial accept: rollback never exercised"
        );
    }
}

#[test]
fn batched_verification_gives_every_session_its_own_greedy_output() {
    let (d, t) = pair();
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| prompt_ids(&t, p)).collect();
    for (out, p) in batched(&d, &t, 4, &prompts).iter().zip(&prompts) {
        assert_eq!(out, &greedy(&t, p, NEW));
    }
}
