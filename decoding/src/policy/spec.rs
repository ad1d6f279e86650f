//! Policies by name, as written on command lines and in experiment configs.

use std::fmt;
use std::str::FromStr;

use super::{Confidence, DraftLengthPolicy, Fixed, Goodput, PlusTwoMinusOne};

/// A draft-length policy and its parameters.
///
/// Text forms: `fixed:K`, `+2/-1[:MAX]` (also `heuristic`), `p_min:P[:MAX]`,
/// `goodput[:MAX]`. `MAX` defaults to 8.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PolicySpec {
    /// [`Fixed`].
    Fixed {
        /// The draft length.
        k: usize,
    },
    /// [`PlusTwoMinusOne`], starting at 4 (`min(4, max_k)`).
    PlusTwoMinusOne {
        /// Upper bound.
        max_k: usize,
    },
    /// [`Confidence`].
    Confidence {
        /// Minimum top-1 probability.
        p_min: f32,
        /// Upper bound.
        max_k: usize,
    },
    /// [`Goodput`], starting at 4 (`min(4, max_k)`).
    Goodput {
        /// Upper bound.
        max_k: usize,
    },
}

/// Default upper bound on the draft length for adaptive policies.
pub const DEFAULT_MAX_K: usize = 8;

impl PolicySpec {
    /// A fresh policy with these parameters.
    pub fn build(&self) -> Box<dyn DraftLengthPolicy> {
        match *self {
            Self::Fixed { k } => Box::new(Fixed { k }),
            Self::PlusTwoMinusOne { max_k } => Box::new(PlusTwoMinusOne::new(4, 1, max_k)),
            Self::Confidence { p_min, max_k } => Box::new(Confidence { p_min, max_k }),
            Self::Goodput { max_k } => Box::new(Goodput::new(4, max_k)),
        }
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed { k } => write!(f, "fixed:{k}"),
            Self::PlusTwoMinusOne { max_k } => write!(f, "+2/-1:{max_k}"),
            Self::Confidence { p_min, max_k } => write!(f, "p_min:{p_min}:{max_k}"),
            Self::Goodput { max_k } => write!(f, "goodput:{max_k}"),
        }
    }
}

impl FromStr for PolicySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.trim().split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let num = |i: usize, what: &str| -> Result<Option<f64>, String> {
            args.get(i)
                .map(|a| {
                    a.parse::<f64>()
                        .map_err(|_| format!("{what} in policy '{s}' is not a number: '{a}'"))
                })
                .transpose()
        };
        let max_k = |i: usize| -> Result<usize, String> {
            match num(i, "max k")? {
                None => Ok(DEFAULT_MAX_K),
                Some(k) if k >= 1.0 && k.fract() == 0.0 => Ok(k as usize),
                Some(k) => Err(format!(
                    "max k in policy '{s}' must be a whole number >= 1, got {k}"
                )),
            }
        };
        let too_many = |n: usize| args.len() > n;
        let spec = match name {
            "fixed" if !too_many(1) => match num(0, "k")? {
                Some(k) if k >= 0.0 && k.fract() == 0.0 => Self::Fixed { k: k as usize },
                Some(k) => {
                    return Err(format!(
                        "k in policy '{s}' must be a whole number >= 0, got {k}"
                    ));
                }
                None => return Err(format!("policy '{s}' needs k, e.g. fixed:4")),
            },
            "+2/-1" | "heuristic" if !too_many(1) => Self::PlusTwoMinusOne { max_k: max_k(0)? },
            "p_min" if !too_many(2) => match num(0, "p_min")? {
                Some(p) if (0.0..=1.0).contains(&p) => Self::Confidence {
                    p_min: p as f32,
                    max_k: max_k(1)?,
                },
                Some(p) => return Err(format!("p_min in policy '{s}' must be in [0, 1], got {p}")),
                None => return Err(format!("policy '{s}' needs a probability, e.g. p_min:0.6")),
            },
            "goodput" if !too_many(1) => Self::Goodput { max_k: max_k(0)? },
            "fixed" | "+2/-1" | "heuristic" | "p_min" | "goodput" => {
                return Err(format!("policy '{s}' has too many ':' parameters"));
            }
            _ => {
                return Err(format!(
                    "unknown draft-length policy '{name}': expected fixed:K, +2/-1[:MAX], p_min:P[:MAX] or goodput[:MAX]"
                ));
            }
        };
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_round_trips_through_display() {
        let cases = [
            ("fixed:4", PolicySpec::Fixed { k: 4 }),
            ("+2/-1", PolicySpec::PlusTwoMinusOne { max_k: 8 }),
            ("heuristic:12", PolicySpec::PlusTwoMinusOne { max_k: 12 }),
            (
                "p_min:0.6",
                PolicySpec::Confidence {
                    p_min: 0.6,
                    max_k: 8,
                },
            ),
            (
                "p_min:0.75:5",
                PolicySpec::Confidence {
                    p_min: 0.75,
                    max_k: 5,
                },
            ),
            ("goodput:16", PolicySpec::Goodput { max_k: 16 }),
        ];
        for (text, want) in cases {
            let got: PolicySpec = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string().parse::<PolicySpec>().unwrap(), want);
        }
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        for (text, needle) in [
            ("fixed", "needs k"),
            ("fixed:x", "not a number"),
            ("fixed:2.5", "whole number"),
            ("p_min:1.5", "[0, 1]"),
            ("goodput:0", ">= 1"),
            ("fixed:2:3", "too many"),
            ("eagle", "unknown draft-length policy 'eagle'"),
        ] {
            let err = text.parse::<PolicySpec>().unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
