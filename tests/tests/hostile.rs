//! Clients that hold what they should not cannot starve the verifier. Each attack below
//! meets its bound (a precise status, or its connections closed) while a healthy
//! speculative session started during the attack completes exactly (its output is the
//! target's greedy output). The bounds are set small so the attacks are small.

mod common;

use std::time::Duration;

use common::raw::*;
use common::*;
use tandem_draft::Strategy;
use tandem_protocol::client::Transport;
use tandem_protocol::frame;
use tandem_protocol::pb::{self, cloud_message::Kind as Down};
use tandem_verifier::bounds::ClientBounds;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const SECOND: Duration = Duration::from_secs(1);

fn bounds() -> ClientBounds {
    ClientBounds {
        max_connections: 16,
        max_pending_streams: 8,
        max_pending_per_connection: 4,
        max_buffered_bytes: 1 << 20,
        first_message_timeout: SECOND,
        message_timeout: SECOND,
        ..ClientBounds::default()
    }
}

async fn verifier() -> Verifier {
    verifier_with(bounds()).await
}

async fn verifier_with(bounds: ClientBounds) -> Verifier {
    start_verifier(VerifierOptions {
        bounds,
        ..VerifierOptions::default()
    })
    .await
}

fn expect_status(got: (Code, String), code: Code, needle: &str) {
    assert_eq!(got.0, code, "{}", got.1);
    let msg = got.1.replace("%20", " ");
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

/// A speculative session over `transport` that gets in at the first try and equals
/// greedy decoding.
async fn healthy_at_once(v: &Verifier, transport: Transport) {
    let prompt = prompt_ids(PROMPTS[1]);
    let mut cfg = config(Strategy::Speculative { k: 4 }, prompt.clone(), 24);
    cfg.ignore_eos = true;
    let report = run(Some(v.target(transport, None)), &cfg).await;
    assert_eq!(report.output_ids, greedy_reference(&prompt, 24, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_that_never_say_what_they_are_are_bounded_and_timed_out() {
    // The first streams must still be waiting when the ninth and tenth arrive, after
    // three connection handshakes: a first-message timeout of 1 s was not enough on a
    // loaded two-core machine (the oldest stream timed out before it could give way).
    let v = verifier_with(ClientBounds {
        first_message_timeout: 5 * SECOND,
        ..bounds()
    })
    .await;
    // Eight streams that never finish their first message: four gRPC, four QUIC.
    let mut h = h2_to(v.running.grpc_addr.unwrap()).await;
    let mut grpc = Vec::new();
    for _ in 0..4 {
        grpc.push(h2_session(&mut h, vec![]).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let quic = raw_quic(&v).await;
    let mut quic_streams = Vec::new();
    for _ in 0..4 {
        quic_streams.push(quic_partial(&quic, &[0x80]).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A ninth and a tenth (on connections of their own, one per transport) are let in:
    // the two that waited longest give way.
    let (ninth, _keep) = h2_session(&mut h2_to(v.running.grpc_addr.unwrap()).await, vec![]).await;
    let (_s, mut tenth) = quic_partial(&raw_quic(&v).await, &[0x80]).await;
    let mut grpc = grpc.into_iter();
    for _ in 0..2 {
        let (resp, _send) = grpc.next().unwrap();
        expect_status(
            h2_status(resp).await,
            Code::ResourceExhausted,
            "had waited longest",
        );
    }
    // A healthy session started during the flood gets in at once, on either transport.
    healthy_at_once(&v, Transport::Grpc).await;
    healthy_at_once(&v, Transport::Quic).await;
    // The rest gave way too, or ran out of time.
    for (resp, _send) in grpc {
        let (code, msg) = h2_status(resp).await;
        assert!(
            matches!(code, Code::ResourceExhausted | Code::DeadlineExceeded),
            "{code:?} {msg}"
        );
    }
    for (_send, mut recv) in quic_streams {
        match read(&mut recv).await {
            Down::Error(e) => assert!(
                [Code::ResourceExhausted, Code::DeadlineExceeded].contains(&Code::from(e.code)),
                "{e:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
    // The newest ones waited their full time.
    expect_status(
        h2_status(ninth).await,
        Code::DeadlineExceeded,
        "first message",
    );
    expect_error(read(&mut tenth).await, Code::DeadlineExceeded, 0, "");
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_connection_cannot_take_every_pending_slot() {
    let v = verifier().await;
    // Four waiting streams on one connection of each transport: the fifth is refused,
    // while other connections still have room.
    let mut h = h2_to(v.running.grpc_addr.unwrap()).await;
    let mut grpc = Vec::new();
    for _ in 0..4 {
        grpc.push(h2_session(&mut h, vec![]).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (resp, _keep) = h2_session(&mut h, vec![]).await;
    expect_status(
        h2_status(resp).await,
        Code::ResourceExhausted,
        "max_pending_per_connection",
    );
    let quic = raw_quic(&v).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(quic_partial(&quic, &[0x80]).await);
    }
    let (_s, mut recv) = quic_partial(&quic, &[0x80]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_s5, mut fifth) = quic_partial(&quic, &[0x80]).await;
    expect_error(
        read(&mut fifth).await,
        Code::ResourceExhausted,
        0,
        "max_pending_per_connection",
    );
    // Seven of eight global slots are taken; a healthy session on its own connection
    // gets the eighth at once.
    healthy_at_once(&v, Transport::Quic).await;
    expect_error(read(&mut recv).await, Code::DeadlineExceeded, 0, "");
    drop(grpc);
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_sent_messages_are_capped_in_bytes_and_in_time() {
    let v = verifier().await;
    let open = prost::Message::encode_to_vec(&open_msg(&fingerprint(), ""));
    // A session whose second message stops 10 bytes short: DEADLINE_EXCEEDED.
    let mut h = h2_to(v.running.grpc_addr.unwrap()).await;
    let mut body = grpc_prefix(open.len() as u32);
    body.extend_from_slice(&open);
    body.extend_from_slice(&grpc_prefix(1000));
    body.extend_from_slice(&[0; 990]);
    let (resp, _stalled) = h2_session(&mut h, body).await;
    // The same over QUIC.
    let quic = raw_quic(&v).await;
    let mut bytes = frame::encode(&open_msg(&fingerprint(), "")).to_vec();
    bytes.extend_from_slice(&quic_prefix(1000));
    bytes.extend_from_slice(&[0; 990]);
    let (_s, mut recv) = quic_partial(&quic, &bytes).await;
    // Unfinished messages that hold 600 KiB each: the second passes the 1 MiB budget.
    let (big, _big) = h2_session(
        &mut h,
        [grpc_prefix(900 << 10), vec![0; 600 << 10]].concat(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_q, mut quic_big) = quic_partial(
        &quic,
        &[quic_prefix(900 << 10), vec![0; 600 << 10]].concat(),
    )
    .await;
    healthy_at_once(&v, Transport::Grpc).await;
    expect_error(
        read(&mut quic_big).await,
        Code::ResourceExhausted,
        0,
        "max_buffered_bytes",
    );
    // It was also a first message: whichever of the two deadlines comes first.
    expect_status(h2_status(big).await, Code::DeadlineExceeded, "Connections.");
    expect_status(
        h2_status(resp).await,
        Code::DeadlineExceeded,
        "not complete",
    );
    assert!(matches!(read(&mut recv).await, Down::Opened(_)));
    expect_error(
        read(&mut recv).await,
        Code::DeadlineExceeded,
        0,
        "not complete",
    );
    healthy_at_once(&v, Transport::Quic).await;
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_that_say_nothing_are_closed_and_the_rest_wait_their_turn() {
    let v = verifier().await;
    // Sixteen TCP connections, the listener's cap, that never send the HTTP/2 preface.
    let mut silent = Vec::new();
    for _ in 0..16 {
        silent.push(
            tokio::net::TcpStream::connect(v.running.grpc_addr.unwrap())
                .await
                .unwrap(),
        );
    }
    // A healthy client waits in the backlog until they are closed, then runs.
    healthy_at_once(&v, Transport::Grpc).await;
    for mut s in silent {
        let mut sink = Vec::new();
        // The server's own preface, then the end of the stream (or a reset).
        let _ = s.read_to_end(&mut sink).await;
        assert!(s.write_all(&[0; 64]).await.is_err() || sink.len() < 1024);
    }
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_advertises_the_bounds() {
    let v = verifier().await;
    let conn = raw_quic(&v).await;
    let info = frame::encode(&pb::EdgeMessage {
        kind: Some(pb::edge_message::Kind::Info(pb::InfoRequest::default())),
    });
    let Down::Info(info) = quic_bytes(&conn, &info).await else {
        panic!("no Info")
    };
    let c = info.connections.expect("Info.connections");
    assert_eq!(c, bounds().to_pb(info.limits.unwrap().max_sessions));
    assert_eq!(
        (
            c.first_message_timeout_ms,
            c.idle_timeout_ms,
            c.keep_alive_ms
        ),
        (1000, 5000, 1000)
    );
    v.running.stop().await;
}
