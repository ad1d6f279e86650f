//! The `[simulation]` table: run the grid on a simulated backend instead of models
//! (the simulator itself, and its calibration from recorded runs, are `crate::sim`).

use serde::{Deserialize, Serialize};

/// A simulated draft and target: acceptance from a probability or a recorded run,
/// times from a latency profile. With it, `tandem run` loads no model and opens no socket; every cell runs
/// on a virtual clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    /// Probability that the target accepts each drafted token (i.i.d. per position).
    /// Exclusive with `acceptance_trace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<f64>,
    /// A real run's `rounds.parquet` (relative to the config): each position's
    /// acceptance is taken from its verified rounds (of the blocks that reached
    /// position i, the share accepted there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance_trace: Option<String>,
    /// Token trees: the probability that a row's candidate of sibling rank 1, 2, …
    /// (the last repeats) is accepted given that its earlier siblings were rejected;
    /// rank 0 takes the acceptance of its depth. Needed by `tree` strategies. For
    /// candidates drawn independently from q against p, [`tandem_decoding::analytic::tree::acceptance_by_rank`]
    /// gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sibling_acceptance: Vec<f64>,
    /// Edge: time of one draft step, ms. Without it, `profile_trace` gives it too (the
    /// traced run's drafting time per drafted token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_ms_per_token: Option<f64>,
    /// Edge: time of one step of the draft decoding alone (strategy `edge_only`), ms.
    /// Absent: `draft_ms_per_token` (drafting a block to verify costs more a token on
    /// a real draft: it catches up on the verdict and keeps its distributions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_ms_per_token: Option<f64>,
    /// Software time every message spends on its way besides the link (encoding,
    /// the transport, the verifier's work outside its forward pass), ms, in each
    /// direction: the link model's delay plus this is a message's delay.
    /// `tandem resimulate` fits it from a real run's rounds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub transport_ms: f64,
    /// Cloud: fixed time of any forward pass, ms (a decode step of one session costs
    /// `pass_ms + per_session_ms + per_token_ms`). Required unless `profile_trace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_ms: Option<f64>,
    /// Cloud: extra time of a pass that verifies at least one draft block, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_extra_ms: Option<f64>,
    /// Cloud: time per session in a pass, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_session_ms: Option<f64>,
    /// Cloud: time per token in a pass, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_token_ms: Option<f64>,
    /// A real run's `rounds.parquet` (relative to the config) to fit the four pass
    /// times above from, by least squares over its passes (e.g. a run on the GPU the
    /// simulation stands for). Exclusive with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_trace: Option<String>,
    /// The simulated draft's context, tokens: a request whose sequence outgrows it goes
    /// on in the cloud (edge → cloud fallback, "context full"). Absent: unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_context: Option<usize>,
    /// The simulated draft's KV cache per token, KiB: with a `[[device]]`'s
    /// `kv_budget_mb`, a request whose cache outgrows the budget goes on in the cloud
    /// ("out of memory").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_kv_kib_per_token: Option<f64>,
    /// Prompt length of every request, tokens.
    #[serde(default = "prompt_tokens")]
    pub prompt_tokens: usize,
    /// Most sessions in one pass.
    #[serde(default = "max_batch")]
    pub max_batch_sessions: usize,
    /// Most tokens in one pass (a job larger than this still runs, alone).
    #[serde(default = "max_batch_tokens")]
    pub max_batch_tokens: usize,
    /// Times the verifier is down: every session is cut and no connection is taken
    /// until it is back (with no sessions, as after a restart). Draft nodes with a
    /// draft go on alone and re-open their sessions when it is back (fallback and
    /// resync); cloud-only requests fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<Outage>,
    /// How long the verifier gathers work for a pass after the first job arrives,
    /// unless the batch fills or every session has work waiting, ms (the real
    /// verifier's `--max-wait-us`, in ms; 0: a pass starts as soon as there is work).
    #[serde(default)]
    pub gather_ms: f64,
    /// Early exit: a provisional verdict on each block of a session that asks for one
    /// (strategy `early_exit`) this fraction of the way through its pass (0 < f < 1; an
    /// exit after layer L of N comes at about (L + 1) / N). Absent: the verifier has
    /// no early exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_exit_at: Option<f64>,
    /// Probability that a provisional verdict is the final one (otherwise it predicts a
    /// wrong next token). Absent, with `early_exit_at`: the share of the provisional
    /// verdicts that agreed in `acceptance_trace`'s run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_exit_agreement: Option<f64>,
}

/// A time the simulated verifier is down.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// When it goes down, seconds from the cell's start.
    pub at_s: f64,
    /// For how long, seconds.
    pub for_s: f64,
}

