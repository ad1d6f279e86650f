//! The models on a CUDA GPU (built only with the `cuda` feature; run by
//! `tools/gpu-check.sh` on a machine with a GPU): the same logits as the CPU within each
//! dtype's rounding, greedy speculative decoding on the GPU equal to greedy decoding on
//! the GPU (one session at a time and batched), and token trees through the GPU's padded
//! attention equal to their paths run as chains.
//!
//! SmolLM2 is `pkg:smollm2-135m-instruct-q4_1`: from `$TANDEM_CACHE` where the GPU
//! machine cannot reach the package index (gpu-check.sh carries it there).

mod common;

use candle_core::{DType, Device};
use common::spec::{NEW, PROMPTS, batched, one_at_a_time, prompt_ids};
use common::{greedy, logits, relative_error};
use tandem_models::{
    BatchEntry, LanguageModel, LayerSelection, LoadOptions, Loaded, ModelSpec, Positions,
    SessionCache,
};

const IDS: &[u32] = &[1, 45, 67, 89, 12, 5, 300, 2, 77, 150, 9, 31];

fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA GPU (this test binary is for tools/gpu-check.sh)")
}

fn load(spec: &str, device: &Device, dtype: DType, layers: Option<&str>) -> Loaded {
    spec.parse::<ModelSpec>()
        .unwrap()
        .load(&LoadOptions {
            device: device.clone(),
            dtype,
            layers: layers.map(|l| l.parse::<LayerSelection>().unwrap()),
        })
        .unwrap()
}

const SMOLLM2: &str = "pkg:smollm2-135m-instruct-q4_1";

/// The relative logit error allowed against the CPU: f32 differs only in the order of
/// sums; bf16 and f16 keep 8 and 11 bits of mantissa.
fn bound(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-3,
        _ => 0.05,
    }
}

#[test]
fn tiny_pair_logits_on_the_gpu_match_the_cpu() {
    let gpu = gpu();
    for spec in ["builtin:tiny-target", "builtin:tiny-draft"] {
        let cpu = logits(&load(spec, &Device::Cpu, DType::F32, None), IDS);
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let m = load(spec, &gpu, dtype, None);
            let err = relative_error(&logits(&m, IDS), &cpu);
            eprintln!("{spec} {dtype:?}: relative logit error {err:.2e}");
            assert!(err < bound(dtype), "{spec} {dtype:?}: {err}");
        }
    }
}

#[test]
fn smollm2_on_the_gpu_matches_the_cpu() {
    let gpu = gpu();
    let prompt = {
        let m = load(SMOLLM2, &Device::Cpu, DType::F32, None);
        m.tokenizer.encode_prompt(PROMPTS[0]).unwrap()
    };
    // f32: the Q4_1 blocks as stored (candle's CUDA kernels against ours);
    // bf16: dequantized on both devices.
    for dtype in [DType::F32, DType::BF16] {
        let cpu = logits(&load(SMOLLM2, &Device::Cpu, dtype, None), &prompt);
        let m = load(SMOLLM2, &gpu, dtype, None);
        let err = relative_error(&logits(&m, &prompt), &cpu);
        eprintln!("SmolLM2 {dtype:?}: relative logit error {err:.2e}");
        assert!(err < bound(dtype).max(0.02), "{dtype:?}: {err}");
    }
}

#[test]
fn speculative_greedy_on_the_gpu_equals_greedy_on_the_gpu() {
    let gpu = gpu();
    for dtype in [DType::F32, DType::BF16] {
        let d = load("builtin:tiny-draft", &gpu, dtype, None);
        let t = load("builtin:tiny-target", &gpu, dtype, None);
        let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| prompt_ids(&t, p)).collect();
        let want: Vec<Vec<u32>> = prompts.iter().map(|p| greedy(&t, p, NEW)).collect();
        let (alone, stats) = one_at_a_time(&d, &t, 4, &prompts);
        eprintln!(
            "tiny pair {dtype:?}: acceptance {:.3}",
            stats.acceptance_rate()
        );
        assert_eq!(alone, want, "{dtype:?}, one session at a time");
        assert_eq!(batched(&d, &t, 4, &prompts), want, "{dtype:?}, batched");
    }
}

/// SmolLM2 drafting for itself with its first 10 layers, in bf16.
#[test]
fn smollm2_self_drafted_on_the_gpu_equals_greedy_on_the_gpu() {
    let gpu = gpu();
    let d = load(SMOLLM2, &gpu, DType::BF16, Some("0-9"));
    let t = load(SMOLLM2, &gpu, DType::BF16, None);
    let prompts: Vec<Vec<u32>> = PROMPTS[..2]
        .iter()
        .map(|p| t.tokenizer.encode_prompt(p).unwrap())
        .collect();
    let want: Vec<Vec<u32>> = prompts.iter().map(|p| greedy(&t, p, NEW)).collect();
    assert_eq!(one_at_a_time(&d, &t, 4, &prompts).0, want, "SmolLM2, alone");
    assert_eq!(batched(&d, &t, 4, &prompts), want, "SmolLM2, batched");
}

/// Context → nodes 0, 1; node 0 → 2, 3; node 2 → 4; node 1 → 5; node 5 → 6.
const PARENTS: [u32; 7] = [0, 0, 1, 1, 3, 2, 6];
/// The leaves' paths, as node indices.
const PATHS: [&[usize]; 3] = [&[0, 2, 4], &[0, 3], &[1, 5, 6]];

#[test]
fn trees_on_the_gpu_equal_their_paths_and_keep_the_accepted_one() {
    let gpu = gpu();
    for dtype in [DType::F32, DType::BF16] {
        let t = load("builtin:tiny-target", &gpu, dtype, None);
        let m = &t.model;
        let context = &IDS[..6];
        let nodes: Vec<u32> = (0..PARENTS.len() as u32).map(|i| 40 + 13 * i).collect();
        for path in PATHS {
            let mut cache = m.new_cache();
            m.prefill(&mut cache, context).unwrap();
            let tree = m
                .forward_batch(&mut [BatchEntry {
                    cache: &mut cache,
                    tokens: &nodes,
                    positions: Positions::All,
                    tree: Some(&PARENTS),
                }])
                .unwrap()
                .pop()
                .unwrap();
            // The path run as a chain gives its nodes' rows.
            let chain: Vec<u32> = path.iter().map(|&i| nodes[i]).collect();
            let mut chain_cache = m.new_cache();
            m.prefill(&mut chain_cache, context).unwrap();
            let want = m.forward(&mut chain_cache, &chain, Positions::All).unwrap();
            for (row, &node) in path.iter().enumerate() {
                let err = relative_error(tree.row(node), want.row(row));
                assert!(err < bound(dtype), "{dtype:?} {path:?} row {row}: {err}");
            }
            // Keeping the path leaves the cache as if it had been decoded.
            cache.keep_rows(context.len(), path).unwrap();
            let next = [7u32, 8];
            let got = m.forward(&mut cache, &next, Positions::All).unwrap();
            let fresh = m.forward(&mut chain_cache, &next, Positions::All).unwrap();
            let err = relative_error(got.as_slice(), fresh.as_slice());
            assert!(err < bound(dtype), "{dtype:?} {path:?} after keep: {err}");
        }
    }
}
