//! The cached, batched inference path against itself and against the training path,
//! on randomly initialised models of several shapes.

use candle_core::{DType, Device, Tensor};
use tandem_decoding::SessionRng;

use super::weights::TensorMap;
use super::{Identity, Llama};
use crate::config::{Arch, LlamaConfig, RopeLayout, RopeScaling};
use crate::model::{BatchEntry, Exits, LanguageModel, Logits, Positions, SessionCache};

fn config(tied: bool, kv_heads: usize, arch: Arch) -> LlamaConfig {
    LlamaConfig {
        arch,
        vocab_size: 97,
        hidden_size: 32,
        intermediate_size: 48,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: kv_heads,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: RopeScaling::None,
        rope_layout: RopeLayout::Half,
        max_position_embeddings: 256,
        tie_word_embeddings: tied,
        qkv_bias: arch == Arch::Qwen2,
        o_bias: false,
        mlp_bias: false,
        checkpoint_dtype: None,
        bos_token_id: None,
        eos_token_ids: vec![],
    }
}

/// A random model; biases (Qwen2) random too, norms perturbed so they matter.
pub(crate) fn random_model(cfg: &LlamaConfig, seed: u64) -> Llama {
    random_model_in(cfg, seed, DType::F32)
}

/// [`random_model`] holding its weights and caches in `dtype` (f32 on the CPU attends
/// row by row; any other dtype through the padded groups).
pub(super) fn random_model_in(cfg: &LlamaConfig, seed: u64, dtype: DType) -> Llama {
    let mut rng = SessionRng::new(seed);
    let mut tensors: std::collections::HashMap<String, Tensor> =
        crate::train::fit::init(cfg, &mut rng)
            .unwrap()
            .into_iter()
            .map(|(n, v)| {
                let t = v.as_tensor().clone();
                // Larger weights than training init so that logits differ visibly.
                let t = if t.rank() == 2 {
                    (t * 10.0).unwrap()
                } else {
                    (t + 0.1).unwrap()
                };
                (n, t)
            })
            .collect();
    if cfg.qkv_bias {
        for l in 0..cfg.num_layers {
            for (p, n) in [
                ("q", cfg.num_heads),
                ("k", cfg.num_kv_heads),
                ("v", cfg.num_kv_heads),
            ] {
                let data: Vec<f32> = (0..n * cfg.head_dim)
                    .map(|_| rng.uniform() as f32 - 0.5)
                    .collect();
                let len = data.len();
                tensors.insert(
                    format!("model.layers.{l}.self_attn.{p}_proj.bias"),
                    Tensor::from_vec(data, len, &Device::Cpu).unwrap(),
                );
            }
        }
    }
    Llama::from_source(
        cfg.clone(),
        &TensorMap {
            tensors,
            description: "test".into(),
        },
        dtype,
        &Device::Cpu,
        Identity {
            name: "random".into(),
            tokenizer_fingerprint: "none".into(),
        },
    )
    .unwrap()
}

pub(super) fn tokens(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    let mut rng = SessionRng::new(seed);
    (0..n)
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect()
}

pub(super) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// One batch entry per cache, block and positions.
fn entries<'a, C>(
    caches: &'a mut [C],
    blocks: &'a [Vec<u32>],
    positions: &[Positions],
) -> Vec<BatchEntry<'a, C>> {
    caches
        .iter_mut()
        .zip(blocks)
        .zip(positions)
        .map(|((cache, tokens), &positions)| BatchEntry {
            cache,
            tokens,
            positions,
            tree: None,
        })
        .collect()
}

pub(super) fn shapes() -> Vec<LlamaConfig> {
    vec![
        config(false, 2, Arch::Llama),
        config(true, 4, Arch::Llama),
        config(true, 1, Arch::Qwen2),
    ]
}

#[test]
fn block_forward_equals_token_by_token() {
    for (i, cfg) in shapes().iter().enumerate() {
        let m = random_model(cfg, i as u64);
        let ids = tokens(10 + i as u64, 20, cfg.vocab_size);
        let block = m.forward(&mut m.new_cache(), &ids, Positions::All).unwrap();
        let mut cache = m.new_cache();
        for (t, &id) in ids.iter().enumerate() {
            let one = m.forward(&mut cache, &[id], Positions::All).unwrap();
            let d = max_diff(one.row(0), block.row(t));
            assert!(d <= 1e-5, "shape {i} position {t}: {d}");
        }
        assert_eq!(cache.len(), ids.len());
    }
}

