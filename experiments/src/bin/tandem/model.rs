//! `tandem train-tiny` and `tandem quantize`: making the shipped models and GGUF drafts.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use tandem_models::ModelSpec;
use tandem_models::load::{GgufQuant, Overwrite, write_gguf};
use tandem_models::train::{TrainSpec, train_tiny};

/// Options of `tandem train-tiny`.
#[derive(Args, Debug, Clone)]
pub struct TrainTinyArgs {
    /// Where to write `tiny-target/` and `tiny-draft/` (the shipped pair lives in
    /// `models/assets`).
    #[arg(long, default_value = "models/assets")]
    pub out: PathBuf,
    /// Seed of the corpus, tokenizer, initialisation and batches.
    #[arg(long, default_value_t = TrainSpec::default().seed)]
    pub seed: u64,
    /// Optimizer steps for each model (default: the shipped pair's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Train the seconds-long smoke-test pair instead of the shipped one.
    #[arg(long)]
    pub smoke: bool,
}

/// Runs the trainer and prints its report.
pub fn train(args: &TrainTinyArgs) -> Result<()> {
    let mut spec = if args.smoke {
        TrainSpec::smoke(args.seed)
    } else {
        TrainSpec {
            seed: args.seed,
            ..TrainSpec::default()
        }
    };
    if let Some(steps) = args.steps {
        spec.target.steps = steps;
        spec.draft.steps = steps;
    }
    let start = Instant::now();
    let report = train_tiny(&spec, &args.out, &mut |m| {
        eprintln!("[{:>7.1}s] {m}", start.elapsed().as_secs_f64())
    })
    .with_context(|| format!("training into {}", args.out.display()))?;
    println!("target parameters   {}", report.target_parameters);
    println!("draft parameters    {}", report.draft_parameters);
    println!("corpus tokens       {}", report.corpus_tokens);
    println!("target final loss   {:.3}", report.target_loss);
    println!("draft final loss    {:.3}", report.draft_loss);
    println!(
        "greedy agreement    {:.3} (held-out, teacher-forced)",
        report.agreement
    );
    println!(
        "seconds             tokenizer {:.1}, target {:.1}, draft {:.1}",
        report.seconds[0], report.seconds[1], report.seconds[2]
    );
    println!("{}", args.out.display());
    Ok(())
}

/// Options of `tandem quantize`.
#[derive(Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// The model to convert: an HF directory or `builtin:tiny-draft`/`builtin:tiny-target`.
    pub model: ModelSpec,
    /// The GGUF file to write: one self-contained file (weights, tokenizer, special
    /// tokens, chat template) that llama.cpp loads as well. Nothing is written beside it.
    pub out: PathBuf,
    /// Quantization: q8_0, q4_k_m or f32. k-quants need rows that are a multiple of 256;
    /// smaller rows fall back to q8_0, as llama.cpp does.
    #[arg(long, default_value = "q8_0")]
    pub quant: GgufQuant,
    /// Replace OUT if it exists (by default an existing file is never overwritten).
    #[arg(long)]
    pub force: bool,
}

/// Writes the GGUF file.
pub fn quantize(args: &QuantizeArgs) -> Result<()> {
    let overwrite = if args.force {
        Overwrite::Replace
    } else {
        Overwrite::Never
    };
    let n = write_gguf(&args.model, args.quant, &args.out, overwrite)
        .with_context(|| format!("converting {} to GGUF", args.model))?;
    eprintln!("wrote {n} tensors");
    println!("{}", args.out.display());
    Ok(())
}
