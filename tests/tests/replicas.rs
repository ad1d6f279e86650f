//! Verifier replicas behind a standard gRPC load balancer: nginx (`grpc_pass`, Debian's
//! package) in front of three `verifier-node`s. A session is one bidirectional stream,
//! so the proxy keeps it on one replica; sessions spread over all three, and when one
//! replica dies mid-run its sessions fall back, re-open through the proxy on another,
//! and every verified stretch is still the target's greedy continuation.
//!
//! Needs `nginx` on PATH or in /usr/sbin (`apt-get install nginx`; `.ci/run` installs it).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::scrape::metric;
use common::*;
use tandem_draft::{Report, Strategy, VerifierTarget};
use tandem_protocol::client::{ConnectOptions, Endpoint, Transport};
use tandem_verifier::Running;

const SESSIONS: usize = 128;
const NEW: usize = 48;
/// Each session waits here (after this many tokens) until the test has killed a replica.
const GATE_AT: usize = 12;

fn nginx_binary() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("this test needs nginx: install it with `apt-get install nginx` (.ci/run does)");
}

/// nginx in the foreground, balancing gRPC over `replicas`, on a free port.
struct Nginx {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: the master then takes its workers down with it.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

async fn nginx(replicas: &[SocketAddr]) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let servers: String = replicas
        .iter()
        .map(|a| format!("    server {a};\n"))
        .collect();
    let d = dir.path().display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         upstream verifiers {{\n{servers}  }}\n\
         server {{\n    listen 127.0.0.1:{port} http2;\n    client_max_body_size 0;\n\
         location / {{\n      grpc_pass grpc://verifiers;\n      grpc_read_timeout 300s;\n\
         grpc_send_timeout 300s;\n    }}\n  }}\n}}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = std::process::Command::new(nginx_binary())
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = dir.path().join("error.log");
    let proxy = Nginx {
        child,
        addr,
        _dir: dir,
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return proxy;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "nginx did not listen on {addr}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Holds every session at `GATE_AT` tokens until opened.
#[derive(Default)]
struct Gate {
    reached: AtomicUsize,
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        self.reached.fetch_add(1, Ordering::AcqRel);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }

    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

type Session = tokio::task::JoinHandle<Result<Report, tandem_draft::DraftError>>;

/// Starts `n` speculative sessions against `target` (session `i` with seed `i`, so
/// listed replicas are picked in turn) and returns once all of them wait at the gate.
async fn gated_sessions(n: usize, target: &VerifierTarget, gate: &Arc<Gate>) -> Vec<Session> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let prompt = prompt_ids(PROMPTS[i % PROMPTS.len()]);
        let mut cfg = config(Strategy::Speculative { k: 4 }, prompt, NEW);
        cfg.ignore_eos = true;
        cfg.fallback = true;
        cfg.seed = i as u64;
        let (target, gate) = (target.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            let mut on_tokens = move |tokens: &[u32], _: bool| {
                let before = n;
                n += tokens.len();
                if before < GATE_AT && n >= GATE_AT {
                    tokio::task::block_in_place(|| gate.wait());
                }
            };
            try_run_with(Some(target), &cfg, &mut on_tokens).await
        }));
    }
    while gate.reached.load(Ordering::Acquire) < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_spread_over_replicas_behind_nginx_and_survive_losing_one() {
    let mut replicas: Vec<Option<Running>> = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let d = tempfile::tempdir().unwrap();
        replicas.push(Some(serve_in(VerifierOptions::default(), d.path()).await));
        dirs.push(d);
    }
    let grpc: Vec<SocketAddr> = replicas
        .iter()
        .map(|r| r.as_ref().unwrap().grpc_addr.unwrap())
        .collect();
    let metrics: Vec<SocketAddr> = replicas
        .iter()
        .map(|r| r.as_ref().unwrap().metrics_addr.unwrap())
        .collect();
    let proxy = nginx(&grpc).await;

    let target = VerifierTarget {
        replicas: Vec::new(),
        endpoint: Endpoint::at(Transport::Grpc, proxy.addr),
        options: ConnectOptions::default(),
    };
    let gate = Arc::new(Gate::default());
    let tasks = gated_sessions(SESSIONS, &target, &gate).await;
    // Every session is open somewhere and held: the spread is what the proxy did.
    let mut opened = Vec::new();
    for m in &metrics {
        opened.push(metric(*m, "tandem_sessions_opened_total").await as usize);
    }
    eprintln!("sessions per replica through nginx: {opened:?}");
    assert_eq!(opened.iter().sum::<usize>(), SESSIONS, "{opened:?}");
    assert!(opened.iter().all(|&n| n > 0), "{opened:?}");
    // One replica dies with its sessions open.
    replicas[1].take().unwrap().stop().await;
    gate.release();

    let (mut fallbacks, mut resyncs, mut verified) = (0, 0, 0);
    for t in tasks {
        let report = t.await.unwrap().unwrap();
        assert_eq!(report.output_ids.len(), NEW);
        verified += assert_verified_exact(&report);
        fallbacks += report.summary.fallbacks;
        resyncs += report.summary.resyncs;
    }
    eprintln!(
        "after losing a replica: {fallbacks} fallbacks, {resyncs} resyncs, {verified} of {} tokens verified",
        SESSIONS * NEW
    );
    assert!(
        fallbacks >= opened[1],
        "every session of the lost replica fell back"
    );
    assert!(resyncs >= opened[1], "and re-joined on another replica");
    let mut after = 0;
    for i in [0, 2] {
        after += metric(metrics[i], "tandem_sessions_opened_total").await as usize;
    }
    assert!(
        after >= opened[0] + opened[2] + opened[1],
        "re-opened elsewhere"
    );
    for r in replicas.into_iter().flatten() {
        r.stop().await;
    }
    drop(proxy);
}

