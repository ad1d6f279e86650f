//! The `routed` strategy: per request, a tier chosen by rules, in order:
//!
//! 1. a prompt tagged `private` runs on the edge alone (`private`, default `edge_only`:
//!    it never leaves the device, and its records show zero bytes sent);
//! 2. a request whose own latency SLO is under `tight_slo_ms` runs the `tight_slo` tier
//!    (default `edge_only`: a round trip to the cloud alone may break it);
//! 3. a prompt carrying a tag named in `[tags]` runs that tag's tier (its tags in its
//!    own order; the first with a rule wins), e.g. `classification = "edge_only"`,
//!    `synthesis = "cloud_only"`;
//! 4. a prompt longer than `long_prompt_tokens` goes to the `long` tier (default
//!    `cloud_only`: a long prefill belongs where the big model is);
//! 5. if the analytical model (`tandem_decoding::analytic`) predicts that the `default`
//!    tier misses the time-per-output-token SLO on this link, the `over_slo` tier
//!    (default `cloud_only`);
//! 6. otherwise the `default` tier (default `speculative:4`).
//!
//! A prompt's tag is one tag or several, comma-separated (`"private"`,
//! `"code,long-form"`). Tiers are written `cloud_only`, `edge_only`, `speculative:K`,
//! `pipelined:K` or `adaptive:POLICY`. The rules run on the edge (`draft-node generate
//! --strategy routed --route FILE --tag TAG --slo-ms MS`), so a private prompt is never
//! sent to decide its route; experiments give the same rules as `[strategy.route]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tandem_decoding::analytic::{Link, SystemModel, VerifyCost, WireCost};
use tandem_decoding::policy::PolicySpec;
use tandem_protocol::LinkProfile;

use crate::Strategy;

/// The rules of a `routed` strategy: a TOML table (an experiment's `[strategy.route]`,
/// or the file `draft-node generate --route` reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Tier of prompts tagged `private`.
    #[serde(default = "edge_only")]
    pub private: String,
    /// Requests whose own latency SLO is under this many ms go to `tight_slo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tight_slo_ms: Option<f64>,
    /// Tier of requests with a tight SLO.
    #[serde(default = "edge_only")]
    pub tight_slo: String,
    /// A tier per tag (`code = "cloud_only"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Prompts longer than this many tokens go to `long`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_prompt_tokens: Option<usize>,
    /// Tier of long prompts.
    #[serde(default = "cloud_only")]
    pub long: String,
    /// Time-per-output-token SLO, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_tpot_ms: Option<f64>,
    /// Tier when `default` is predicted to miss the SLO.
    #[serde(default = "cloud_only")]
    pub over_slo: String,
    /// Tier otherwise.
    #[serde(default = "speculative_4")]
    pub default: String,
    /// The prediction's per-token acceptance probability α.
    #[serde(default = "alpha")]
    pub alpha: f64,
    /// The prediction's draft step, ms.
    #[serde(default = "draft_ms")]
    pub draft_ms: f64,
    /// The prediction's target decoding step, ms.
    #[serde(default = "target_ms")]
    pub target_ms: f64,
    /// The prediction's verification pass, ms.
    #[serde(default = "verify_ms")]
    pub verify_ms: f64,
}

fn edge_only() -> String {
    "edge_only".into()
}
fn cloud_only() -> String {
    "cloud_only".into()
}
fn speculative_4() -> String {
    "speculative:4".into()
}
// Defaults measured on the shipped tiny pair (2 CPU cores): acceptance about 0.75, a
// draft step 0.1 ms, a target step 0.5 ms, a 5-token verification pass 0.7 ms.
fn alpha() -> f64 {
    0.75
}
fn draft_ms() -> f64 {
    0.1
}
fn target_ms() -> f64 {
    0.5
}
fn verify_ms() -> f64 {
    0.7
}

