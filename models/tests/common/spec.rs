//! Greedy speculative decoding driven through the seam: edge sessions that draft a block
//! with the draft model, verify it with the target (alone or in one ragged batch with
//! the others) and roll both caches back to the verdict. Shared by the CPU tests
//! (`speculative.rs`) and the GPU ones (`cuda.rs`).

use tandem_decoding::sampling::argmax;
use tandem_decoding::stats::AcceptanceStats;
use tandem_decoding::verify_greedy;
use tandem_models::{
    BatchEntry, LanguageModel, Llama, LlamaCache, Loaded, Positions, SessionCache,
};

/// Prompts the tiny pair agrees on often, but not always.
pub const PROMPTS: &[&str] = &[
    "Once upon a time, there was a kind owl named",
    "Count by 3 from 12: 12 15",
    "The green box has a kite. The red box has a bell. The pink box has a map. Question: what is in the red box? Answer:",
    "Repeat after me: fox blue drum cup. Again:",
];

/// New tokens per prompt.
pub const NEW: usize = 40;

/// One edge session: committed tokens and both caches.
/// Invariant between rounds: `target.len() == committed.len() - 1` (the newest committed
/// token has not been run by the target yet) and `draft.len() < committed.len()`.
pub struct Session {
    committed: Vec<u32>,
    prompt_len: usize,
    draft: LlamaCache,
    target: LlamaCache,
    block: Vec<u32>,
    done: bool,
}

impl Session {
    pub fn open(d: &Llama, t: &Llama, prompt: &[u32]) -> Self {
        let mut target = t.new_cache();
        let first = argmax(t.prefill(&mut target, prompt).unwrap().last());
        let mut committed = prompt.to_vec();
        committed.push(first);
        Session {
            committed,
            prompt_len: prompt.len(),
            draft: d.new_cache(),
            target,
            block: vec![],
            done: false,
        }
    }

    fn draft_block(&mut self, d: &Llama, k: usize) {
        self.block.clear();
        let mut pending = self.committed[self.draft.len()..].to_vec();
        for _ in 0..k {
            let logits = d
                .forward(&mut self.draft, &pending, Positions::Last)
                .unwrap();
            let next = argmax(logits.last());
            self.block.push(next);
            pending = vec![next];
        }
    }

    /// The tokens the target runs this round: the newest committed token, then the block.
    fn verify_input(&self) -> Vec<u32> {
        let mut v = vec![*self.committed.last().unwrap()];
        v.extend_from_slice(&self.block);
        v
    }

    fn commit(&mut self, rows: &tandem_models::Logits, eos: &[u32], stats: &mut AcceptanceStats) {
        let verdict = verify_greedy(&self.block, rows.rows()).unwrap();
        stats.record(&verdict);
        let base = self.committed.len();
        let n = verdict.accepted;
        self.committed.extend_from_slice(&self.block[..n]);
        self.committed.push(verdict.next_token);
        // Roll both caches back to what the verdict confirmed.
        self.target.truncate(base + n).unwrap();
        let keep = (base + n).min(self.draft.len());
        self.draft.truncate(keep).unwrap();
        let new = &self.committed[self.prompt_len..];
        if let Some(at) = new.iter().position(|t| eos.contains(t)) {
            self.committed.truncate(self.prompt_len + at + 1);
            self.done = true;
        } else if new.len() >= NEW {
            self.committed.truncate(self.prompt_len + NEW);
            self.done = true;
        }
    }

    pub fn output(&self) -> &[u32] {
        &self.committed[self.prompt_len..]
    }
}

/// BOS, then `text` tokenized.
pub fn prompt_ids(m: &Loaded, text: &str) -> Vec<u32> {
    let mut ids = vec![m.model.info().bos_token_id.unwrap()];
    ids.extend(m.tokenizer.encode(text).unwrap());
    ids
}

/// Each prompt decoded alone with blocks of `k`: the outputs and the acceptance seen.
pub fn one_at_a_time(
    d: &Loaded,
    t: &Loaded,
    k: usize,
    prompts: &[Vec<u32>],
) -> (Vec<Vec<u32>>, AcceptanceStats) {
    let eos = t.model.info().eos_token_ids.clone();
    let mut stats = AcceptanceStats::default();
    let mut outputs = Vec::new();
    for prompt in prompts {
        let mut s = Session::open(&d.model, &t.model, prompt);
        while !s.done {
            s.draft_block(&d.model, k);
            let input = s.verify_input();
            let rows = t
                .model
                .forward(&mut s.target, &input, Positions::All)
                .unwrap();
            s.commit(&rows, &eos, &mut stats);
        }
        outputs.push(s.output().to_vec());
    }
    (outputs, stats)
}

/// Every prompt decoded at once, the live sessions' blocks of `k` verified in one ragged
/// batch a round: the outputs.
pub fn batched(d: &Loaded, t: &Loaded, k: usize, prompts: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let eos = t.model.info().eos_token_ids.clone();
    let mut stats = AcceptanceStats::default();
    let mut sessions: Vec<Session> = prompts
        .iter()
        .map(|p| Session::open(&d.model, &t.model, p))
        .collect();
    while sessions.iter().any(|s| !s.done) {
        let mut live: Vec<&mut Session> = sessions.iter_mut().filter(|s| !s.done).collect();
        for s in live.iter_mut() {
            s.draft_block(&d.model, k);
        }
        let inputs: Vec<Vec<u32>> = live.iter().map(|s| s.verify_input()).collect();
        let mut entries: Vec<_> = live
            .iter_mut()
            .zip(&inputs)
            .map(|(s, tokens)| BatchEntry {
                cache: &mut s.target,
                tokens,
                positions: Positions::All,
                tree: None,
            })
            .collect();
        let rows = t.model.forward_batch(&mut entries).unwrap();
        drop(entries);
        for (s, r) in live.iter_mut().zip(&rows) {
            s.commit(r, &eos, &mut stats);
        }
    }
    sessions.iter().map(|s| s.output().to_vec()).collect()
}