/// QUIC cannot go through nginx: the draft node is given every replica
/// (`--verifier quic://A,quic://B,quic://C`), spreads its sessions over them by seed,
/// and when one dies, re-joins on the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quic_sessions_spread_over_listed_replicas_and_fail_over() {
    const N: usize = 24;
    // One certificate for all three (they share a certificate directory).
    let certs = tempfile::tempdir().unwrap();
    let mut replicas: Vec<Option<Running>> = Vec::new();
    for _ in 0..3 {
        replicas.push(Some(
            serve_in(VerifierOptions::default(), certs.path()).await,
        ));
    }
    let quic: Vec<Endpoint> = replicas
        .iter()
        .map(|r| Endpoint::at(Transport::Quic, r.as_ref().unwrap().quic_addr.unwrap()))
        .collect();
    let metrics: Vec<SocketAddr> = replicas
        .iter()
        .map(|r| r.as_ref().unwrap().metrics_addr.unwrap())
        .collect();
    let target = VerifierTarget {
        endpoint: quic[0].clone(),
        replicas: quic[1..].to_vec(),
        options: ConnectOptions {
            ca: Some(certs.path().join("cert.pem")),
            ..Default::default()
        },
    };
    let gate = Arc::new(Gate::default());
    let tasks = gated_sessions(N, &target, &gate).await;
    let mut opened = Vec::new();
    for m in &metrics {
        opened.push(metric(*m, "tandem_sessions_opened_total").await as usize);
    }
    eprintln!("QUIC sessions per listed replica: {opened:?}");
    assert_eq!(opened, vec![N / 3; 3], "the seed spreads sessions evenly");
    replicas[0].take().unwrap().stop().await;
    gate.release();
    let (mut fallbacks, mut resyncs) = (0, 0);
    for t in tasks {
        let report = t.await.unwrap().unwrap();
        assert_eq!(report.output_ids.len(), NEW);
        assert_verified_exact(&report);
        fallbacks += report.summary.fallbacks;
        resyncs += report.summary.resyncs;
    }
    eprintln!("after losing replica 0: {fallbacks} fallbacks, {resyncs} resyncs");
    assert!(
        fallbacks >= N / 3 && resyncs >= N / 3,
        "{fallbacks} {resyncs}"
    );
    for r in replicas.into_iter().flatten() {
        r.stop().await;
    }
}