#[test]
fn training_forward_equals_inference_forward() {
    for (i, cfg) in shapes().iter().enumerate() {
        let m = random_model(cfg, 100 + i as u64);
        let ids = tokens(7, 24, cfg.vocab_size);
        let block = m.forward(&mut m.new_cache(), &ids, Positions::All).unwrap();
        let x = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
        let train: Vec<f32> = m
            .forward_train(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let d = max_diff(&train, block.as_slice());
        assert!(d <= 1e-4, "shape {i}: {d}");
    }
}

#[test]
fn truncate_then_reforward_equals_fresh_forward() {
    let cfg = config(false, 2, Arch::Llama);
    let m = random_model(&cfg, 3);
    let prefix = tokens(1, 12, cfg.vocab_size);
    let rejected = tokens(2, 5, cfg.vocab_size);
    let accepted = tokens(3, 4, cfg.vocab_size);
    let mut cache = m.new_cache();
    m.forward(&mut cache, &prefix, Positions::All).unwrap();
    m.forward(&mut cache, &rejected, Positions::All).unwrap();
    cache.truncate(prefix.len() + 2).unwrap();
    let rolled = m.forward(&mut cache, &accepted, Positions::All).unwrap();
    let mut fresh_ids = prefix.clone();
    fresh_ids.extend_from_slice(&rejected[..2]);
    let mut fresh = m.new_cache();
    m.forward(&mut fresh, &fresh_ids, Positions::All).unwrap();
    let expect = m.forward(&mut fresh, &accepted, Positions::All).unwrap();
    assert!(max_diff(rolled.as_slice(), expect.as_slice()) <= 1e-5);
    assert!(cache.truncate(cache.len() + 1).is_err());
}

#[test]
fn ragged_batch_equals_each_session_alone() {
    for (i, cfg) in shapes().iter().enumerate() {
        let m = random_model(cfg, 50 + i as u64);
        // Sessions with different cache lengths (0, 3, 17, 40) and block lengths.
        let pasts = [0usize, 3, 17, 40];
        let blocks = [5usize, 1, 7, 3];
        let prefilled = || -> Vec<_> {
            pasts
                .iter()
                .enumerate()
                .map(|(s, &p)| {
                    let mut c = m.new_cache();
                    if p > 0 {
                        let ids = tokens(s as u64, p, cfg.vocab_size);
                        m.forward(&mut c, &ids, Positions::Last).unwrap();
                    }
                    c
                })
                .collect()
        };
        let mut caches = prefilled();
        let block_ids: Vec<Vec<u32>> = blocks
            .iter()
            .enumerate()
            .map(|(s, &n)| tokens(90 + s as u64, n, cfg.vocab_size))
            .collect();
        let mut alone_caches = prefilled();
        let alone: Vec<_> = alone_caches
            .iter_mut()
            .zip(&block_ids)
            .map(|(c, b)| m.forward(c, b, Positions::All).unwrap())
            .collect();
        let positions = [
            Positions::All,
            Positions::Last,
            Positions::All,
            Positions::All,
        ];
        let mut entries = entries(&mut caches, &block_ids, &positions);
        let batched = m.forward_batch(&mut entries).unwrap();
        for s in 0..4 {
            let want = if positions[s] == Positions::Last {
                alone[s].last().to_vec()
            } else {
                alone[s].as_slice().to_vec()
            };
            let d = max_diff(batched[s].as_slice(), &want);
            assert!(d <= 1e-5, "shape {i} session {s}: {d}");
            assert_eq!(caches[s].len(), pasts[s] + blocks[s]);
        }
    }
}

#[test]
fn bad_input_leaves_every_cache_untouched() {
    let cfg = config(false, 2, Arch::Llama);
    let m = random_model(&cfg, 9);
    let mut a = m.new_cache();
    let mut b = m.new_cache();
    m.forward(&mut a, &[1, 2, 3], Positions::Last).unwrap();
    let bad = [4, 97, 5];
    let mut entries = [
        BatchEntry {
            cache: &mut a,
            tokens: &[6, 7],
            positions: Positions::All,
            tree: None,
        },
        BatchEntry {
            cache: &mut b,
            tokens: &bad,
            positions: Positions::All,
            tree: None,
        },
    ];
    let err = m.forward_batch(&mut entries).unwrap_err();
    assert!(
        matches!(
            err,
            crate::ModelError::TokenOutOfRange {
                position: 1,
                token: 97,
                vocab: 97
            }
        ),
        "{err}"
    );
    assert_eq!((a.len(), b.len()), (3, 0));
    let err = m
        .forward(&mut b, &vec![1; 257], Positions::Last)
        .unwrap_err();
    assert!(matches!(
        err,
        crate::ModelError::ContextOverflow {
            needed: 257,
            max: 256
        }
    ));
    assert!(matches!(
        m.forward(&mut b, &[], Positions::Last),
        Err(crate::ModelError::EmptyBlock)
    ));
    assert_eq!(b.len(), 0);
}

#[test]
fn small_caches_batch_with_long_ones_and_keep_their_limit() {
    let cfg = config(false, 2, Arch::Llama);
    let m = random_model(&cfg, 21);
    // Two short sessions whose caches may hold only 12 tokens, batched with a session
    // 100 tokens deep: one attention group, the short ones padded to 104 positions.
    let long = tokens(5, 100, cfg.vocab_size);
    let shorts = [tokens(6, 7, cfg.vocab_size), tokens(7, 3, cfg.vocab_size)];
    let blocks: Vec<Vec<u32>> = (0..3).map(|s| tokens(40 + s, 4, cfg.vocab_size)).collect();
    let setup = || {
        let mut caches = vec![m.new_cache(), m.new_cache_for(12), m.new_cache_for(12)];
        m.forward(&mut caches[0], &long, Positions::Last).unwrap();
        m.forward(&mut caches[1], &shorts[0], Positions::Last)
            .unwrap();
        m.forward(&mut caches[2], &shorts[1], Positions::Last)
            .unwrap();
        caches
    };
    let mut alone = setup();
    let want: Vec<_> = alone
        .iter_mut()
        .zip(&blocks)
        .map(|(c, b)| m.forward(c, b, Positions::All).unwrap())
        .collect();
    let mut caches = setup();
    let mut entries: Vec<_> = caches
        .iter_mut()
        .zip(&blocks)
        .map(|(cache, tokens)| BatchEntry {
            cache,
            tokens,
            positions: Positions::All,
            tree: None,
        })
        .collect();
    let got = m.forward_batch(&mut entries).unwrap();
    for s in 0..3 {
        let d = max_diff(got[s].as_slice(), want[s].as_slice());
        assert!(d <= 1e-5, "session {s}: {d}");
    }
    // 7 + 4 = 11 tokens held; 2 more would pass the limit of 12.
    assert!(caches[1].bytes() <= 12 * m.info().kv_bytes_per_token);
    let err = m
        .forward(&mut caches[1], &[1, 2], Positions::Last)
        .unwrap_err();
    assert!(
        matches!(
            err,
            crate::ModelError::ContextOverflow {
                needed: 13,
                max: 12
            }
        ),
        "{err}"
    );
    assert_eq!(caches[1].len(), 11);
}

#[test]
fn an_early_exit_reads_what_the_first_layers_alone_would_give() {
    let mut cfg = config(false, 2, Arch::Llama);
    cfg.num_layers = 3;
    let m = random_model(&cfg, 7);
    let blocks = [tokens(1, 5, cfg.vocab_size), tokens(2, 3, cfg.vocab_size)];
    let positions = [Positions::All, Positions::Last];
    // A pass over both blocks, with exits after `after` for the entries `want` flags.
    let run = |after: &[usize], want: &[bool]| {
        let mut caches: Vec<_> = blocks.iter().map(|_| m.new_cache()).collect();
        let mut entries = entries(&mut caches, &blocks, &positions);
        let mut heard = Vec::new();
        let out = if after.is_empty() {
            m.forward_batch(&mut entries).unwrap()
        } else {
            let mut on_exit = |l: usize, logits: Vec<Logits>| heard.push((l, logits));
            let exits = Exits {
                after,
                want,
                on_exit: &mut on_exit,
            };
            m.forward_batch_exits(&mut entries, exits).unwrap()
        };
        (out, heard)
    };
    let (plain, _) = run(&[], &[]);
    let (with_exits, heard) = run(&[0, 1], &[]);
    assert_eq!(plain, with_exits, "exits leave the final logits alone");
    assert_eq!(heard.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [0, 1]);
    for (l, logits) in &heard {
        let sel: super::LayerSelection = format!("0-{l}").parse().unwrap();
        let short = m.with_layers(&sel).unwrap();
        for ((b, p), got) in blocks.iter().zip(positions).zip(logits) {
            let want = short.forward(&mut short.new_cache(), b, p).unwrap();
            assert_eq!(got.num_rows(), want.num_rows());
            let d = max_diff(got.as_slice(), want.as_slice());
            assert!(d <= 1e-5, "exit after layer {l}: {d}");
        }
    }
    // Entries that want no exit logits get no rows; the others the same as before.
    let (out, some) = run(&[1], &[false, true]);
    assert_eq!(out, plain);
    assert_eq!(some[0].1[0].num_rows(), 0);
    assert_eq!(some[0].1[1], heard[1].1[1]);
    let mut cache = m.new_cache();
    let mut none = |_: usize, _: Vec<Logits>| {};
    let err = m
        .forward_batch_exits(
            &mut [BatchEntry {
                cache: &mut cache,
                tokens: &blocks[0],
                positions: Positions::All,
                tree: None,
            }],
            Exits {
                after: &[2],
                want: &[],
                on_exit: &mut none,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("layers 0-2"), "{err}");
    assert_eq!(cache.len(), 0, "a refused pass leaves the cache alone");
}
