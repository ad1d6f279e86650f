//! What one pass did, collected while its replies are written and handed to
//! [`Metrics`] once the pass is over (vLLM's `SpecDecodingStats` beside its Prometheus
//! logger): the engine's steps only count, the metrics only report.

use crate::metrics::Metrics;

/// The counts and timings of one forward pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassStats {
    /// Sessions in the pass.
    pub size: usize,
    /// Tokens in the pass.
    pub tokens: usize,
    /// The forward pass, ns.
    pub forward_ns: u64,
    /// Each answered request's wait from arrival to the start of the pass, seconds.
    pub queue_seconds: Vec<f64>,
    /// Each verified block: (drafted, accepted).
    pub verified: Vec<(usize, usize)>,
    /// Prompt tokens of the sessions that finished prefilling.
    pub prompt_tokens: u64,
    /// Sessions that finished prefilling and were opened.
    pub opened: u64,
    /// Tokens the target committed on its own: first tokens and generation steps
    /// (tokens after accepted drafts count with `verified`).
    pub own_tokens: u64,
}

impl Metrics {
    /// Records one pass.
    pub fn record_pass(&self, s: &PassStats) {
        self.batch_size.observe(s.size as f64);
        self.batch_tokens.observe(s.tokens as f64);
        self.forward_seconds.observe(s.forward_ns as f64 / 1e9);
        for &q in &s.queue_seconds {
            self.queue_seconds.observe(q);
        }
        for &(drafted, accepted) in &s.verified {
            self.verified(drafted, accepted);
        }
        self.prompt_tokens.inc_by(s.prompt_tokens);
        self.sessions_opened.inc_by(s.opened);
        self.generation_tokens.inc_by(s.own_tokens);
    }
}
