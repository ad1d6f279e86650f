//! Token trees over the wire (gRPC and QUIC): each round sends a tree holding the
//! target's next greedy tokens on one branch among wrong siblings; the verdict names
//! that branch's nodes as its path and adds the target's token, so tree by tree the
//! session commits exactly the target's greedy output. A malformed tree gets
//! INVALID_ARGUMENT naming what is wrong, and its session goes on.

mod common;

use common::raw::*;
use common::*;
use tandem_protocol::pb::{self, cloud_message::Kind as Down, edge_message::Kind as Up};
use tandem_protocol::{Limits, frame};
use tonic::Code;

/// A greedy `Draft` carrying a tree.
fn tree_msg(o: &Base, tokens: Vec<u32>, parents: Vec<u32>, seq: u64) -> pb::EdgeMessage {
    pb::EdgeMessage {
        kind: Some(Up::Draft(pb::Draft {
            session_id: o.session,
            base_len: o.len,
            anchor: o.last,
            tokens,
            q: vec![],
            seq,
            parents,
        })),
    }
}

/// What the next block must extend.
struct Base {
    session: u64,
    len: u32,
    last: u32,
}

/// One of each transport's session streams, asked one message at a time.
enum Stream {
    Grpc(Raw),
    Quic(quinn::SendStream, quinn::RecvStream),
}

impl Stream {
    async fn ask(&mut self, m: pb::EdgeMessage) -> Down {
        match self {
            Stream::Grpc(raw) => raw.ask(m).await.unwrap(),
            Stream::Quic(send, recv) => {
                frame::write(send, &m).await.unwrap();
                read(recv).await
            }
        }
    }
}

/// A wrong token for a position whose right one is `t` (within any vocabulary).
fn wrong(t: u32) -> u32 {
    if t == 0 { 1 } else { t - 1 }
}

/// Rounds of trees on one open session, checked against the target's greedy output.
async fn rounds(s: &mut Stream) {
    let prompt = prompt_ids(PROMPTS[1]);
    let Down::Opened(o) = s.ask(open_msg(&fingerprint(), "")).await else {
        panic!("no Opened")
    };
    let reference = greedy_reference(&prompt, 40, true);
    assert_eq!(o.first_token, reference[0]);
    let mut base = Base {
        session: o.session_id,
        len: o.committed_len,
        last: o.first_token,
    };
    let mut done = 1;
    for seq in 1..=6u64 {
        let t = &reference[done..done + 4];
        // context → w, t0; w → w'; t0 → t1, w; t1 → t2 (right in odd rounds only).
        let third = if seq % 2 == 1 { t[2] } else { wrong(t[2]) };
        let tokens = vec![wrong(t[0]), t[0], wrong(t[1]), t[1], wrong(t[1]), third];
        let parents = vec![0, 0, 1, 2, 2, 4];
        let (path, accepted) = if seq % 2 == 1 {
            (vec![1, 3, 5], 3)
        } else {
            (vec![1, 3], 2)
        };
        match s.ask(tree_msg(&base, tokens, parents, seq)).await {
            Down::Verdict(v) => {
                assert_eq!(v.seq, seq);
                assert_eq!(v.path, path, "round {seq}");
                assert_eq!(v.accepted, accepted);
                assert_eq!(v.next_token, reference[done + accepted as usize]);
                assert_eq!(v.committed_len, base.len + accepted + 1);
                done += accepted as usize + 1;
                base.len = v.committed_len;
                base.last = v.next_token;
            }
            other => panic!("round {seq}: expected a verdict, got {other:?}"),
        }
    }
    // Malformed trees: precise errors; the session goes on.
    let bad = [
        (vec![1, 2], vec![0, 2], "names parent row 2"),
        (vec![1, 2], vec![0], "2 tree nodes but 1 parent"),
        (vec![1; 9], vec![0; 9], "limit of 8 (Limits.max_tree_nodes)"),
        (
            vec![1; 5],
            vec![0, 1, 2, 3, 4],
            "limit of 4 (Limits.max_tree_depth)",
        ),
    ];
    for (i, (tokens, parents, needle)) in bad.into_iter().enumerate() {
        let seq = 100 + i as u64;
        expect_error(
            s.ask(tree_msg(&base, tokens, parents, seq)).await,
            Code::InvalidArgument,
            seq,
            needle,
        );
    }
    let t = reference[done];
    match s
        .ask(tree_msg(&base, vec![wrong(t), t], vec![0, 0], 200))
        .await
    {
        Down::Verdict(v) => assert_eq!((v.path, v.next_token), (vec![1], reference[done + 1])),
        other => panic!("expected a verdict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_trees_commit_the_targets_greedy_output_over_grpc_and_quic() {
    let v = start_verifier(VerifierOptions {
        limits: Limits {
            max_tree_nodes: 8,
            max_tree_depth: 4,
            ..Limits::default()
        },
        ..VerifierOptions::default()
    })
    .await;
    let mut grpc = Stream::Grpc(raw_grpc(&v, None).await.unwrap());
    rounds(&mut grpc).await;
    let conn = raw_quic(&v).await;
    let (send, recv) = conn.open_bi().await.unwrap();
    rounds(&mut Stream::Quic(send, recv)).await;
}
