//! Token trees in the batched forward: each node attends to the context and its
//! ancestors at the position of its depth, so its logits are those of the same token at
//! the end of its root-to-node path decoded as a chain; keeping the accepted path leaves
//! the cache as if that path had been decoded; trees and chains batch together.

use candle_core::DType;

use super::tests::{max_diff, random_model, random_model_in, shapes, tokens};
use crate::model::{BatchEntry, LanguageModel, Logits, Positions, SessionCache};

/// Context → nodes 0, 1; node 0 → 2, 3; node 2 → 4; node 1 → 5; node 5 → 6.
const PARENTS: [u32; 7] = [0, 0, 1, 1, 3, 2, 6];

/// Each leaf's path from the context, as node indices.
fn paths(parents: &[u32]) -> Vec<Vec<usize>> {
    let leaves = (0..parents.len()).filter(|&i| !parents.contains(&(i as u32 + 1)));
    leaves
        .map(|leaf| {
            let mut path = vec![leaf];
            while parents[*path.last().unwrap()] > 0 {
                path.push(parents[*path.last().unwrap()] as usize - 1);
            }
            path.reverse();
            path
        })
        .collect()
}

fn run_tree<M: LanguageModel>(
    m: &M,
    cache: &mut M::Cache,
    nodes: &[u32],
    parents: &[u32],
) -> Logits {
    let mut entries = [BatchEntry {
        cache,
        tokens: nodes,
        positions: Positions::All,
        tree: Some(parents),
    }];
    m.forward_batch(&mut entries).unwrap().pop().unwrap()
}

#[test]
fn tree_logits_equal_each_path_run_as_a_chain() {
    for (s, cfg) in shapes().iter().enumerate() {
        let m = random_model(cfg, 70 + s as u64);
        let context = tokens(71 + s as u64, 9, cfg.vocab_size);
        let nodes = tokens(72 + s as u64, PARENTS.len(), cfg.vocab_size);
        let mut cache = m.new_cache();
        m.prefill(&mut cache, &context).unwrap();
        let tree = run_tree(&m, &mut cache, &nodes, &PARENTS);
        assert_eq!(tree.num_rows(), PARENTS.len());
        for path in paths(&PARENTS) {
            let mut chain_cache = m.new_cache();
            m.prefill(&mut chain_cache, &context).unwrap();
            let chain: Vec<u32> = path.iter().map(|&i| nodes[i]).collect();
            let got = m.forward(&mut chain_cache, &chain, Positions::All).unwrap();
            for (row, &node) in path.iter().enumerate() {
                // Row by row on the CPU: the same keys in the same order, bit for bit.
                assert_eq!(got.row(row), tree.row(node), "shape {s}, path {path:?}");
            }
        }
    }
}

#[test]
fn keeping_the_accepted_path_equals_decoding_it() {
    for (s, cfg) in shapes().iter().enumerate() {
        let m = random_model(cfg, 80 + s as u64);
        let context = tokens(81 + s as u64, 6, cfg.vocab_size);
        let nodes = tokens(82 + s as u64, PARENTS.len(), cfg.vocab_size);
        let next = tokens(83 + s as u64, 2, cfg.vocab_size);
        for path in paths(&PARENTS) {
            let mut cache = m.new_cache();
            m.prefill(&mut cache, &context).unwrap();
            run_tree(&m, &mut cache, &nodes, &PARENTS);
            cache.keep_rows(context.len(), &path).unwrap();
            assert_eq!(cache.len(), context.len() + path.len());
            let got = m.forward(&mut cache, &next, Positions::All).unwrap();
            let mut fresh = m.new_cache();
            let mut seq = context.clone();
            seq.extend(path.iter().map(|&i| nodes[i]));
            m.prefill(&mut fresh, &seq).unwrap();
            let want = m.forward(&mut fresh, &next, Positions::All).unwrap();
            assert_eq!(got, want, "shape {s}, path {path:?}");
        }
    }
}

