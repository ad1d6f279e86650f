//! Every value checked before anything runs.

use std::collections::HashSet;
use std::str::FromStr;

use tandem_decoding::policy::PolicySpec;
use tandem_draft::Strategy;
use tandem_models::{LayerSelection, ModelSpec};
use tandem_protocol::LinkProfile;
use tandem_protocol::client::{Endpoint, Transport};

use super::{Config, StrategyGrid};

/// A bad value: the key (a dotted path, `strategy[1].k`) and what is wrong.
#[derive(Debug)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

fn bad<T>(key: impl Into<String>, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        key: key.into(),
        message: message.into(),
    })
}

fn check(ok: bool, key: &str, message: impl FnOnce() -> String) -> Result<(), Invalid> {
    if ok { Ok(()) } else { bad(key, message()) }
}

fn non_negative(key: &str, v: f64) -> Result<(), Invalid> {
    check(v.is_finite() && v >= 0.0, key, || {
        format!("must be a number ≥ 0, got {v}")
    })
}

impl Config {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        check(
            !self.name.is_empty()
                && !self.name.starts_with('.')
                && self
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "name",
            || {
                format!(
                    "{:?} must be letters, digits, '-', '_' or '.', not starting with '.' (it names a folder)",
                    self.name
                )
            },
        )?;
        if let Err(e) = self.transport.parse::<Transport>() {
            return bad("transport", e);
        }
        if let Some(v) = &self.verifier {
            Endpoint::from_str(v).or_else(|e| bad("verifier", e.to_string()))?;
        }
        match (&self.models, &self.simulation) {
            (Some(m), _) => {
                for (key, spec) in [("models.draft", &m.draft), ("models.target", &m.target)] {
                    ModelSpec::from_str(spec).or_else(|e| bad(key, e.to_string()))?;
                }
                if let Some(layers) = &m.draft_layers {
                    LayerSelection::from_str(layers)
                        .or_else(|e| bad("models.draft_layers", e.to_string()))?;
                }
            }
            (None, None) => {
                return bad(
                    "models",
                    "name the draft and target ([models]), or simulate them ([simulation])",
                );
            }
            (None, Some(_)) => {}
        }
        if let Some(sim) = &self.simulation {
            self.validate_simulation(sim)?;
        }
        self.validate_workload()?;
        check(!self.networks.is_empty(), "network", || {
            "at least one [[network]] is needed (e.g. name = \"lan\")".into()
        })?;
        let mut names = HashSet::new();
        for (i, n) in self.networks.iter().enumerate() {
            check(names.insert(&n.name), &format!("network[{i}].name"), || {
                format!("{:?} is used twice", n.name)
            })?;
            let spec = n.link.as_deref().unwrap_or(&n.name);
            let key = if n.link.is_some() { "link" } else { "name" };
            LinkProfile::from_str(spec).or_else(|e| bad(format!("network[{i}].{key}"), e))?;
        }
        let mut names = HashSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            let key = |k: &str| format!("device[{i}].{k}");
            check(names.insert(&d.name), &key("name"), || {
                format!("{:?} is used twice", d.name)
            })?;
            check(d.draft_slowdown >= 1.0, &key("draft_slowdown"), || {
                format!(
                    "must be ≥ 1 (a device slower than this machine), got {}",
                    d.draft_slowdown
                )
            })?;
            check(d.throttle_factor >= 1.0, &key("throttle_factor"), || {
                format!("must be ≥ 1, got {}", d.throttle_factor)
            })?;
            check(d.throttle_ramp_s > 0.0, &key("throttle_ramp_s"), || {
                format!("must be > 0, got {}", d.throttle_ramp_s)
            })?;
            if let Some(t) = d.throttle_after_s {
                non_negative(&key("throttle_after_s"), t)?;
            }
            non_negative(&key("joules_per_token"), d.joules_per_token)?;
        }
        let c = &self.cost;
        non_negative("cost.gpu_dollars_per_hour", c.gpu_dollars_per_hour)?;
        non_negative("cost.input_dollars_per_mtok", c.input_dollars_per_mtok)?;
        non_negative("cost.output_dollars_per_mtok", c.output_dollars_per_mtok)?;
        non_negative("cost.dollars_per_kwh", c.dollars_per_kwh)?;
        check(!self.strategies.is_empty(), "strategy", || {
            "at least one [[strategy]] is needed (e.g. kind = \"cloud_only\")".into()
        })?;
        for (i, s) in self.strategies.iter().enumerate() {
            s.expand(i)?;
        }
        Ok(())
    }

    fn validate_simulation(&self, sim: &super::SimSpec) -> Result<(), Invalid> {
        sim.check()
            .or_else(|(k, m)| bad(format!("simulation.{k}"), m))?;
        if self.verifier.is_some() {
            return bad("verifier", "a simulated run has no verifier to connect to");
        }
        Ok(())
    }

    fn validate_workload(&self) -> Result<(), Invalid> {
        let w = &self.workload;
        check(!w.prompts.trim().is_empty(), "workload.prompts", || {
            "name a prompt set (builtin:stories) or a JSONL file".into()
        })?;
        check(w.requests >= 1, "workload.requests", || {
            "must be ≥ 1".into()
        })?;
        let clients = w.clients.as_ref().map(|c| c.values());
        match (&clients, w.arrival_rate) {
            (Some(_), Some(_)) => {
                return bad(
                    "workload.arrival_rate",
                    "give either clients (closed loop) or arrival_rate (Poisson), not both",
                );
            }
            (Some(c), None) if c.is_empty() || c.contains(&0) => {
                return bad("workload.clients", "must be ≥ 1 (each value of a list too)");
            }
            (None, Some(r)) if !(r.is_finite() && r > 0.0) => {
                return bad(
                    "workload.arrival_rate",
                    format!("must be > 0 requests/s, got {r}"),
                );
            }
            _ => {}
        }
        check(w.max_new_tokens >= 1, "workload.max_new_tokens", || {
            "must be ≥ 1".into()
        })?;
        check(
            w.temperature.is_finite() && w.temperature >= 0.0,
            "workload.temperature",
            || format!("must be ≥ 0, got {}", w.temperature),
        )?;
        check(w.top_p > 0.0 && w.top_p <= 1.0, "workload.top_p", || {
            format!("must be in (0, 1], got {}", w.top_p)
        })?;
        check(w.repetitions >= 1, "workload.repetitions", || {
            "must be ≥ 1".into()
        })?;
        check(w.deadline_ms >= 1, "workload.deadline_ms", || {
            "must be ≥ 1 ms (how long the edge waits for the verifier)".into()
        })?;
        check(w.retry_ms >= 1, "workload.retry_ms", || {
            "must be ≥ 1 ms (how often a fallen-back edge retries)".into()
        })
    }
}

