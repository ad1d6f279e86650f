use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::*;

fn random(n: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n * k)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Each block type against the exact product of candle's dequantized weight with the
/// dequantized 8-bit activation, in f64: equal up to f32 rounding (and, for Q4_1, the
/// f16 rounding of each block's `s`, which llama.cpp stores the same way).
#[test]
fn matches_the_dequantized_product_for_every_kind_and_row_count() {
    let (n, k) = (48, 96);
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let w = Tensor::from_vec(random(n, k, 1), (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let wd: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mine = QMatrix::from_qtensor(&q).unwrap().unwrap();
        for m in [1, 5] {
            let xs = random(m, k, 7 + m as u64);
            let x = Tensor::from_vec(xs.clone(), (m, k), &Device::Cpu).unwrap();
            let got: Vec<f32> = mine
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for t in 0..m {
                let mut act = vec![
                    ActBlock {
                        q: [0; QK],
                        d: 0.0,
                        s: 0.0
                    };
                    k / QK
                ];
                quantize_row(&xs[t * k..(t + 1) * k], &mut act);
                let xq: Vec<f64> = act
                    .iter()
                    .flat_map(|b| b.q.iter().map(move |&v| f64::from(v) * f64::from(b.d)))
                    .collect();
                let s_err: f64 = act.iter().map(|b| f64::from(b.s.abs()) / 1024.0).sum();
                for j in 0..n {
                    let want: f64 = (0..k).map(|i| f64::from(wd[j * k + i]) * xq[i]).sum();
                    let have = f64::from(got[t * n + j]);
                    let tol = 1e-5 * (1.0 + want.abs())
                        + if dtype == GgmlDType::Q4_1 { s_err } else { 0.0 };
                    assert!(
                        (have - want).abs() <= tol,
                        "{dtype:?} m={m} [{t},{j}]: {have} vs {want}"
                    );
                }
            }
        }
    }
}

/// The SIMD and scalar dot products compute the same integer sums.
#[test]
fn simd_equals_scalar() {
    let k = 256;
    let mut act = vec![
        ActBlock {
            q: [0; QK],
            d: 0.0,
            s: 0.0
        };
        k / QK
    ];
    quantize_row(&random(1, k, 3), &mut act);
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let w = Tensor::from_vec(random(1, k, 5), (1, k), &Device::Cpu).unwrap();
        let m = QMatrix::from_qtensor(&QTensor::quantize(&w, dtype).unwrap())
            .unwrap()
            .unwrap();
        let scalar = match m.kind {
            Kind::Q4_0 => scalar::dot_q4_0,
            Kind::Q4_1 => scalar::dot_q4_1,
            Kind::Q8_0 => scalar::dot_q8_0,
        };
        let b = scalar(m.row(0), &act);
        // Alone and in a full tile (beside other tokens), the same bits.
        let mut alone = [0f32; 1];
        row_fn(m.kind)(m.row(0), &[&act], &mut alone);
        let mut other = act.clone();
        quantize_row(&random(1, k, 9), &mut other);
        let mut tile = [0f32; TILE];
        row_fn(m.kind)(m.row(0), &[&other, &act, &other, &act], &mut tile);
        assert_eq!(alone[0].to_bits(), tile[1].to_bits());
        assert_eq!(alone[0].to_bits(), tile[3].to_bits());
        let a = alone[0];
        assert!(
            (a - b).abs() < 1e-4 * (1.0 + b.abs()),
            "{dtype:?}: {a} vs {b}"
        );
    }
}

#[test]
fn stacked_rows_give_the_parts_outputs() {
    let k = 64;
    let parts: Vec<QMatrix> = [16, 8, 8]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let w = Tensor::from_vec(random(n, k, 11 + i as u64), (n, k), &Device::Cpu).unwrap();
            QMatrix::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q8_0).unwrap())
                .unwrap()
                .unwrap()
        })
        .collect();
    let all = QMatrix::stack(&parts.iter().collect::<Vec<_>>()).unwrap();
    let x = Tensor::from_vec(random(3, k, 2), (3, k), &Device::Cpu).unwrap();
    let y = all.forward(&x).unwrap();
    let mut at = 0;
    for p in &parts {
        let part = y.narrow(1, at, p.rows()).unwrap();
        let alone = p.forward(&x).unwrap();
        let d = (part - alone)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0);
        at += p.rows();
    }
}