/// Parses a tier: `cloud_only`, `edge_only`, `speculative:K`, `pipelined:K`,
/// `early_exit:K`, `adaptive:POLICY`, `tree:SHAPE` (`tree:3,2,1`, `tree:dynamic:16`,
/// `tree:auto`).
pub fn parse_tier(s: &str) -> Result<Strategy, String> {
    let (name, arg) = match s.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (s, None),
    };
    let k = |a: Option<&str>| -> Result<usize, String> {
        let a = a.ok_or_else(|| format!("tier {s:?} needs k, e.g. {name}:4"))?;
        a.parse::<usize>()
            .ok()
            .filter(|k| (1..=32).contains(k))
            .ok_or_else(|| format!("k in tier {s:?} must be between 1 and 32"))
    };
    match name {
        "cloud_only" | "edge_only" if arg.is_none() => Strategy::from_parts(name, 0, None),
        "speculative" | "pipelined" | "early_exit" => Strategy::from_parts(name, k(arg)?, None),
        "adaptive" => {
            let policy: PolicySpec = arg.unwrap_or("+2/-1:8").parse()?;
            Strategy::from_parts(name, 0, Some(policy))
        }
        "tree" => Ok(Strategy::Tree {
            shape: arg.unwrap_or("auto").parse()?,
        }),
        _ => Err(format!(
            "unknown tier {s:?}: expected cloud_only, edge_only, speculative:K, pipelined:K, early_exit:K, adaptive:POLICY or tree:SHAPE"
        )),
    }
}

impl Default for RouteSpec {
    /// Every key at its default.
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

impl RouteSpec {
    /// Reads the rules from a TOML file; an error names the file and the key.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the route: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message().trim()))
    }
}

/// What `--strategy` names: one strategy, or a router that picks one per request.
#[derive(Debug, Clone)]
pub enum Choice {
    /// Every request runs this.
    One(Strategy),
    /// Each request runs the tier its router picks.
    Routed(Box<Router>),
}

impl Choice {
    /// Whether some request may run the draft model.
    pub fn needs_draft(&self) -> bool {
        match self {
            Choice::One(s) => s.needs_draft(),
            Choice::Routed(r) => r.tiers().iter().any(Strategy::needs_draft),
        }
    }

    /// Whether some request may talk to the verifier.
    pub fn needs_verifier(&self) -> bool {
        match self {
            Choice::One(s) => s.needs_verifier(),
            Choice::Routed(r) => r.tiers().iter().any(Strategy::needs_verifier),
        }
    }

    /// The strategy of `request` over `link`, and (when routed) why.
    pub fn pick(
        &self,
        request: &Request<'_>,
        link: &LinkProfile,
    ) -> (Strategy, Option<RouteReason>) {
        match self {
            Choice::One(s) => (*s, None),
            Choice::Routed(r) => {
                let (tier, why) = r.pick(request, link);
                (tier, Some(why))
            }
        }
    }
}

/// What the rules look at in a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// Its tag: one or several, comma-separated.
    pub tag: &'a str,
    /// Its prompt's length in tokens.
    pub prompt_tokens: usize,
    /// Its own latency SLO, ms, if it has one.
    pub slo_ms: Option<f64>,
}

impl<'a> Request<'a> {
    /// Its tags, in order.
    pub fn tags(&self) -> impl Iterator<Item = &'a str> {
        self.tag.split(',').map(str::trim).filter(|t| !t.is_empty())
    }
}

/// A validated route.
#[derive(Debug, Clone, PartialEq)]
pub struct Router {
    private: Strategy,
    tight_slo_ms: Option<f64>,
    tight_slo: Strategy,
    tags: BTreeMap<String, Strategy>,
    long_prompt_tokens: Option<usize>,
    long: Strategy,
    slo_tpot_ms: Option<f64>,
    over_slo: Strategy,
    default: Strategy,
    spec: RouteSpec,
}

/// Why a tier was chosen (the `route` column of an experiment's results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteReason {
    /// The prompt is tagged `private`.
    Private,
    /// The request's own SLO is under `tight_slo_ms`.
    TightSlo,
    /// The prompt carries a tag with a rule.
    Tag,
    /// The prompt is longer than `long_prompt_tokens`.
    LongPrompt,
    /// The `default` tier is predicted to miss the SLO on this link.
    OverSlo,
    /// None of the above.
    Default,
}

impl RouteReason {
    /// Its name in results: `private`, `tight SLO`, `tag`, `long prompt`, `over SLO`,
    /// `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteReason::Private => "private",
            RouteReason::TightSlo => "tight SLO",
            RouteReason::Tag => "tag",
            RouteReason::LongPrompt => "long prompt",
            RouteReason::OverSlo => "over SLO",
            RouteReason::Default => "default",
        }
    }
}

