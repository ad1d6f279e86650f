//! A peer that vanishes without a word (a crash, a cable pulled: no FIN, no RST, no
//! CONNECTION_CLOSE) is noticed by both sides of a QUIC session from keep-alives alone:
//! the draft node falls back and finishes without waiting out its deadline, and the
//! verifier frees the session, its slot and its KV reservation.
//!
//! The network is a UDP relay between them that the test cuts: from then on every
//! packet is dropped, both ways.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use common::*;
use tandem_draft::{Strategy, VerifierTarget};
use tandem_protocol::client::{ConnectOptions, Endpoint, Transport};
use tokio::net::UdpSocket;

/// Relays UDP between one client and `server` until `cut` is set; returns the address
/// clients dial.
async fn relay(server: SocketAddr, cut: Arc<AtomicBool>) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let client = Arc::new(tokio::sync::Mutex::new(None::<SocketAddr>));
    let (f, b, c, k) = (front.clone(), back.clone(), client.clone(), cut.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *c.lock().await = Some(from);
            if !k.load(Ordering::Acquire) {
                let _ = b.send(&buf[..n]).await;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = back.recv(&mut buf).await {
            if let Some(to) = *client.lock().await
                && !cut.load(Ordering::Acquire)
            {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vanished_peer_is_noticed_by_keep_alives_on_both_sides() {
    let v = start_verifier(VerifierOptions::default()).await;
    let cut = Arc::new(AtomicBool::new(false));
    let front = relay(v.running.quic_addr.unwrap(), cut.clone()).await;
    let target = VerifierTarget {
        replicas: Vec::new(),
        endpoint: Endpoint::at(Transport::Quic, front),
        options: ConnectOptions {
            ca: v.running.cert_path.clone(),
            ..Default::default()
        },
    };
    let prompt = prompt_ids(PROMPTS[0]);
    let mut cfg = config(Strategy::Speculative { k: 4 }, prompt.clone(), 48);
    cfg.ignore_eos = true;
    cfg.fallback = true;
    // Neither the deadline nor a retry may be what ends the wait.
    cfg.deadline = Duration::from_secs(600);
    cfg.retry = Duration::from_secs(600);

    let (cut_now_tx, mut cut_now) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (go_on_tx, go_on) = std_mpsc::channel::<()>();
    let generation = tokio::spawn(async move {
        let (mut n, mut asked) = (0usize, false);
        let mut on_tokens = move |tokens: &[u32], _: bool| {
            n += tokens.len();
            if !asked && n >= 12 {
                asked = true;
                cut_now_tx.send(()).unwrap();
                tokio::task::block_in_place(|| go_on.recv().unwrap());
            }
        };
        try_run_with(Some(target), &cfg, &mut on_tokens).await
    });
    cut_now.recv().await.unwrap();
    assert_eq!(v.running.active_sessions(), 1);
    cut.store(true, Ordering::Release);
    go_on_tx.send(()).unwrap();

    // Both sides notice within a few idle timeouts, far inside the 600 s deadline. The
    // generation also pays each fallback attempt to reconnect to the dead address
    // (quinn gives a handshake to a silent address three probe timeouts, ~3 s, and the
    // draft loop waits for it): on a quiet two-core machine it ends 13 s after the cut,
    // so 30 s leaves room for a loaded one and stays far inside the deadline.
    let report = tokio::time::timeout(Duration::from_secs(30), generation)
        .await
        .expect("the draft node waited for its deadline: the dead verifier went unnoticed")
        .unwrap()
        .unwrap();
    let s = &report.summary;
    assert_eq!((s.tokens, s.fallbacks, s.resyncs), (48, 1, 0), "{s:?}");
    let first_unverified = report.unverified[0];
    assert_eq!(
        report.output_ids[..first_unverified],
        greedy_reference(&prompt, 48, true)[..first_unverified]
    );
    for _ in 0..300 {
        if v.running.active_sessions() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        v.running.active_sessions(),
        0,
        "the verifier kept the vanished client's session"
    );
    v.running.stop().await;
}
