//! Training one model: seeded initialisation, random windows of the token stream,
//! AdamW with warm-up and cosine decay, next-token cross-entropy.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use tandem_decoding::SessionRng;

use crate::config::LlamaConfig;
use crate::error::Result;
use crate::llama::weights::TensorMap;
use crate::llama::{Identity, Llama};

/// How to train one model.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSpec {
    /// Initialisation and batch seed.
    pub seed: u64,
    /// Optimizer steps.
    pub steps: usize,
    /// Windows per step.
    pub batch: usize,
    /// Window length in tokens.
    pub seq_len: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
}

/// Standard normal by Box–Muller, from the project's own generator so initial weights
/// never change with a dependency upgrade.
fn normal(rng: &mut SessionRng) -> f32 {
    let u1 = rng.uniform().max(f64::MIN_POSITIVE);
    let u2 = rng.uniform();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Every tensor of a fresh model under its HF name: matrices N(0, 0.02²), norms 1.
pub(crate) fn init(cfg: &LlamaConfig, rng: &mut SessionRng) -> Result<Vec<(String, Var)>> {
    let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let mut shapes: Vec<(String, Vec<usize>)> =
        vec![("model.embed_tokens.weight".into(), vec![cfg.vocab_size, h])];
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        shapes.extend([
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.self_attn.q_proj.weight"), vec![q, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, q]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            (format!("{p}.mlp.gate_proj.weight"), vec![i, h]),
            (format!("{p}.mlp.up_proj.weight"), vec![i, h]),
            (format!("{p}.mlp.down_proj.weight"), vec![h, i]),
        ]);
    }
    shapes.push(("model.norm.weight".into(), vec![h]));
    if !cfg.tie_word_embeddings {
        shapes.push(("lm_head.weight".into(), vec![cfg.vocab_size, h]));
    }
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if shape.len() == 1 {
                vec![1.0; n]
            } else {
                (0..n).map(|_| 0.02 * normal(rng)).collect()
            };
            let var = Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu)?)?;
            Ok((name, var))
        })
        .collect()
}

/// Trains a model of shape `cfg` on `stream` and returns its tensors (HF names) and the
/// mean loss of the last 50 steps.
pub fn fit(
    cfg: &LlamaConfig,
    stream: &[u32],
    spec: &FitSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<(HashMap<String, Tensor>, f64)> {
    let mut rng = SessionRng::new(spec.seed);
    let vars = init(cfg, &mut rng)?;
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    // The model holds the variables' own tensors: optimizer updates are seen in place.
    let model = Llama::from_source(
        cfg.clone(),
        &TensorMap {
            tensors: tensors.clone(),
            description: "trainer".into(),
        },
        DType::F32,
        &Device::Cpu,
        Identity {
            name: "training".into(),
            tokenizer_fingerprint: String::new(),
        },
    )?;
    let mut opt = AdamW::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        ParamsAdamW {
            lr: spec.learning_rate,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.01,
        },
    )?;
    let (b, s) = (spec.batch, spec.seq_len);
    let span = stream.len().saturating_sub(s + 1).max(1) as u64;
    let warmup = (spec.steps / 20).max(1);
    let mut recent = Vec::new();
    for step in 0..spec.steps {
        let lr = if step < warmup {
            spec.learning_rate * (step + 1) as f64 / warmup as f64
        } else {
            let t = (step - warmup) as f64 / (spec.steps - warmup).max(1) as f64;
            spec.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
        };
        opt.set_learning_rate(lr);
        let mut xs = Vec::with_capacity(b * s);
        let mut ys = Vec::with_capacity(b * s);
        for _ in 0..b {
            let at = (rng.next_u64() % span) as usize;
            xs.extend_from_slice(&stream[at..at + s]);
            ys.extend_from_slice(&stream[at + 1..at + s + 1]);
        }
        let xs = Tensor::from_vec(xs, (b, s), &Device::Cpu)?;
        let ys = Tensor::from_vec(ys, b * s, &Device::Cpu)?;
        // One step on candle's thread pool (see `Device::with_context`).
        let loss = Device::Cpu.with_context(|| -> Result<f64> {
            let logits = model.forward_train(&xs)?;
            let loss =
                candle_nn::loss::cross_entropy(&logits.reshape((b * s, cfg.vocab_size))?, &ys)?;
            opt.backward_step(&loss)?;
            Ok(loss.to_scalar::<f32>()? as f64)
        })?;
        recent.push(loss);
        if recent.len() > 50 {
            recent.remove(0);
        }
        if step % 100 == 0 || step + 1 == spec.steps {
            progress(&format!(
                "step {step}/{} loss {loss:.3} lr {lr:.2e}",
                spec.steps
            ));
        }
    }
    let mean = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    Ok((tensors, mean))
}
