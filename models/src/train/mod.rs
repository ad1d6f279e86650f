//! The trainer of the shipped tiny pair: a seeded corpus ([`corpus`]), a byte-level BPE
//! tokenizer, both models trained with candle on the CPU, and an HF-layout export.
//! Everything is deterministic in [`TrainSpec::seed`]: same seed, same bytes.

mod bpe;
pub mod corpus;
mod export;
pub(crate) mod fit;

use std::path::Path;
use std::time::Instant;

use crate::config::{Arch, LlamaConfig, RopeLayout, RopeScaling};
use crate::error::Result;
use crate::llama::Llama;
use crate::model::{LanguageModel, Positions};

pub use bpe::{BOS, EOS, train_tokenizer};
pub use fit::{FitSpec, fit};

/// The shape of one model to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Model width.
    pub hidden: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Tie the LM head to the embedding.
    pub tied: bool,
    /// Optimizer steps.
    pub steps: usize,
}

/// Everything the trainer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSpec {
    /// The one seed: corpus, tokenizer, initialisation and batches derive from it.
    pub seed: u64,
    /// Largest BPE vocabulary, special tokens included (the trainer stops merging
    /// earlier when no pair occurs twice; the models get the tokenizer's real size).
    pub vocab_size: usize,
    /// Training documents.
    pub documents: usize,
    /// Held-out documents for the agreement measurement.
    pub heldout_documents: usize,
    /// Training window in tokens.
    pub seq_len: usize,
    /// Windows per step.
    pub batch: usize,
    /// Peak learning rate (linear warm-up, cosine decay).
    pub learning_rate: f64,
    /// Context length written into the configs.
    pub max_context: usize,
    /// The target's shape.
    pub target: Shape,
    /// The draft's shape.
    pub draft: Shape,
}

impl Default for TrainSpec {
    /// The shipped pair: a ~1.0 M-parameter target (4 layers, width 128, untied head,
    /// grouped-query attention) and a ~0.16 M-parameter draft (2 layers, width 64, tied).
    fn default() -> Self {
        TrainSpec {
            seed: 20261121,
            vocab_size: 1024,
            documents: 24_000,
            heldout_documents: 200,
            seq_len: 128,
            batch: 16,
            learning_rate: 3e-3,
            max_context: 1024,
            target: Shape {
                hidden: 128,
                intermediate: 384,
                layers: 4,
                heads: 4,
                kv_heads: 2,
                tied: false,
                steps: 900,
            },
            draft: Shape {
                hidden: 64,
                intermediate: 192,
                layers: 2,
                heads: 2,
                kv_heads: 1,
                tied: true,
                steps: 900,
            },
        }
    }
}

impl TrainSpec {
    /// A spec small enough for a test: same code paths, seconds of work.
    pub fn smoke(seed: u64) -> Self {
        let d = TrainSpec::default();
        TrainSpec {
            seed,
            vocab_size: 300,
            documents: 300,
            heldout_documents: 10,
            seq_len: 32,
            batch: 4,
            max_context: 128,
            target: Shape {
                hidden: 32,
                intermediate: 64,
                layers: 1,
                heads: 2,
                kv_heads: 1,
                steps: 3,
                ..d.target
            },
            draft: Shape {
                hidden: 16,
                intermediate: 32,
                layers: 1,
                heads: 1,
                kv_heads: 1,
                steps: 3,
                ..d.draft
            },
            ..d
        }
    }

    /// The config of a model of `shape` over a tokenizer of `vocab` ids.
    pub(crate) fn config(&self, shape: &Shape, vocab: usize) -> LlamaConfig {
        LlamaConfig {
            arch: Arch::Llama,
            vocab_size: vocab,
            hidden_size: shape.hidden,
            intermediate_size: shape.intermediate,
            num_layers: shape.layers,
            num_heads: shape.heads,
            num_kv_heads: shape.kv_heads,
            head_dim: shape.hidden / shape.heads,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            rope_layout: RopeLayout::Half,
            max_position_embeddings: self.max_context,
            tie_word_embeddings: shape.tied,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            checkpoint_dtype: Some("float32".into()),
            bos_token_id: Some(BOS),
            eos_token_ids: vec![EOS],
        }
    }
}

/// What a training run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Target parameters.
    pub target_parameters: usize,
    /// Draft parameters.
    pub draft_parameters: usize,
    /// Mean training loss over the target's last 50 steps.
    pub target_loss: f64,
    /// Mean training loss over the draft's last 50 steps.
    pub draft_loss: f64,
    /// Fraction of held-out positions where the draft's argmax equals the target's,
    /// both reading the same text.
    pub agreement: f64,
    /// Tokens in the training corpus.
    pub corpus_tokens: usize,
    /// Seconds spent on the tokenizer, the target and the draft (the two models train
    /// at the same time).
    pub seconds: [f64; 3],
}

