//! For tests that must decide what the engine has queued rather than leave it to
//! timing: a model whose forward passes wait at a gate the test opens and shuts.

use std::sync::{Condvar, Mutex};

use tandem_models::{BatchEntry, Exits, LanguageModel, Logits, ModelInfo};

/// A gate passes block at while it is shut.
#[derive(Debug, Default)]
pub struct Gate {
    /// (open, passes that reached the gate).
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gate {
    /// Lets every waiting and later pass through.
    pub fn open(&self) {
        self.state.lock().expect("gate").0 = true;
        self.changed.notify_all();
    }

    /// Holds later passes at the gate.
    pub fn shut(&self) {
        self.state.lock().expect("gate").0 = false;
    }

    /// How many passes have reached the gate so far.
    pub fn entered(&self) -> usize {
        self.state.lock().expect("gate").1
    }

    fn pass(&self) {
        let mut state = self.state.lock().expect("gate");
        state.1 += 1;
        while !state.0 {
            state = self.changed.wait(state).expect("gate");
        }
    }
}

/// `inner`, with every forward pass waiting at `gate` first.
#[derive(Debug)]
pub struct Gated<M> {
    /// The real model.
    pub inner: M,
    /// Where its passes wait.
    pub gate: std::sync::Arc<Gate>,
}

impl<M: LanguageModel> LanguageModel for Gated<M> {
    type Cache = M::Cache;

    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }

    fn new_cache_for(&self, max_len: usize) -> Self::Cache {
        self.inner.new_cache_for(max_len)
    }

    fn forward_batch(
        &self,
        entries: &mut [BatchEntry<'_, Self::Cache>],
    ) -> tandem_models::Result<Vec<Logits>> {
        self.gate.pass();
        self.inner.forward_batch(entries)
    }

    fn forward_batch_exits(
        &self,
        entries: &mut [BatchEntry<'_, Self::Cache>],
        exits: Exits<'_>,
    ) -> tandem_models::Result<Vec<Logits>> {
        self.gate.pass();
        self.inner.forward_batch_exits(entries, exits)
    }
}
