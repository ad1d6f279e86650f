//! Bad input gets a precise answer and costs nobody else anything: each malformed
//! request below is answered with the code the contract names while a concurrent,
//! healthy session over an emulated link completes exactly (its output is the
//! target's greedy output).

mod common;

use common::raw::*;
use common::*;
use tandem_draft::Strategy;
use tandem_protocol::client::Transport;
use tandem_protocol::pb::{self, cloud_message::Kind as Down, edge_message::Kind as Up};
use tandem_protocol::{Limits, frame};
use tokio::sync::mpsc;
use tonic::Code;

const TOKEN: &str = "s3cret";
const VOCAB: u32 = 711;

fn limits() -> Limits {
    Limits {
        max_draft_tokens: 8,
        max_message_bytes: 64 << 10,
        ..Limits::default()
    }
}

async fn grpc_cases(v: &Verifier) {
    let mut s = raw_grpc(v, Some(TOKEN)).await.unwrap();
    let Down::Opened(o) = s.ask(open_msg(&fingerprint(), TOKEN)).await.unwrap() else {
        panic!("no Opened")
    };
    let (id, len, last) = (o.session_id, o.committed_len, o.first_token);
    let cases = [
        (
            draft_msg(id, len, last, vec![1, VOCAB], 1),
            Code::InvalidArgument,
            "tokens[1] = 711",
        ),
        (
            draft_msg(id, len, last, vec![1; 9], 2),
            Code::InvalidArgument,
            "limit of 8",
        ),
        (
            draft_msg(id, len + 1, last, vec![1], 3),
            Code::FailedPrecondition,
            "stale draft",
        ),
        (
            draft_msg(id, len, (last + 1) % VOCAB, vec![1], 4),
            Code::FailedPrecondition,
            "stale draft",
        ),
        (
            draft_msg(id + 1000, len, last, vec![1], 5),
            Code::NotFound,
            "unknown session",
        ),
    ];
    for (m, code, needle) in cases {
        let seq = match &m.kind {
            Some(Up::Draft(d)) => d.seq,
            _ => unreachable!(),
        };
        expect_error(s.ask(m).await.unwrap(), code, seq, needle);
    }
    // The session survived all of that.
    match s
        .ask(draft_msg(id, len, last, vec![5, 6], 6))
        .await
        .unwrap()
    {
        Down::Verdict(v) => {
            assert_eq!(v.seq, 6);
            assert_eq!(v.committed_len, len + v.accepted + 1);
        }
        other => panic!("expected a verdict, got {other:?}"),
    }
    // Oversized: a q of 20 000 floats is 80 kB, over the 64 kB limit.
    let mut big = draft_msg(id, len, last, vec![1], 7);
    if let Some(Up::Draft(d)) = &mut big.kind {
        d.q = vec![pb::DraftDistribution {
            dense: vec![0.5; 20_000],
            ..Default::default()
        }];
    }
    let status = s.ask(big).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("max_message_bytes"), "{status:?}");

    // Terminal refusals: a wrong fingerprint, a second Open, a missing or wrong token.
    let mut s = raw_grpc(v, Some(TOKEN)).await.unwrap();
    let status = s
        .ask(open_msg("tok1-0000000000000000", TOKEN))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("tokenizer fingerprint"),
        "{status:?}"
    );
    let mut s = raw_grpc(v, Some(TOKEN)).await.unwrap();
    assert!(matches!(
        s.ask(open_msg(&fingerprint(), TOKEN)).await.unwrap(),
        Down::Opened(_)
    ));
    let status = s.ask(open_msg(&fingerprint(), TOKEN)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // Bytes that are not protobuf: INVALID_ARGUMENT, as over QUIC (tonic alone says
    // INTERNAL).
    let bearer = format!("Bearer {TOKEN}");
    let status = grpc_bytes(v, Some(&bearer), vec![0xff; 6]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("does not decode"), "{status:?}");
    // The right token without its scheme.
    let open_bytes = prost::Message::encode_to_vec(&open_msg(&fingerprint(), TOKEN));
    let status = grpc_bytes(v, Some(TOKEN), open_bytes).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("Bearer <token>"), "{status:?}");
    // An Open that leaves the acceptance mode unset.
    let mut unset = open_msg(&fingerprint(), TOKEN);
    if let Some(Up::Open(o)) = &mut unset.kind {
        o.mode = pb::AcceptanceMode::Unspecified as i32;
    }
    let mut s = raw_grpc(v, Some(TOKEN)).await.unwrap();
    let status = s.ask(unset).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("Open.mode"), "{status:?}");
    // A stochastic session's q that sums to 711 (one weight per token).
    let mut hot = open_msg(&fingerprint(), TOKEN);
    if let Some(Up::Open(o)) = &mut hot.kind {
        o.mode = pb::AcceptanceMode::Stochastic as i32;
        o.sampling = Some(pb::Sampling {
            temperature: 1.0,
            ..Default::default()
        });
    }
    let mut s = raw_grpc(v, Some(TOKEN)).await.unwrap();
    let Down::Opened(o) = s.ask(hot).await.unwrap() else {
        panic!("no Opened")
    };
    let mut heavy = draft_msg(o.session_id, o.committed_len, o.first_token, vec![1], 8);
    if let Some(Up::Draft(d)) = &mut heavy.kind {
        d.q = vec![pb::DraftDistribution {
            dense: vec![1.0; VOCAB as usize],
            ..Default::default()
        }];
    }
    expect_error(
        s.ask(heavy).await.unwrap(),
        Code::InvalidArgument,
        8,
        "sums to 711",
    );
    for token in [None, Some("wrong")] {
        let status = match raw_grpc(v, token).await {
            Err(status) => status,
            Ok(mut s) => s.ask(open_msg(&fingerprint(), TOKEN)).await.unwrap_err(),
        };
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{token:?}: {status:?}"
        );
    }
}

