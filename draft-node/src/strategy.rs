//! What the edge does, per request and per round.

use std::fmt;

use tandem_decoding::policy::PolicySpec;

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
}

/// Strategy names, as `--strategy` takes them.
pub const NAMES: &[&str] = &[
    "cloud_only",
    "edge_only",
    "speculative",
    "adaptive",
    "pipelined",
];

impl Strategy {
    /// Builds a strategy from its name, `k` and (for `adaptive`) a policy.
    pub fn from_parts(name: &str, k: usize, policy: Option<PolicySpec>) -> Result<Self, String> {
        let need_k = |k: usize| {
            if k == 0 {
                Err(format!("--strategy {name} needs --k of at least 1"))
            } else {
                Ok(k)
            }
        };
        Ok(match name.replace('-', "_").as_str() {
            "cloud_only" => Self::CloudOnly,
            "edge_only" => Self::EdgeOnly,
            "speculative" => Self::Speculative { k: need_k(k)? },
            "pipelined" => Self::Pipelined { k: need_k(k)? },
            "adaptive" => Self::Adaptive {
                policy: policy.unwrap_or(PolicySpec::PlusTwoMinusOne { max_k: 8 }),
            },
            _ => {
                return Err(format!(
                    "unknown strategy '{name}': expected one of {}",
                    NAMES.join(", ")
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
            Self::Speculative { k } | Self::Pipelined { k } => PolicySpec::Fixed { k },
            Self::Adaptive { policy } => policy,
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