#[test]
fn bad_trees_and_bad_keeps_are_refused_and_change_nothing() {
    let cfg = &shapes()[0];
    let m = random_model(cfg, 90);
    let mut cache = m.new_cache();
    m.prefill(&mut cache, &tokens(91, 5, cfg.vocab_size))
        .unwrap();
    let nodes = tokens(92, 3, cfg.vocab_size);
    for parents in [[0u32, 2, 1], [0, 1, 5], [1, 0, 0]] {
        let err = m
            .forward_batch(&mut [BatchEntry {
                cache: &mut cache,
                tokens: &nodes,
                positions: Positions::All,
                tree: Some(&parents),
            }])
            .unwrap_err();
        assert!(
            matches!(err, crate::ModelError::BadTree(_)),
            "{parents:?}: {err}"
        );
        assert_eq!(cache.len(), 5);
    }
    run_tree(&m, &mut cache, &nodes, &[0, 0, 1]);
    for keep in [&[1usize, 0][..], &[0, 3], &[2, 2]] {
        let err = cache.keep_rows(5, keep).unwrap_err();
        assert!(matches!(err, crate::ModelError::BadKeep { .. }), "{keep:?}");
        assert_eq!(cache.len(), 8);
    }
    assert!(cache.keep_rows(9, &[]).is_err(), "a start past the end");
}

/// Trees and chains of several sessions in one pass give what each gives alone; row by
/// row in f32, and through the padded groups in bf16 (there against the paths as
/// chains, within bf16's rounding).
#[test]
fn a_ragged_batch_of_trees_and_chains_equals_each_alone() {
    let cfg = &shapes()[1];
    let parents_b: [u32; 4] = [0, 1, 1, 2];
    for dtype in [DType::F32, DType::BF16] {
        let m = random_model_in(cfg, 95, dtype);
        let contexts = [
            tokens(96, 7, cfg.vocab_size),
            tokens(97, 3, cfg.vocab_size),
            tokens(98, 12, cfg.vocab_size),
        ];
        let blocks = [
            tokens(99, PARENTS.len(), cfg.vocab_size),
            tokens(100, 5, cfg.vocab_size),
            tokens(101, parents_b.len(), cfg.vocab_size),
        ];
        let trees: [Option<&[u32]>; 3] = [Some(&PARENTS), None, Some(&parents_b)];
        let setup = || {
            let mut caches: Vec<_> = contexts.iter().map(|_| m.new_cache()).collect();
            for (c, ctx) in caches.iter_mut().zip(&contexts) {
                m.prefill(c, ctx).unwrap();
            }
            caches
        };
        let mut alone = setup();
        let want: Vec<Logits> = (0..3)
            .map(|i| {
                m.forward_batch(&mut [BatchEntry {
                    cache: &mut alone[i],
                    tokens: &blocks[i],
                    positions: Positions::All,
                    tree: trees[i],
                }])
                .unwrap()
                .pop()
                .unwrap()
            })
            .collect();
        let mut caches = setup();
        let mut entries: Vec<_> = caches
            .iter_mut()
            .zip(&blocks)
            .zip(trees)
            .map(|((cache, tokens), tree)| BatchEntry {
                cache,
                tokens,
                positions: Positions::All,
                tree,
            })
            .collect();
        let got = m.forward_batch(&mut entries).unwrap();
        let tolerance = if dtype == DType::F32 { 1e-5 } else { 0.1 };
        for i in 0..3 {
            let d = max_diff(got[i].as_slice(), want[i].as_slice());
            assert!(d <= tolerance, "{dtype:?} session {i}: {d}");
        }
        // Against the paths as chains, through the padded groups too.
        let mut chain_cache = m.new_cache();
        for path in paths(&parents_b) {
            chain_cache.truncate(0).unwrap();
            m.prefill(&mut chain_cache, &contexts[2]).unwrap();
            let chain: Vec<u32> = path.iter().map(|&n| blocks[2][n]).collect();
            let c = m.forward(&mut chain_cache, &chain, Positions::All).unwrap();
            for (row, &node) in path.iter().enumerate() {
                let d = max_diff(c.row(row), got[2].row(node));
                let scale = c.row(row).iter().fold(0f32, |a, x| a.max(x.abs()));
                assert!(
                    d <= 0.05 * scale.max(1.0),
                    "{dtype:?} path {path:?} row {row}: {d} of {scale}"
                );
            }
        }
    }
}