impl std::fmt::Display for RouteReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Router {
    /// Checks every tier and number; errors name the key (relative to the table).
    pub fn new(spec: &RouteSpec) -> Result<Self, (String, String)> {
        let tier = |key: &str, v: &str| parse_tier(v).map_err(|e| (key.to_string(), e));
        for (key, v) in [
            ("alpha", spec.alpha),
            ("draft_ms", spec.draft_ms),
            ("target_ms", spec.target_ms),
            ("verify_ms", spec.verify_ms),
        ] {
            if !(v.is_finite() && v >= 0.0) || (key == "alpha" && v > 1.0) {
                return Err((key.into(), format!("must be ≥ 0 (α ≤ 1), got {v}")));
            }
        }
        for (key, v) in [
            ("slo_tpot_ms", spec.slo_tpot_ms),
            ("tight_slo_ms", spec.tight_slo_ms),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err((key.into(), format!("must be > 0, got {v}")));
            }
        }
        let mut tags = BTreeMap::new();
        for (tag, v) in &spec.tags {
            if tag == "private" {
                return Err((
                    format!("tags.{tag}"),
                    "private has its own rule (the `private` key), which comes first".into(),
                ));
            }
            tags.insert(tag.clone(), tier(&format!("tags.{tag}"), v)?);
        }
        Ok(Self {
            private: tier("private", &spec.private)?,
            tight_slo_ms: spec.tight_slo_ms,
            tight_slo: tier("tight_slo", &spec.tight_slo)?,
            tags,
            long_prompt_tokens: spec.long_prompt_tokens,
            long: tier("long", &spec.long)?,
            slo_tpot_ms: spec.slo_tpot_ms,
            over_slo: tier("over_slo", &spec.over_slo)?,
            default: tier("default", &spec.default)?,
            spec: spec.clone(),
        })
    }

    /// The tier for `request` over `link`, and why (the rules in the module's order).
    pub fn pick(&self, request: &Request<'_>, link: &LinkProfile) -> (Strategy, RouteReason) {
        if request.tags().any(|t| t == "private") {
            return (self.private, RouteReason::Private);
        }
        if let (Some(limit), Some(slo)) = (self.tight_slo_ms, request.slo_ms)
            && slo < limit
        {
            return (self.tight_slo, RouteReason::TightSlo);
        }
        if let Some(tier) = request.tags().find_map(|t| self.tags.get(t)) {
            return (*tier, RouteReason::Tag);
        }
        if self
            .long_prompt_tokens
            .is_some_and(|n| request.prompt_tokens > n)
        {
            return (self.long, RouteReason::LongPrompt);
        }
        if let Some(slo) = self.slo_tpot_ms
            && self.predicted_tpot_ms(self.default, link) > slo
        {
            return (self.over_slo, RouteReason::OverSlo);
        }
        (self.default, RouteReason::Default)
    }

    /// The analytical model's time per output token for `tier` over `link`, ms.
    pub fn predicted_tpot_ms(&self, tier: Strategy, link: &LinkProfile) -> f64 {
        let bytes_per_s = |mbps: f64| {
            if mbps > 0.0 {
                mbps * 1e6 / 8.0
            } else {
                f64::INFINITY
            }
        };
        let s = &self.spec;
        let model = SystemModel {
            alpha: s.alpha,
            draft_token_s: s.draft_ms / 1e3,
            target_token_s: s.target_ms / 1e3,
            verify: VerifyCost {
                fixed_s: s.verify_ms / 1e3,
                per_token_s: 0.0,
            },
            link: Link {
                rtt_s: link.rtt().as_secs_f64(),
                up_bytes_per_s: bytes_per_s(link.up_mbps),
                down_bytes_per_s: bytes_per_s(link.down_mbps),
            },
            // A greedy block: framing plus a varint per token; a verdict.
            wire: WireCost {
                up_fixed_bytes: 24.0,
                up_per_token_bytes: 2.0,
                down_bytes: 24.0,
            },
        };
        let tpot_s = match tier {
            Strategy::CloudOnly => model.cloud_only_tpot_s(),
            Strategy::EdgeOnly => model.edge_only_tpot_s(),
            Strategy::Speculative { k } => model.speculative_tpot_s(k),
            Strategy::Pipelined { k } => model.pipelined_tpot_s(k),
            // The analytical model knows no early exits: at worst it is speculative.
            Strategy::EarlyExit { k, .. } => model.speculative_tpot_s(k),
            Strategy::Adaptive { .. } => model.best_k(8).1,
            // The analytical model prices chains: a tree as the chain of its depth.
            Strategy::Tree { shape } => model.speculative_tpot_s(shape.max_depth()),
        };
        tpot_s * 1e3
    }

    /// The tier of a request no rule catches.
    pub fn default_tier(&self) -> Strategy {
        self.default
    }

    /// Every tier this route may choose (each needs a draft model or a verifier).
    pub fn tiers(&self) -> Vec<Strategy> {
        let fixed = [
            self.private,
            self.tight_slo,
            self.long,
            self.over_slo,
            self.default,
        ];
        fixed
            .into_iter()
            .chain(self.tags.values().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RouteSpec {
        toml::from_str("long_prompt_tokens = 100\nslo_tpot_ms = 2.0").unwrap()
    }

    #[test]
    fn tiers_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_tier("speculative:4"),
            Ok(Strategy::Speculative { k: 4 })
        );
        assert_eq!(parse_tier("cloud_only"), Ok(Strategy::CloudOnly));
        assert!(parse_tier("speculative").unwrap_err().contains("needs k"));
        assert!(parse_tier("teleport").unwrap_err().contains("unknown tier"));
        let bad = RouteSpec {
            default: "pipelined:99".into(),
            ..spec()
        };
        assert_eq!(Router::new(&bad).unwrap_err().0, "default");
    }

    #[test]
    fn rules_apply_in_order() {
        let r = Router::new(&spec()).unwrap();
        let lan: LinkProfile = "lan".parse().unwrap();
        let wan: LinkProfile = "wan".parse().unwrap();
        let req = |tag, prompt_tokens| Request {
            tag,
            prompt_tokens,
            slo_ms: None,
        };
        assert_eq!(
            r.pick(&req("private", 500), &wan),
            (Strategy::EdgeOnly, RouteReason::Private)
        );
        assert_eq!(
            r.pick(&req("public", 101), &lan),
            (Strategy::CloudOnly, RouteReason::LongPrompt)
        );
        assert_eq!(r.pick(&req("public", 100), &lan).1, RouteReason::Default);
        // Over the WAN every speculative round pays tens of ms: the SLO of 2 ms per
        // token cannot hold, as the model itself predicts.
        assert!(r.predicted_tpot_ms(Strategy::Speculative { k: 4 }, &wan) > 2.0);
        assert_eq!(
            r.pick(&req("public", 10), &wan),
            (Strategy::CloudOnly, RouteReason::OverSlo)
        );
    }

    /// The seed's decision matrix: tasks by tag, a tight latency SLO kept local, privacy
    /// above everything.
    #[test]
    fn tags_and_a_tight_slo_route_as_the_decision_matrix_does() {
        let spec: RouteSpec = toml::from_str(
            r#"
tight_slo_ms = 100
long_prompt_tokens = 100
[tags]
classification = "edge_only"
extraction = "edge_only"
synthesis = "cloud_only"
code = "speculative:6"
"#,
        )
        .unwrap();
        let r = Router::new(&spec).unwrap();
        let lan: LinkProfile = "lan".parse().unwrap();
        let pick = |tag, prompt_tokens, slo_ms| {
            r.pick(
                &Request {
                    tag,
                    prompt_tokens,
                    slo_ms,
                },
                &lan,
            )
        };
        assert_eq!(
            pick("classification", 10, None),
            (Strategy::EdgeOnly, RouteReason::Tag)
        );
        assert_eq!(
            pick("synthesis", 10, Some(500.0)),
            (Strategy::CloudOnly, RouteReason::Tag)
        );
        // A prompt's first tag with a rule wins; a tag rule comes before prompt length.
        assert_eq!(
            pick("draft, code, synthesis", 500, None),
            (Strategy::Speculative { k: 6 }, RouteReason::Tag)
        );
        // An SLO under 100 ms keeps even a synthesis task local; privacy comes first.
        assert_eq!(
            pick("synthesis", 10, Some(80.0)),
            (Strategy::EdgeOnly, RouteReason::TightSlo)
        );
        assert_eq!(
            pick("code,private", 10, Some(500.0)).1,
            RouteReason::Private
        );
        assert_eq!(pick("chat", 10, Some(100.0)).1, RouteReason::Default);
        assert_eq!(pick("chat", 101, None).1, RouteReason::LongPrompt);
        assert!(r.tiers().contains(&Strategy::Speculative { k: 6 }));
        // A rule for `private` would be ambiguous; a bad tier names its tag.
        let bad: RouteSpec = toml::from_str("[tags]\nprivate = \"cloud_only\"").unwrap();
        assert_eq!(Router::new(&bad).unwrap_err().0, "tags.private");
        let bad: RouteSpec = toml::from_str("[tags]\ncode = \"gpu\"").unwrap();
        assert_eq!(Router::new(&bad).unwrap_err().0, "tags.code");
        let bad: RouteSpec = toml::from_str("tight_slo_ms = 0").unwrap();
        assert_eq!(Router::new(&bad).unwrap_err().0, "tight_slo_ms");
    }
}