impl StrategyGrid {
    /// The router of a `routed` entry (defaults when `[strategy.route]` is absent).
    pub(crate) fn router(&self, i: usize) -> Result<tandem_draft::route::Router, Invalid> {
        let spec = match &self.route {
            Some(r) => r.clone(),
            None => toml::from_str("").expect("every route key has a default"),
        };
        tandem_draft::route::Router::new(&spec).map_err(|(k, message)| Invalid {
            key: format!("strategy[{i}].route.{k}"),
            message,
        })
    }

    /// The strategies of this grid entry (`i` is its index, for messages).
    pub(crate) fn expand(&self, i: usize) -> Result<Vec<Strategy>, Invalid> {
        let key = |k: &str| format!("strategy[{i}].{k}");
        let kind = self.kind.replace('-', "_");
        let ks = self.k.as_ref().map(|k| k.values());
        let policies = self.policy.as_ref().map(|p| p.values());
        if self.route.is_some() && kind != "routed" {
            return bad(
                key("route"),
                format!("{kind} takes no route (only routed does)"),
            );
        }
        match kind.as_str() {
            "routed" => {
                if ks.is_some() || policies.is_some() {
                    let which = if ks.is_some() { "k" } else { "policy" };
                    return bad(key(which), "routed takes its tiers from [strategy.route]");
                }
                Ok(vec![self.router(i)?.tiers()[3]])
            }
            "speculative" | "pipelined" => {
                if policies.is_some() {
                    return bad(key("policy"), format!("{kind} takes k, not a policy"));
                }
                let Some(ks) = ks else {
                    return bad(
                        key("kind"),
                        format!("{kind} needs k (e.g. k = 4 or k = [2, 4])"),
                    );
                };
                check(!ks.is_empty(), &key("k"), || "the list is empty".into())?;
                ks.iter()
                    .map(|&k| {
                        check((1..=32).contains(&k), &key("k"), || {
                            format!("must be between 1 and 32, got {k}")
                        })?;
                        Ok(if kind == "speculative" {
                            Strategy::Speculative { k }
                        } else {
                            Strategy::Pipelined { k }
                        })
                    })
                    .collect()
            }
            "adaptive" => {
                if ks.is_some() {
                    return bad(
                        key("k"),
                        "adaptive takes a policy, not k (e.g. policy = \"+2/-1:8\")",
                    );
                }
                let policies = policies.unwrap_or_else(|| vec!["+2/-1:8".into()]);
                policies
                    .iter()
                    .map(|p| {
                        PolicySpec::from_str(p)
                            .map(|policy| Strategy::Adaptive { policy })
                            .or_else(|e| bad(key("policy"), e))
                    })
                    .collect()
            }
            "cloud_only" | "edge_only" => {
                if ks.is_some() || policies.is_some() {
                    let which = if ks.is_some() { "k" } else { "policy" };
                    return bad(key(which), format!("{kind} takes neither k nor a policy"));
                }
                Ok(vec![if kind == "cloud_only" {
                    Strategy::CloudOnly
                } else {
                    Strategy::EdgeOnly
                }])
            }
            other => bad(
                key("kind"),
                format!(
                    "unknown strategy {other:?}: expected one of {}",
                    tandem_draft::strategy::NAMES.join(", ")
                ),
            ),
        }
    }
}
