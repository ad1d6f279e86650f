//! Self-drafting: a draft made of a subset of the target's own layers (LayerSkip, Draft &
//! Verify, SWIFT). The draft shares the target's embedding, final norm, LM head and
//! tokenizer, so it proposes in the target's vocabulary by construction; only its
//! decoder stack is shorter.

use std::fmt;
use std::str::FromStr;

use super::Llama;
use crate::error::{ModelError, Result};

/// Which decoder layers to keep, written like `0-7` or `0-5,27-29` (0-based, inclusive
/// ranges, increasing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSelection {
    spec: String,
    layers: Vec<usize>,
}

impl LayerSelection {
    /// The kept layers, in order.
    pub fn layers(&self) -> &[usize] {
        &self.layers
    }
}

impl FromStr for LayerSelection {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            ModelError::Unsupported(format!(
                "layer selection {s:?}: {why} (write ranges like 0-7 or 0-5,27-29)"
            ))
        };
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| bad(&format!("{t:?} is not a layer number")))
        };
        let mut layers: Vec<usize> = Vec::new();
        for part in s.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(part)?, num(part)?),
            };
            if hi < lo {
                return Err(bad(&format!("range {part:?} runs backwards")));
            }
            if layers.last().is_some_and(|&last| lo <= last) {
                return Err(bad("layers must increase and not repeat"));
            }
            layers.extend(lo..=hi);
        }
        Ok(LayerSelection {
            spec: s.trim().to_string(),
            layers,
        })
    }
}

impl fmt::Display for LayerSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl Llama {
    /// The model with only the `keep` layers, sharing every weight with `self` (nothing
    /// is copied). Its name says which layers it runs; its tokenizer fingerprint and
    /// vocabulary are the target's, so it pairs with it as a draft.
    pub fn with_layers(&self, keep: &LayerSelection) -> Result<Llama> {
        let n = self.layers.len();
        if let Some(&out) = keep.layers.iter().find(|&&l| l >= n) {
            return Err(ModelError::Unsupported(format!(
                "layer selection {keep}: layer {out} does not exist ({} has layers 0-{})",
                self.info.name,
                n - 1
            )));
        }
        let mut m = self.clone();
        m.layers = keep
            .layers
            .iter()
            .map(|&l| self.layers[l].clone())
            .collect();
        m.cfg.num_layers = m.layers.len();
        m.info.num_layers = m.layers.len();
        m.info.name = format!("{} [layers {keep}]", self.info.name);
        m.info.num_parameters = m.cfg.num_parameters();
        m.info.kv_bytes_per_token = self.info.kv_bytes_per_token / n * m.layers.len();
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_lists() {
        let s: LayerSelection = "0-2,5,7-8".parse().unwrap();
        assert_eq!(s.layers(), &[0, 1, 2, 5, 7, 8]);
        assert_eq!(s.to_string(), "0-2,5,7-8");
        for bad in ["", "3-1", "0-2,2-4", "a-3", "1,0"] {
            let err = bad.parse::<LayerSelection>().unwrap_err();
            assert!(err.to_string().contains("0-5,27-29"), "{bad}: {err}");
        }
    }
}