/// Trains the pair and writes `out/tiny-target` and `out/tiny-draft`. `progress` is
/// told about each phase and every few steps.
pub fn train_tiny(
    spec: &TrainSpec,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<TrainReport> {
    let t0 = Instant::now();
    let docs = corpus::documents(spec.seed, spec.documents);
    let heldout = corpus::documents(spec.seed ^ 0x005e_ed0f_4e1d, spec.heldout_documents);
    let tokenizer = train_tokenizer(&docs, spec.vocab_size)?;
    let stream = bpe::encode_stream(&tokenizer, &docs)?;
    let tok_s = t0.elapsed().as_secs_f64();
    progress(&format!(
        "tokenizer: {} tokens, corpus {} tokens ({tok_s:.1} s)",
        tokenizer.vocab_size(),
        stream.len()
    ));
    // The two models train at once, one per thread: candle's CPU kernels are mostly
    // single-threaded at these sizes, and each run is deterministic on its own.
    let vocab = tokenizer.vocab_size();
    let jobs = [
        ("tiny-target", spec.target, 1u64),
        ("tiny-draft", spec.draft, 2),
    ];
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|&(name, shape, stream_id)| {
                let (tx, stream, tokenizer) = (tx.clone(), &stream, &tokenizer);
                scope.spawn(move || -> Result<(LlamaConfig, f64, f64)> {
                    let t = Instant::now();
                    let cfg = spec.config(&shape, vocab);
                    let _ = tx.send(format!(
                        "{name}: {} parameters, {} steps",
                        cfg.num_parameters(),
                        shape.steps
                    ));
                    let fit_spec = FitSpec {
                        seed: spec.seed.wrapping_add(stream_id),
                        steps: shape.steps,
                        batch: spec.batch,
                        seq_len: spec.seq_len,
                        learning_rate: spec.learning_rate,
                    };
                    let mut say = |m: &str| {
                        let _ = tx.send(format!("{name}: {m}"));
                    };
                    let (tensors, loss) = fit(&cfg, stream, &fit_spec, &mut say)?;
                    export::write_hf_dir(&out.join(name), &cfg, &tensors, tokenizer)?;
                    Ok((cfg, loss, t.elapsed().as_secs_f64()))
                })
            })
            .collect();
        drop(tx);
        for message in rx {
            progress(&message);
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("a training thread panicked"))
            .collect::<Vec<_>>()
    });
    let mut trained = Vec::new();
    let mut losses = Vec::new();
    let mut seconds = vec![tok_s];
    for r in results {
        let (cfg, loss, secs) = r?;
        trained.push(cfg);
        losses.push(loss);
        seconds.push(secs);
    }
    let target = crate::load::hf::load_dir(&out.join("tiny-target"), &Default::default())?;
    let draft = crate::load::hf::load_dir(&out.join("tiny-draft"), &Default::default())?;
    let heldout_ids: Vec<Vec<u32>> = heldout
        .iter()
        .map(|d| bpe::encode_document(&tokenizer, d))
        .collect::<Result<_>>()?;
    let agreement = agreement(&draft.model, &target.model, &heldout_ids)?;
    progress(&format!("held-out greedy agreement {agreement:.3}"));
    Ok(TrainReport {
        target_parameters: trained[0].num_parameters(),
        draft_parameters: trained[1].num_parameters(),
        target_loss: losses[0],
        draft_loss: losses[1],
        agreement,
        corpus_tokens: stream.len(),
        seconds: [seconds[0], seconds[1], seconds[2]],
    })
}

/// Teacher-forced greedy agreement: over every position of every sequence, the share
/// where the draft's argmax equals the target's.
pub fn agreement(draft: &Llama, target: &Llama, sequences: &[Vec<u32>]) -> Result<f64> {
    let (mut same, mut total) = (0usize, 0usize);
    let max = draft.info().max_context.min(target.info().max_context);
    for ids in sequences.iter().filter(|s| !s.is_empty()) {
        let ids = &ids[..ids.len().min(max)];
        let d = draft.forward(&mut draft.new_cache(), ids, Positions::All)?;
        let t = target.forward(&mut target.new_cache(), ids, Positions::All)?;
        for i in 0..ids.len() {
            same += usize::from(
                tandem_decoding::sampling::argmax(d.row(i))
                    == tandem_decoding::sampling::argmax(t.row(i)),
            );
            total += 1;
        }
    }
    Ok(same as f64 / total.max(1) as f64)
}
