//! Every value checked before anything runs.

use std::collections::HashSet;
use std::str::FromStr;

use std::sync::Arc;

use tandem_decoding::TreeShape;
use tandem_decoding::policy::PolicySpec;
use tandem_draft::Strategy;
use tandem_draft::route::Router;
use tandem_draft::strategy::StrategyKind;
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

/// A validated config's grid, every value resolved to what runs: nothing downstream
/// parses the config's strings again.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// The transport to the in-process verifier.
    pub transport: Transport,
    /// A running verifier's replicas, in order (empty: one is started in process).
    pub verifier: Vec<Endpoint>,
    /// Each `[[network]]`'s link, in order.
    pub links: Vec<LinkProfile>,
    /// Each `[[strategy]]` entry, in order.
    pub entries: Vec<GridEntry>,
}

impl Default for Grid {
    /// An empty grid (a config not yet validated).
    fn default() -> Self {
        Self {
            transport: Transport::Quic,
            verifier: Vec::new(),
            links: Vec::new(),
            entries: Vec::new(),
        }
    }
}

/// One `[[strategy]]` entry, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct GridEntry {
    /// Its kind.
    pub kind: StrategyKind,
    /// The strategies it expands to (one cell each); a routed entry's default tier.
    pub strategies: Vec<Strategy>,
    /// A routed entry's router.
    pub router: Option<Arc<Router>>,
}

