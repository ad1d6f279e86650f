//! The wire codec on the hot path: encode + decode of one k = 8 draft block as a
//! length-delimited frame (what QUIC carries; gRPC's body is the same bytes behind a
//! 5-byte header), with no q (greedy), a sparse top-20 q, and a dense q over the tiny
//! vocabulary (711) and a Llama-2-sized one (32 000), as `repeated float` and as the
//! `dense_f32le` bytes. (Decoding stops at the message; turning bytes back into
//! probabilities is `convert::distribution_from_pb`, measured by `q_from_wire`.)
//! `frame_read` reads such a frame from memory as the verifier's QUIC reader does,
//! `plain` (length limit only) and `bounded` (with the message timeout and the shared
//! byte budget the verifier sets): the per-message cost of those bounds.

use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message;
use std::hint::black_box;
use tandem_protocol::{frame, pb};

fn block(q: Vec<pb::DraftDistribution>) -> pb::EdgeMessage {
    pb::EdgeMessage {
        kind: Some(pb::edge_message::Kind::Draft(pb::Draft {
            session_id: 42,
            base_len: 1234,
            anchor: 17,
            tokens: vec![101, 2202, 303, 40_404, 55, 606, 7077, 8],
            q,
            seq: 99,
            parents: vec![],
        })),
    }
}

fn sparse() -> pb::DraftDistribution {
    pb::DraftDistribution {
        ids: (0..20).map(|i| i * 37).collect(),
        probs: normalised((0..20).map(|i| 1.0 / (i as f32 + 2.0)).collect()),
        ..Default::default()
    }
}

/// Weights scaled to sum to 1, as a wire `q` must.
fn normalised(w: Vec<f32>) -> Vec<f32> {
    let total: f32 = w.iter().sum();
    w.into_iter().map(|x| x / total).collect()
}

fn probs(vocab: usize) -> Vec<f32> {
    normalised((0..vocab).map(|i| 1.0 / (i as f32 + 1.0)).collect())
}

/// Dense as a repeated float (the packed varint-free form prost loops over).
fn dense(vocab: usize) -> pb::DraftDistribution {
    pb::DraftDistribution {
        dense: probs(vocab),
        ..Default::default()
    }
}

/// Dense as the bytes the draft node sends.
fn dense_f32le(vocab: usize) -> pb::DraftDistribution {
    tandem_protocol::convert::distribution_to_pb(&tandem_decoding::Distribution::Dense(probs(
        vocab,
    )))
}

fn codec(c: &mut Criterion) {
    let cases = [
        ("greedy", block(vec![])),
        ("sparse_q_top20", block(vec![sparse(); 8])),
        ("dense_q_711", block(vec![dense(711); 8])),
        ("dense_q_32000", block(vec![dense(32_000); 8])),
        ("dense_f32le_q_711", block(vec![dense_f32le(711); 8])),
        ("dense_f32le_q_32000", block(vec![dense_f32le(32_000); 8])),
    ];
    let mut g = c.benchmark_group("codec_k8");
    for (name, msg) in &cases {
        let bytes = frame::encode(msg).freeze();
        eprintln!("{name}: {} bytes on the wire", bytes.len());
        g.bench_function(*name, |b| {
            b.iter(|| {
                let buf = frame::encode(black_box(msg));
                let back = pb::EdgeMessage::decode_length_delimited(buf.freeze()).unwrap();
                black_box(back)
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("q_from_wire");
    for (name, q) in [
        ("repeated_float_32000", dense(32_000)),
        ("f32le_32000", dense_f32le(32_000)),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                tandem_protocol::convert::distribution_from_pb(black_box(q.clone()), 32_000)
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn frame_read(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let bounded = frame::ReadBounds {
        max_len: 8 << 20,
        message_timeout: Some(std::time::Duration::from_secs(10)),
        budget: Some(tandem_protocol::budget::ByteBudget::new(256 << 20)),
    };
    let mut g = c.benchmark_group("frame_read");
    for (name, msg) in [
        ("greedy", block(vec![])),
        ("dense_f32le_q_32000", block(vec![dense_f32le(32_000); 8])),
    ] {
        let bytes = frame::encode(&msg).freeze();
        g.bench_function(format!("plain/{name}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut r: &[u8] = black_box(&bytes);
                    frame::read::<pb::EdgeMessage, _>(&mut r, 8 << 20)
                        .await
                        .unwrap()
                })
            })
        });
        g.bench_function(format!("bounded/{name}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut r: &[u8] = black_box(&bytes);
                    frame::read_within::<pb::EdgeMessage, _>(&mut r, &bounded)
                        .await
                        .unwrap()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codec, frame_read);
criterion_main!(benches);