impl Outage {
    /// Whether the verifier is down at `t` (from the cell's start).
    pub fn covers(&self, t: std::time::Duration) -> bool {
        let t = t.as_secs_f64();
        t >= self.at_s && t < self.at_s + self.for_s
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn prompt_tokens() -> usize {
    32
}

fn max_batch() -> usize {
    256
}

fn max_batch_tokens() -> usize {
    1 << 20
}

impl SimSpec {
    /// The simulated draft's step time for a request of `strategy`, ms.
    pub fn step_ms(&self, strategy: &tandem_draft::Strategy) -> f64 {
        let draft = self.draft_ms_per_token.unwrap_or(0.0);
        match strategy {
            tandem_draft::Strategy::EdgeOnly => self.edge_ms_per_token.unwrap_or(draft),
            _ => draft,
        }
    }

    /// The pass times as the verifier's pace profile (absent ones 0).
    pub fn pace(&self) -> tandem_verifier::PassPace {
        tandem_verifier::PassPace {
            pass_ms: self.pass_ms.unwrap_or(0.0),
            per_session_ms: self.per_session_ms.unwrap_or(0.0),
            per_token_ms: self.per_token_ms.unwrap_or(0.0),
            verify_extra_ms: self.verify_extra_ms.unwrap_or(0.0),
        }
    }

    /// Forward time of a pass of `sessions` sessions and `tokens` tokens, ns.
    pub fn pass_ns(&self, sessions: usize, tokens: usize, verifies: bool) -> u64 {
        (self.pace().ms(sessions, tokens, verifies) * 1e6).round() as u64
    }

    /// Checks the numbers; an error names the key (within `[simulation]`).
    pub fn check(&self) -> Result<(), (String, String)> {
        match (self.acceptance, &self.acceptance_trace) {
            (Some(a), None) if !(0.0..=1.0).contains(&a) => {
                return Err(("acceptance".into(), format!("must be in [0, 1], got {a}")));
            }
            (Some(_), Some(_)) => {
                return Err((
                    "acceptance_trace".into(),
                    "give acceptance or acceptance_trace, not both".into(),
                ));
            }
            (None, None) => {
                return Err((
                    "acceptance".into(),
                    "give acceptance (a probability) or acceptance_trace (a rounds.parquet)".into(),
                ));
            }
            _ => {}
        }
        if let Some(a) = self
            .sibling_acceptance
            .iter()
            .find(|a| !(0.0..=1.0).contains(*a))
        {
            return Err((
                "sibling_acceptance".into(),
                format!("each must be in [0, 1], got {a}"),
            ));
        }
        let profile = [
            ("pass_ms", self.pass_ms),
            ("verify_extra_ms", self.verify_extra_ms),
            ("per_session_ms", self.per_session_ms),
            ("per_token_ms", self.per_token_ms),
        ];
        if self.profile_trace.is_some() {
            if let Some((k, _)) = profile.iter().find(|(_, v)| v.is_some()) {
                return Err((
                    (*k).into(),
                    "give the pass times or profile_trace (which fits them), not both".into(),
                ));
            }
        } else if self.pass_ms.is_none() {
            return Err((
                "pass_ms".into(),
                "missing: give the pass times (pass_ms and optionally verify_extra_ms, per_session_ms, per_token_ms) or profile_trace".into(),
            ));
        }
        if self.draft_ms_per_token.is_none() && self.profile_trace.is_none() {
            return Err((
                "draft_ms_per_token".into(),
                "missing: give the draft step's time, or profile_trace to take it from a real run"
                    .into(),
            ));
        }
        let draft = [
            ("draft_ms_per_token", self.draft_ms_per_token),
            ("edge_ms_per_token", self.edge_ms_per_token),
        ];
        let given = profile
            .iter()
            .chain(draft.iter())
            .filter_map(|(k, v)| v.map(|v| (*k, v)));
        let fixed = [
            ("gather_ms", self.gather_ms),
            ("transport_ms", self.transport_ms),
        ];
        for (k, v) in fixed.into_iter().chain(given) {
            if !(v.is_finite() && v >= 0.0) {
                return Err((k.into(), format!("must be a number ≥ 0, got {v}")));
            }
        }
        if let Some(kib) = self.draft_kv_kib_per_token
            && !(kib.is_finite() && kib > 0.0)
        {
            return Err((
                "draft_kv_kib_per_token".into(),
                format!("must be a number > 0, got {kib}"),
            ));
        }
        if self.max_batch_sessions == 0 {
            return Err(("max_batch_sessions".into(), "must be ≥ 1".into()));
        }
        for (i, o) in self.outages.iter().enumerate() {
            if !(o.at_s.is_finite() && o.at_s >= 0.0 && o.for_s.is_finite() && o.for_s > 0.0) {
                return Err((
                    format!("outages[{i}]"),
                    format!(
                        "at_s must be ≥ 0 and for_s > 0, got at_s = {}, for_s = {}",
                        o.at_s, o.for_s
                    ),
                ));
            }
        }
        if self.max_batch_tokens == 0 {
            return Err(("max_batch_tokens".into(), "must be ≥ 1".into()));
        }
        self.check_early_exit()
    }

    fn check_early_exit(&self) -> Result<(), (String, String)> {
        if let Some(f) = self.early_exit_at
            && !(f > 0.0 && f < 1.0)
        {
            return Err((
                "early_exit_at".into(),
                format!("must be in (0, 1), got {f}"),
            ));
        }
        match (self.early_exit_at, self.early_exit_agreement) {
            (None, Some(_)) => Err((
                "early_exit_agreement".into(),
                "needs early_exit_at (where in the pass the provisional verdict comes)".into(),
            )),
            (Some(_), Some(p)) if !(0.0..=1.0).contains(&p) => Err((
                "early_exit_agreement".into(),
                format!("must be in [0, 1], got {p}"),
            )),
            (Some(_), None) if self.acceptance_trace.is_none() => Err((
                "early_exit_agreement".into(),
                "missing: give the probability that a provisional verdict agrees, or an acceptance_trace whose run had early exits".into(),
            )),
            _ => Ok(()),
        }
    }
}