impl Config {
    /// Checks every value and resolves the grid.
    pub(super) fn validate(&self) -> Result<Grid, Invalid> {
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
        let transport: Transport = match self.transport.parse() {
            Ok(t) => t,
            Err(e) => return bad("transport", e),
        };
        let verifier = match &self.verifier {
            Some(list) => {
                let list = list.values();
                check(!list.is_empty(), "verifier", || {
                    "name at least one endpoint (or leave `verifier` out to start one in process)"
                        .into()
                })?;
                list.iter()
                    .map(|v| Endpoint::from_str(v).or_else(|e| bad("verifier", e.to_string())))
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => {
                for (key, set) in [
                    ("verifier_ca", self.verifier_ca.is_some()),
                    ("verifier_token_file", self.verifier_token_file.is_some()),
                ] {
                    check(!set, key, || {
                        "is for a running verifier: name it in `verifier`".into()
                    })?;
                }
                Vec::new()
            }
        };
        match (&self.models, &self.simulation) {
            (Some(m), _) => {
                for (key, spec) in [("models.draft", &m.draft), ("models.target", &m.target)] {
                    ModelSpec::from_str(spec).or_else(|e| bad(key, e.to_string()))?;
                }
                if let Some(layers) = &m.draft_layers {
                    LayerSelection::from_str(layers)
                        .or_else(|e| bad("models.draft_layers", e.to_string()))?;
                }
                m.placements()
                    .or_else(|(key, e)| bad(format!("models.{key}"), e))?;
                for (key, set, flag) in [
                    ("models.device", m.device.is_some(), "--device"),
                    ("models.dtype", m.dtype.is_some(), "--dtype"),
                ] {
                    check(!set || self.verifier.is_none(), key, || {
                        format!(
                            "is for the in-process verifier; a running one has its own (verifier-node {flag})"
                        )
                    })?;
                }
                check(
                    m.early_exit_layers.is_empty() || self.verifier.is_none(),
                    "models.early_exit_layers",
                    || {
                        "is for the in-process verifier; a running one has its own (verifier-node --early-exit-layer)".into()
                    },
                )?;
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
        let mut links = Vec::with_capacity(self.networks.len());
        for (i, n) in self.networks.iter().enumerate() {
            check(names.insert(&n.name), &format!("network[{i}].name"), || {
                format!("{:?} is used twice", n.name)
            })?;
            let spec = n.link.as_deref().unwrap_or(&n.name);
            let key = if n.link.is_some() { "link" } else { "name" };
            links.push(
                LinkProfile::from_str(spec).or_else(|e| bad(format!("network[{i}].{key}"), e))?,
            );
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
            if let Some(t) = d.shutdown_after_s {
                non_negative(&key("shutdown_after_s"), t)?;
            }
            if let Some(m) = d.kv_budget_mb {
                non_negative(&key("kv_budget_mb"), m)?;
                let sized = self
                    .simulation
                    .as_ref()
                    .is_none_or(|s| s.draft_kv_kib_per_token.is_some());
                check(sized, &key("kv_budget_mb"), || {
                    "a simulated draft's cache needs a size to bound: give [simulation] draft_kv_kib_per_token".into()
                })?;
            }
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
        check(
            c.gpu_utilisation
                .is_none_or(|u| u.is_finite() && u > 0.0 && u <= 1.0),
            "cost.gpu_utilisation",
            || format!("must be in (0, 1], got {}", c.utilisation()),
        )?;
        non_negative("cost.edge_device_dollars", c.edge_device_dollars)?;
        non_negative("cost.edge_amortisation_days", c.edge_amortisation_days)?;
        non_negative("cost.edge_idle_watts", c.edge_idle_watts)?;
        check(
            c.edge_device_dollars == 0.0 || c.edge_amortisation_days > 0.0,
            "cost.edge_amortisation_days",
            || "give the days the device's price is spread over (e.g. 1095 for three years)".into(),
        )?;
        check(!self.strategies.is_empty(), "strategy", || {
            "at least one [[strategy]] is needed (e.g. kind = \"cloud_only\")".into()
        })?;
        let entries: Vec<GridEntry> = self
            .strategies
            .iter()
            .enumerate()
            .map(|(i, s)| s.resolve(i))
            .collect::<Result<_, _>>()?;
        self.validate_exits(&entries, verifier.is_empty())?;
        self.validate_sim_trees(&entries)?;
        self.validate_claims(&entries)?;
        for (key, v) in [
            ("report.slo_tpot_ms", self.report.slo_tpot_ms),
            ("report.slo_ttft_ms", self.report.slo_ttft_ms),
        ] {
            if let Some(v) = v {
                check(v.is_finite() && v > 0.0, key, || {
                    format!("an SLO is a time in ms above 0, got {v}")
                })?;
            }
        }
        if let Some(c) = &self.cloud {
            check(self.simulation.is_none(), "cloud", || {
                "a simulation has its own pass times ([simulation]); [cloud] paces a real run's verifier".into()
            })?;
            check(verifier.is_empty(), "cloud", || {
                "[cloud] paces the verifier this run starts; a running verifier (verifier = ...) takes --pace itself".into()
            })?;
            let given = [
                ("pass_ms", c.pass_ms),
                ("per_session_ms", c.per_session_ms),
                ("per_token_ms", c.per_token_ms),
                ("verify_extra_ms", c.verify_extra_ms),
            ];
            for (k, v) in given {
                if let Some(v) = v {
                    check(c.profile_trace.is_none(), &format!("cloud.{k}"), || {
                        "give the pass times or profile_trace (which fits them), not both".into()
                    })?;
                    check(v.is_finite() && v >= 0.0, &format!("cloud.{k}"), || {
                        format!("must be a number ≥ 0, got {v}")
                    })?;
                }
            }
            check(
                c.profile_trace.is_some() || given.iter().any(|(_, v)| v.is_some()),
                "cloud.pass_ms",
                || {
                    "missing: give the pass times (pass_ms, per_session_ms, per_token_ms, verify_extra_ms) or profile_trace".into()
                },
            )?;
        }
        check(
            self.report.slo_ttft_ms.is_none() || self.report.slo_tpot_ms.is_some(),
            "report.slo_ttft_ms",
            || "give slo_tpot_ms too: capacity and goodput are defined by TPOT".into(),
        )?;
        Ok(Grid {
            transport,
            verifier,
            links,
            entries,
        })
    }

    /// An `early_exit` cell needs a verifier with exits, and one it may act on.
    fn validate_exits(&self, entries: &[GridEntry], in_process: bool) -> Result<(), Invalid> {
        let offered: Vec<u32> = match (&self.models, &self.simulation) {
            (_, Some(sim)) => sim.early_exit_at.map(|_| 0).into_iter().collect(),
            (Some(m), None) if in_process => {
                m.early_exit_layers.iter().map(|&l| l as u32).collect()
            }
            _ => return Ok(()), // a running verifier says in its Info
        };
        for (i, e) in entries.iter().enumerate() {
            for s in &e.strategies {
                let Strategy::EarlyExit { exit, .. } = s else {
                    continue;
                };
                check(!offered.is_empty(), &format!("strategy[{i}].kind"), || {
                    "early_exit needs a verifier with early exits: [models] early_exit_layers (or [simulation] early_exit_at)".into()
                })?;
                if let Some(l) = exit {
                    check(
                        offered.contains(l),
                        &format!("strategy[{i}].exit_layer"),
                        || format!("the verifier has no exit after layer {l} (it has {offered:?})"),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// A simulated `tree` cell needs the acceptance of later siblings.
    fn validate_sim_trees(&self, entries: &[GridEntry]) -> Result<(), Invalid> {
        let Some(sim) = &self.simulation else {
            return Ok(());
        };
        for e in entries {
            for s in &e.strategies {
                if !matches!(s, Strategy::Tree { .. }) {
                    continue;
                }
                check(
                    !sim.sibling_acceptance.is_empty(),
                    "simulation.sibling_acceptance",
                    || {
                        "missing: a simulated tree needs the acceptance of a row's later candidates (rank 1, 2, …), e.g. [0.3, 0.15]".into()
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Each claim names two cells of the grid and a reduction.
    fn validate_claims(&self, entries: &[GridEntry]) -> Result<(), Invalid> {
        let names: Vec<String> = entries
            .iter()
            .flat_map(|e| {
                e.strategies.iter().map(|s| match e.kind {
                    StrategyKind::Routed => "routed".to_string(),
                    _ => s.to_string(),
                })
            })
            .collect();
        for (i, c) in self.claims.iter().enumerate() {
            for (key, name) in [("strategy", &c.strategy), ("baseline", &c.baseline)] {
                check(names.contains(name), &format!("claim[{i}].{key}"), || {
                    format!(
                        "{name:?} is not a cell of the grid (cells: {})",
                        names.join(", ")
                    )
                })?;
            }
            check(
                c.paper.is_finite() && c.paper < 1.0,
                &format!("claim[{i}].paper"),
                || {
                    format!(
                        "a reduction is a fraction below 1 (0.35 for 35 %), got {}",
                        c.paper
                    )
                },
            )?;
            check(
                c.baseline_extra_ms.is_finite() && c.baseline_extra_ms >= 0.0,
                &format!("claim[{i}].baseline_extra_ms"),
                || format!("must be ≥ 0, got {}", c.baseline_extra_ms),
            )?;
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
    /// This entry, resolved (`i` is its index, for messages).
    fn resolve(&self, i: usize) -> Result<GridEntry, Invalid> {
        let kind = self.kind(i)?;
        let mut strategies = self.expand(i, kind)?;
        let router = match kind {
            StrategyKind::Routed => {
                // One cell, named by its default tier; the router picks per request.
                let router = self.router(i)?;
                strategies.push(router.default_tier());
                Some(Arc::new(router))
            }
            _ => None,
        };
        Ok(GridEntry {
            kind,
            strategies,
            router,
        })
    }

    /// The router of a `routed` entry (defaults when `[strategy.route]` is absent).
    fn router(&self, i: usize) -> Result<Router, Invalid> {
        let spec = match &self.route {
            Some(r) => r.clone(),
            None => tandem_draft::route::RouteSpec::default(),
        };
        Router::new(&spec).map_err(|(k, message)| Invalid {
            key: format!("strategy[{i}].route.{k}"),
            message,
        })
    }

    /// The kind of this grid entry (`i` is its index, for messages).
    fn kind(&self, i: usize) -> Result<StrategyKind, Invalid> {
        StrategyKind::parse(&self.kind).ok_or_else(|| Invalid {
            key: format!("strategy[{i}].kind"),
            message: format!(
                "unknown strategy {:?}: expected one of {}",
                self.kind,
                StrategyKind::names()
            ),
        })
    }

    /// The strategies of this grid entry (`i` is its index, for messages); none for a
    /// routed one, whose tiers its router holds.
    fn expand(&self, i: usize, kind: StrategyKind) -> Result<Vec<Strategy>, Invalid> {
        let key = |k: &str| format!("strategy[{i}].{k}");
        let ks = self.k.as_ref().map(|k| k.values());
        let policies = self.policy.as_ref().map(|p| p.values());
        let exits: Vec<Option<u32>> = match &self.exit_layer {
            None => vec![None],
            Some(_) if kind != StrategyKind::EarlyExit => {
                return bad(
                    key("exit_layer"),
                    format!("{kind} takes no exit_layer (only early_exit does)"),
                );
            }
            Some(l) => l.values().into_iter().map(Some).collect(),
        };
        check(!exits.is_empty(), &key("exit_layer"), || {
            "the list is empty".into()
        })?;
        if self.route.is_some() && kind != StrategyKind::Routed {
            return bad(
                key("route"),
                format!("{kind} takes no route (only routed does)"),
            );
        }
        if self.tree.is_some() && kind != StrategyKind::Tree {
            return bad(
                key("tree"),
                format!("{kind} takes no tree (only tree does)"),
            );
        }
        match kind {
            StrategyKind::Routed => {
                if ks.is_some() || policies.is_some() {
                    let which = if ks.is_some() { "k" } else { "policy" };
                    return bad(key(which), "routed takes its tiers from [strategy.route]");
                }
                Ok(Vec::new())
            }
            StrategyKind::Speculative | StrategyKind::Pipelined | StrategyKind::EarlyExit => {
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
                let mut out = Vec::new();
                for &k in &ks {
                    check((1..=32).contains(&k), &key("k"), || {
                        format!("must be between 1 and 32, got {k}")
                    })?;
                    for &exit in &exits {
                        out.push(match kind {
                            StrategyKind::Speculative => Strategy::Speculative { k },
                            StrategyKind::Pipelined => Strategy::Pipelined { k },
                            _ => Strategy::EarlyExit { k, exit },
                        });
                    }
                }
                Ok(out)
            }
            StrategyKind::Adaptive => {
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
            StrategyKind::Tree => {
                if ks.is_some() || policies.is_some() {
                    let which = if ks.is_some() { "k" } else { "policy" };
                    return bad(
                        key(which),
                        "tree takes a shape, not k or a policy (e.g. tree = \"3,2,1\")",
                    );
                }
                let shapes = self
                    .tree
                    .as_ref()
                    .map_or(vec!["auto".into()], |t| t.values());
                check(!shapes.is_empty(), &key("tree"), || {
                    "the list is empty".into()
                })?;
                shapes
                    .iter()
                    .map(|t| {
                        TreeShape::from_str(t)
                            .map(|shape| Strategy::Tree { shape })
                            .or_else(|e| bad(key("tree"), e))
                    })
                    .collect()
            }
            StrategyKind::CloudOnly | StrategyKind::EdgeOnly => {
                if ks.is_some() || policies.is_some() {
                    let which = if ks.is_some() { "k" } else { "policy" };
                    return bad(key(which), format!("{kind} takes neither k nor a policy"));
                }
                Ok(vec![if kind == StrategyKind::CloudOnly {
                    Strategy::CloudOnly
                } else {
                    Strategy::EdgeOnly
                }])
            }
        }
    }
}
