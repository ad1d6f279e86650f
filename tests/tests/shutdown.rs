//! Graceful shutdown: the verifier stops taking sessions, answers what it is already
//! verifying, ends idle sessions with UNAVAILABLE on both transports (so a draft node
//! knows to go elsewhere), and exits with nobody cut off.

mod common;

use std::time::Duration;

use common::raw::*;
use common::*;
use tandem_protocol::client::Transport;
use tandem_protocol::{frame, pb::cloud_message::Kind as Down};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_idle_sessions_with_unavailable_and_cuts_nobody_off() {
    let v = start_verifier(VerifierOptions::default()).await;
    let grpc_addr = v.running.grpc_addr.unwrap();

    // A gRPC session that has had one verdict and is now idle.
    let mut g = raw_grpc(&v, None).await.unwrap();
    let Down::Opened(o) = g.ask(open_msg(&fingerprint(), "")).await.unwrap() else {
        panic!("no Opened")
    };
    let block = draft_msg(o.session_id, o.committed_len, o.first_token, vec![5, 6], 1);
    assert!(matches!(g.ask(block).await.unwrap(), Down::Verdict(_)));

    // A QUIC session, idle after opening.
    let conn = raw_quic(&v).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    frame::write(&mut send, &open_msg(&fingerprint(), ""))
        .await
        .unwrap();
    assert!(matches!(read(&mut recv).await, Down::Opened(_)));
    assert_eq!(v.running.active_sessions(), 2);
    // A QUIC stream whose first frame is half sent: it must not hold the shutdown,
    // and it is told UNAVAILABLE too.
    let (mut half, mut half_recv) = conn.open_bi().await.unwrap();
    let open = frame::encode(&open_msg(&fingerprint(), ""));
    half.write_all(&open[..open.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = v.target(Transport::Grpc, None);

    let cut_off = tokio::time::timeout(
        Duration::from_secs(20),
        v.running.shutdown(Duration::from_secs(30)),
    )
    .await
    .expect("the shutdown waited out its grace period");
    assert_eq!(cut_off, 0, "a session had to be cut off");
    match read(&mut half_recv).await {
        Down::Error(e) => assert_eq!(Code::from_i32(e.code), Code::Unavailable),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }

    let status = g.next().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
    match read(&mut recv).await {
        Down::Error(e) => assert_eq!(Code::from_i32(e.code), Code::Unavailable),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    // Gone: nothing listens any more.
    assert!(tokio::net::TcpStream::connect(grpc_addr).await.is_err());
    assert!(
        tandem_protocol::client::Connection::connect(&t.endpoint, t.options)
            .await
            .is_err()
    );
}
