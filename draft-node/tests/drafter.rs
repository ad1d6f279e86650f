//! The drafter reuses whatever prefix its cache shares with the sequence it drafts
//! after. Whatever it drafted before (a rejected block, a pipelined guess that did not
//! come true, a longer or unrelated sequence), greedy drafting after a sequence gives
//! the same tokens as a fresh drafter.

use tandem_decoding::{SamplingParams, SessionRng};
use tandem_draft::drafter::Drafter;
use tandem_models::{LoadOptions, Loaded, ModelSpec};

fn draft_model() -> Loaded {
    "builtin:tiny-draft"
        .parse::<ModelSpec>()
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap()
}

#[test]
fn drafting_after_any_history_equals_drafting_fresh() {
    let d = draft_model();
    let ids = |text: &str| {
        let mut v = vec![0];
        v.extend(d.tokenizer.encode(text).unwrap());
        v
    };
    let story = ids("Once upon a time, there was a kind owl named Mia. Mia lived near the");
    let other = ids("Count by 3 from 12: 12 15 18");
    let fresh = |seq: &[u32]| {
        Drafter::new(&d.model, SamplingParams::greedy(), SessionRng::new(0))
            .draft(seq, 6, |_, _| true)
            .unwrap()
            .tokens
    };
    let mut reused = Drafter::new(&d.model, SamplingParams::greedy(), SessionRng::new(0));
    // Histories: the story, then a rollback to a prefix, then a diverging edit, then an
    // unrelated prompt, then the story again.
    let mut edited = story[..10].to_vec();
    edited.push(story[10] + 1);
    let sequences = [
        story.clone(),
        story[..8].to_vec(),
        edited,
        other,
        story.clone(),
    ];
    for seq in &sequences {
        let got = reused.draft(seq, 6, |_, _| true).unwrap().tokens;
        assert_eq!(got, fresh(seq), "after {} tokens", seq.len());
    }
}

#[test]
fn a_stopping_policy_ends_the_block_but_not_before_one_token() {
    let d = draft_model();
    let mut drafter = Drafter::new(&d.model, SamplingParams::greedy(), SessionRng::new(0));
    let seq = vec![0, 5, 6, 7];
    let none = drafter.draft(&seq, 5, |_, _| false).unwrap();
    assert_eq!(none.tokens.len(), 1);
    let mut asked = Vec::new();
    let some = drafter
        .draft(&seq, 5, |i, p| {
            asked.push((i, p));
            i < 3
        })
        .unwrap();
    assert_eq!(some.tokens.len(), 3);
    assert_eq!(asked.iter().map(|a| a.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(asked.iter().all(|&(_, p)| p > 0.0 && p <= 1.0));
    // Greedy drafting keeps no q; sampling keeps one per token.
    assert!(some.q.is_empty());
    let mut sampler = Drafter::new(&d.model, SamplingParams::default(), SessionRng::new(3));
    let sampled = sampler.draft(&seq, 4, |_, _| true).unwrap();
    assert_eq!(sampled.q.len(), sampled.tokens.len());
    for (t, q) in sampled.tokens.iter().zip(&sampled.q) {
        assert!(q.prob(*t) > 0.0);
    }
}