/// Writes `bytes` on a new stream, finishes it, and reads the one answer frame.
async fn quic_cases(v: &Verifier) {
    let conn = raw_quic(v).await;
    // Garbage: a length prefix, then bytes that are not an EdgeMessage.
    let got = quic_bytes(&conn, &[5, 0xff, 0xff, 0xff, 0xff, 0xff]).await;
    expect_error(got, Code::InvalidArgument, 0, "does not decode");
    // Truncated: the prefix announces more than the stream carries.
    let mut cut = frame::encode(&open_msg(&fingerprint(), TOKEN)).to_vec();
    cut.truncate(cut.len() - 3);
    expect_error(
        quic_bytes(&conn, &cut).await,
        Code::InvalidArgument,
        0,
        "stream ended inside a frame",
    );
    // Oversized: a prefix announcing 10 MB.
    let mut huge = Vec::new();
    prost::encode_length_delimiter(10 << 20, &mut huge).unwrap();
    expect_error(
        quic_bytes(&conn, &huge).await,
        Code::ResourceExhausted,
        0,
        "exceeds the limit",
    );
    // No token.
    let mut no_token = open_msg(&fingerprint(), TOKEN);
    if let Some(Up::Open(o)) = &mut no_token.kind {
        o.auth_token.clear();
    }
    let got = quic_bytes(&conn, &frame::encode(&no_token)).await;
    expect_error(got, Code::Unauthenticated, 0, "bearer token");

    // The same connection still serves a proper session, which survives a bad block.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    frame::write(&mut send, &open_msg(&fingerprint(), TOKEN))
        .await
        .unwrap();
    let Down::Opened(o) = read(&mut recv).await else {
        panic!("no Opened")
    };
    frame::write(
        &mut send,
        &draft_msg(
            o.session_id,
            o.committed_len,
            o.first_token,
            vec![VOCAB + 5],
            1,
        ),
    )
    .await
    .unwrap();
    expect_error(
        read(&mut recv).await,
        Code::InvalidArgument,
        1,
        "out of range",
    );
    frame::write(
        &mut send,
        &draft_msg(o.session_id, o.committed_len, o.first_token, vec![3], 2),
    )
    .await
    .unwrap();
    assert!(matches!(read(&mut recv).await, Down::Verdict(v) if v.seq == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_precise_errors_while_a_healthy_session_completes() {
    let v = start_verifier(VerifierOptions {
        limits: limits(),
        auth_token: Some(TOKEN.into()),
        ..VerifierOptions::default()
    })
    .await;
    // The healthy session commits a first round, then waits (in its token callback)
    // until every bad request has been answered, then finishes.
    let prompt = prompt_ids(PROMPTS[0]);
    let mut target = v.target(Transport::Quic, Some("delay=1"));
    target.options.auth_token = Some(TOKEN.into());
    let mut cfg = config(Strategy::Speculative { k: 4 }, prompt.clone(), 48);
    cfg.ignore_eos = true;
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let (go_on_tx, go_on) = std::sync::mpsc::channel::<()>();
    let healthy = tokio::spawn(async move {
        let mut first = true;
        let mut on_tokens = move |_: &[u32], _: bool| {
            if std::mem::take(&mut first) {
                started_tx.send(()).unwrap();
                tokio::task::block_in_place(|| go_on.recv().unwrap());
            }
        };
        try_run_with(Some(target), &cfg, &mut on_tokens).await
    });
    started.recv().await.unwrap();
    grpc_cases(&v).await;
    quic_cases(&v).await;
    go_on_tx.send(()).unwrap();
    let report = healthy.await.unwrap().unwrap();
    assert_eq!(report.output_ids, greedy_reference(&prompt, 48, true));
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_over_the_limit_is_refused_and_a_freed_slot_is_reused() {
    let v = start_verifier(VerifierOptions {
        limits: Limits {
            max_sessions: 2,
            ..Limits::default()
        },
        auth_token: Some(TOKEN.into()),
        ..VerifierOptions::default()
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = raw_grpc(&v, Some(TOKEN)).await.unwrap();
        assert!(matches!(
            s.ask(open_msg(&fingerprint(), TOKEN)).await.unwrap(),
            Down::Opened(_)
        ));
        open.push(s);
    }
    let mut third = raw_grpc(&v, Some(TOKEN)).await.unwrap();
    let status = third
        .ask(open_msg(&fingerprint(), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("max_sessions"), "{status:?}");
    // Closing one session frees its slot.
    let first = open.remove(0);
    first
        .tx
        .send(pb::EdgeMessage {
            kind: Some(Up::Close(pb::Close {})),
        })
        .await
        .unwrap();
    drop(first);
    let mut again = None;
    for _ in 0..100 {
        let mut s = raw_grpc(&v, Some(TOKEN)).await.unwrap();
        match s.ask(open_msg(&fingerprint(), TOKEN)).await {
            Ok(Down::Opened(_)) => {
                again = Some(s);
                break;
            }
            // The close is still on its way to the engine: try again.
            Err(status) if status.code() == Code::ResourceExhausted => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(again.is_some(), "the freed slot was never reused");
    v.running.stop().await;
}
