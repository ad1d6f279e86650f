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

/// The `w` most likely tokens after `seq` under the draft, run as a plain chain.
fn top_after(d: &Loaded, seq: &[u32], w: usize) -> Vec<u32> {
    use tandem_models::LanguageModel;
    let mut cache = d.model.new_cache();
    let logits = d.model.prefill(&mut cache, seq).unwrap();
    let row = logits.last();
    let mut ids: Vec<u32> = (0..row.len() as u32).collect();
    ids.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
    ids.truncate(w);
    ids
}

/// The sequence from the context down to node `n` of a tree.
fn path_to(seq: &[u32], tokens: &[u32], parents: &[u32], n: usize) -> Vec<u32> {
    let mut path = vec![tokens[n]];
    let mut row = parents[n] as usize;
    while row > 0 {
        path.push(tokens[row - 1]);
        row = parents[row - 1] as usize;
    }
    path.reverse();
    [seq, &path[..]].concat()
}

#[test]
fn a_greedy_tree_holds_each_rows_most_likely_tokens() {
    use tandem_decoding::{Branching, DraftTree};
    use tandem_draft::propose::{Propose, TreePlan};
    let d = draft_model();
    let seq: Vec<u32> = [vec![0], d.tokenizer.encode("Once upon a time").unwrap()].concat();
    let mut drafter = Drafter::new(&d.model, SamplingParams::greedy(), SessionRng::new(0));
    let shape = Branching::new(&[3, 2, 2]).unwrap();
    let block = drafter
        .propose_tree(&seq, TreePlan::Shape(shape.parents()))
        .unwrap()
        .block;
    assert_eq!(block.parents, shape.parents());
    assert!(block.q.is_empty());
    // Each row's children are its top tokens, in order, as a chain forward finds them.
    let tree = DraftTree::new(&block.tokens, &block.parents).unwrap();
    for (row, kids) in tree.children().iter().enumerate() {
        if kids.is_empty() {
            continue;
        }
        let context = match row {
            0 => seq.clone(),
            r => path_to(&seq, &block.tokens, &block.parents, r - 1),
        };
        let got: Vec<u32> = kids.iter().map(|&c| block.tokens[c]).collect();
        assert_eq!(got, top_after(&d, &context, kids.len()), "row {row}");
    }
    // The first path is the greedy chain, and the cache is back at the sequence.
    let chain = fresh_chain(&d, &seq, 3);
    assert_eq!(block.clone().first_path().tokens, chain);
    assert_eq!(drafter.draft(&seq, 3, |_, _| true).unwrap().tokens, chain);

    // A dynamic tree: within its budget, a tree, every node among its row's top 4.
    let block = drafter
        .propose_tree(&seq, TreePlan::dynamic(10, 4))
        .unwrap()
        .block;
    assert_eq!(block.tokens.len(), 10);
    let tree = DraftTree::new(&block.tokens, &block.parents).unwrap();
    assert!(tree.depths().into_iter().max().unwrap() <= 4);
    for (n, &parent) in block.parents.iter().enumerate() {
        let context = match parent {
            0 => seq.clone(),
            r => path_to(&seq, &block.tokens, &block.parents, r as usize - 1),
        };
        assert!(
            top_after(&d, &context, 4).contains(&block.tokens[n]),
            "node {n}"
        );
    }
    assert_eq!(block.first_path().tokens[0], chain[0]);
}

fn fresh_chain(d: &Loaded, seq: &[u32], k: usize) -> Vec<u32> {
    Drafter::new(&d.model, SamplingParams::greedy(), SessionRng::new(0))
        .draft(seq, k, |_, _| true)
        .unwrap()
        .tokens
}
