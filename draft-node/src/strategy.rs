//! What the edge does, per request and per round.

use std::fmt;

use tandem_decoding::TreeShape;
use tandem_decoding::policy::PolicySpec;
use tandem_decoding::tree_shape::DEFAULT_AUTO_NODES;

/// A generation strategy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// The verifier generates alone and streams its tokens; no draft model.
    CloudOnly,
    /// The draft model generates alone; no verifier.
    EdgeOnly,
    /// Draft `k` tokens, wait for the verdict, repeat.
    Speculative {
        /// Draft length.
        k: usize,
    },
    /// Like `Speculative`, with the draft length chosen each round by a policy.
    Adaptive {
        /// The policy.
        policy: PolicySpec,
    },
    /// Keep drafting the next block (after a guessed bonus token) while a block is in
    /// flight; keep it if the verdict confirms the guess, drop it otherwise.
    Pipelined {
        /// Draft length.
        k: usize,
    },
    /// Early exit (arXiv 2505.21594): while a block is in flight, draft the next one on
    /// the verifier's provisional verdict (read off an intermediate layer mid-pass) and
    /// send it at once; keep it if the final verdict agrees, drop it otherwise. Against
    /// a verifier without early exits it is `speculative`.
    EarlyExit {
        /// Draft length.
        k: usize,
        /// Act on the provisional verdict of the exit after this layer (the verifier
        /// sends one per exit); `None`: on the first to come.
        exit: Option<u32>,
    },
    /// Draft a token tree, wait for the verdict on its best path, repeat: more tokens
    /// committed per round trip where the draft is unsure.
    Tree {
        /// The tree each round: a static shape, EAGLE-2's dynamic tree, or sized by the
        /// link.
        shape: TreeShape,
    },
}

/// The kinds of strategy, as `--strategy` and an experiment's `kind` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    /// [`Strategy::CloudOnly`].
    CloudOnly,
    /// [`Strategy::EdgeOnly`].
    EdgeOnly,
    /// [`Strategy::Speculative`].
    Speculative,
    /// [`Strategy::Adaptive`].
    Adaptive,
    /// [`Strategy::Pipelined`].
    Pipelined,
    /// [`Strategy::EarlyExit`].
    EarlyExit,
    /// [`Strategy::Tree`].
    Tree,
    /// A strategy per request, picked by rules ([`crate::route`]).
    Routed,
}

impl StrategyKind {
    /// Every kind.
    pub const ALL: [StrategyKind; 8] = [
        StrategyKind::CloudOnly,
        StrategyKind::EdgeOnly,
        StrategyKind::Speculative,
        StrategyKind::Adaptive,
        StrategyKind::Pipelined,
        StrategyKind::EarlyExit,
        StrategyKind::Tree,
        StrategyKind::Routed,
    ];

    /// Its name: `cloud_only`, `edge_only`, `speculative`, `adaptive`, `pipelined`,
    /// `early_exit`, `tree`, `routed`.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::CloudOnly => "cloud_only",
            StrategyKind::EdgeOnly => "edge_only",
            StrategyKind::Speculative => "speculative",
            StrategyKind::Adaptive => "adaptive",
            StrategyKind::Pipelined => "pipelined",
            StrategyKind::EarlyExit => "early_exit",
            StrategyKind::Tree => "tree",
            StrategyKind::Routed => "routed",
        }
    }

    /// The kind a name stands for (`-` and `_` alike), if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.replace('-', "_");
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Every name, for messages: "cloud_only, edge_only, ...".
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Strategy {
    /// Builds a strategy from its name, `k` and (for `adaptive`) a policy; `tree` is
    /// sized by the link (`auto`) until its shape is set.
    pub fn from_parts(name: &str, k: usize, policy: Option<PolicySpec>) -> Result<Self, String> {
        let need_k = |k: usize| {
            if k == 0 {
                Err(format!("--strategy {name} needs --k of at least 1"))
            } else {
                Ok(k)
            }
        };
        Ok(match StrategyKind::parse(name) {
            Some(StrategyKind::CloudOnly) => Self::CloudOnly,
            Some(StrategyKind::EdgeOnly) => Self::EdgeOnly,
            Some(StrategyKind::Speculative) => Self::Speculative { k: need_k(k)? },
            Some(StrategyKind::Pipelined) => Self::Pipelined { k: need_k(k)? },
            Some(StrategyKind::EarlyExit) => Self::EarlyExit {
                k: need_k(k)?,
                exit: None,
            },
            Some(StrategyKind::Adaptive) => Self::Adaptive {
                policy: policy.unwrap_or(PolicySpec::PlusTwoMinusOne { max_k: 8 }),
            },
            Some(StrategyKind::Tree) => Self::Tree {
                shape: TreeShape::Auto {
                    max_nodes: DEFAULT_AUTO_NODES,
                },
            },
            Some(StrategyKind::Routed) => {
                return Err(format!(
                    "'{name}' picks a strategy per request: it is not one itself"
                ));
            }
            None => {
                return Err(format!(
                    "unknown strategy '{name}': expected one of {}",
                    StrategyKind::names()
                ));
            }
        })
    }

    /// Whether it runs the draft model (fallback aside).
    pub fn needs_draft(&self) -> bool {
        !matches!(self, Self::CloudOnly)
    }

    /// Whether it talks to a verifier.
    pub fn needs_verifier(&self) -> bool {
        !matches!(self, Self::EdgeOnly)
    }

    /// The policy that picks each round's draft length.
    pub fn policy(&self) -> PolicySpec {
        match *self {
            Self::Speculative { k } | Self::Pipelined { k } | Self::EarlyExit { k, .. } => {
                PolicySpec::Fixed { k }
            }
            Self::Adaptive { policy } => policy,
            Self::Tree { shape } => PolicySpec::Fixed {
                k: shape.max_depth(),
            },
            Self::CloudOnly | Self::EdgeOnly => PolicySpec::Fixed { k: 1 },
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CloudOnly => write!(f, "cloud_only"),
            Self::EdgeOnly => write!(f, "edge_only"),
            Self::Speculative { k } => write!(f, "speculative(k={k})"),
            Self::Adaptive { policy } => write!(f, "adaptive({policy})"),
            Self::Pipelined { k } => write!(f, "pipelined(k={k})"),
            Self::EarlyExit { k, exit: None } => write!(f, "early_exit(k={k})"),
            Self::EarlyExit { k, exit: Some(l) } => write!(f, "early_exit(k={k},exit={l})"),
            Self::Tree { shape } => write!(f, "tree({shape})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_are_explained() {
        assert_eq!(
            Strategy::from_parts("speculative", 4, None).unwrap(),
            Strategy::Speculative { k: 4 }
        );
        assert_eq!(
            Strategy::from_parts("cloud-only", 0, None).unwrap(),
            Strategy::CloudOnly
        );
        assert!(
            Strategy::from_parts("pipelined", 0, None)
                .unwrap_err()
                .contains("--k")
        );
        assert!(
            Strategy::from_parts("eagle", 4, None)
                .unwrap_err()
                .contains("cloud_only")
        );
        assert!(!Strategy::CloudOnly.needs_draft() && !Strategy::EdgeOnly.needs_verifier());
    }
}
