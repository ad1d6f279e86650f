//! Rotary position embedding: inverse frequencies (with rope scaling) and the cos/sin
//! rows for arbitrary positions.

use candle_core::{DType, Device, Tensor};

use crate::config::{LlamaConfig, RopeScaling};
use crate::error::Result;

/// The per-pair inverse frequencies of one model.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    inv_freq: Vec<f64>,
}

impl Rope {
    /// Frequencies as transformers computes them, rope scaling applied.
    pub(crate) fn new(cfg: &LlamaConfig) -> Self {
        let d = cfg.head_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64))
            .collect();
        let inv_freq = match cfg.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        Rope { inv_freq }
    }

    /// Divides each pair's frequency by `factors[i]` (llama.cpp's `rope_freqs.weight`,
    /// which its converter writes for Llama 3.1-style scaling).
    pub(crate) fn divide_by(&mut self, factors: &[f32]) -> Result<()> {
        if factors.len() != self.inv_freq.len() {
            return Err(crate::error::ModelError::TensorShape {
                name: "rope_freqs.weight".into(),
                expected: vec![self.inv_freq.len()],
                found: vec![factors.len()],
            });
        }
        for (f, d) in self.inv_freq.iter_mut().zip(factors) {
            *f /= f64::from(*d);
        }
        Ok(())
    }

    /// The per-pair divisors that turn unscaled frequencies into `cfg`'s scaled ones, as
    /// llama.cpp's converter writes them (`rope_freqs.weight`); `None` without scaling.
    pub(crate) fn freq_factors(cfg: &LlamaConfig) -> Option<Vec<f32>> {
        if cfg.rope_scaling == RopeScaling::None {
            return None;
        }
        let plain = Rope::new(&LlamaConfig {
            rope_scaling: RopeScaling::None,
            ..cfg.clone()
        });
        let scaled = Rope::new(cfg);
        Some(
            plain
                .inv_freq
                .iter()
                .zip(&scaled.inv_freq)
                .map(|(p, s)| (p / s) as f32)
                .collect(),
        )
    }

    /// `(cos, sin)`, each `positions.len() × head_dim/2`, in `dtype` on `device`.
    pub(crate) fn cos_sin(
        &self,
        positions: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                // transformers multiplies in f32; doing it in f64 and rounding once is
                // closer to the exact value and well within parity tolerance.
                let angle = (p as f64) * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let shape = (positions.len(), half);
        let cos = Tensor::from_vec(cos, shape, device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, shape, device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlamaConfig;

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let cfg = LlamaConfig::from_json(&serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 128,
            "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        }))
        .unwrap();
        let plain = Rope::new(&LlamaConfig {
            rope_scaling: RopeScaling::None,
            ..cfg.clone()
        });
        let scaled = Rope::new(&cfg);
        // Highest frequency (wavelength 2π < 2048): unchanged.
        assert_eq!(scaled.inv_freq[0], plain.inv_freq[0]);
        // Lowest frequency (wavelength far above 8192): divided by the factor.
        let last = plain.inv_freq.len() - 1;
        assert!((scaled.inv_freq[last] - plain.inv_freq[last] / 8.0).abs() < 1e-15);
        // In between: bounded by the two.
        for (s, p) in scaled.inv_freq.iter().zip(&plain.inv_freq) {
            assert!(*s <= *p && *s >= p / 8.0);
        }
    }
}
