//! Probes a real `verifier-node serve` process as hostile and careless clients would, at
//! the scale the hostile-clients issue first reported, and prints what each probe cost
//! the verifier (resident and virtual memory, CPU, open descriptors), what the attacking
//! streams were answered, and how long a healthy speculative session took meanwhile.
//!
//! ```text
//! cargo build --release --bin verifier-node --bin draft-node
//! cargo run --release -p tandem-tests --example probe            # every probe
//! cargo run --release -p tandem-tests --example probe -- idle    # the ones named
//! ```
//!
//! Each probe gets a fresh verifier (default bounds, `builtin:tiny-target`), so its
//! figures are its own. Probes: never-open, one-connection, half-sent-grpc,
//! half-sent-quic, prefix-only-quic, idle, free-slot, dead-peer.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::raw::*;
use common::scrape::metric;
use common::*;
use tandem_draft::{Strategy, VerifierTarget};
use tandem_protocol::client::{ConnectOptions, Endpoint, Transport};
use tonic::Code;

/// A `verifier-node serve` child process on free loopback ports.
struct Node {
    child: Child,
    grpc: SocketAddr,
    quic: SocketAddr,
    metrics: SocketAddr,
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn sibling(name: &str) -> PathBuf {
    // target/release/examples/probe → target/release/NAME
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --bin {name}` first",
        path.display()
    );
    path
}

impl Node {
    async fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (grpc, metrics) = (free_port(), free_port());
        let quic = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(sibling("verifier-node"))
            .args(["serve", "--model", "builtin:tiny-target"])
            .args(["--grpc", &grpc.to_string(), "--quic", &quic.to_string()])
            .args(["--metrics", &metrics.to_string()])
            .arg("--ca-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let node = Node {
            child,
            grpc,
            quic,
            metrics,
            cert: dir.path().join("cert.pem"),
            _dir: dir,
        };
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(grpc).await.is_ok() && node.cert.exists() {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("verifier-node did not start");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of its /proc/PID/status, in kB.
    fn status_kb(&self, field: &str) -> u64 {
        status_kb(self.pid(), field)
    }

    fn rss_mb(&self) -> f64 {
        self.status_kb("VmRSS") as f64 / 1024.0
    }

    fn vm_mb(&self) -> f64 {
        self.status_kb("VmSize") as f64 / 1024.0
    }

    /// CPU time used so far (user + system), in clock ticks (1/100 s).
    fn cpu_ticks(&self) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &text[text.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn target(&self, transport: Transport) -> VerifierTarget {
        let addr = match transport {
            Transport::Grpc => self.grpc,
            Transport::Quic => self.quic,
        };
        VerifierTarget {
            endpoint: Endpoint::at(transport, addr),
            replicas: Vec::new(),
            options: ConnectOptions {
                ca: Some(self.cert.clone()),
                ..Default::default()
            },
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A field of /proc/PID/status, in kB (0 once the process is gone).
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Peak resident memory while a probe runs, sampled every 20 ms.
struct Peak {
    kb: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Peak {
    fn watch(pid: u32) -> Peak {
        let kb = Arc::new(AtomicU64::new(0));
        let seen = kb.clone();
        let task = tokio::spawn(async move {
            loop {
                seen.fetch_max(status_kb(pid, "VmRSS"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Peak { kb, task }
    }

    fn mb(self) -> f64 {
        self.task.abort();
        self.kb.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// A speculative session over `transport` that must equal greedy decoding; how long it
/// took, retrying while a bound refuses it (as a client would).
async fn healthy(node: &Node, transport: Transport) -> Duration {
    let prompt = prompt_ids(PROMPTS[1]);
    let mut cfg = config(Strategy::Speculative { k: 4 }, prompt.clone(), 24);
    cfg.ignore_eos = true;
    let t0 = Instant::now();
    let report = loop {
        match try_run(Some(node.target(transport)), &cfg).await {
            Ok(r) => break r,
            Err(e) if format!("{e:?}").contains("ResourceExhausted") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("healthy session failed: {e}"),
        }
    };
    assert_eq!(report.output_ids, greedy_reference(&prompt, 24, true));
    t0.elapsed()
}

/// Counts of the codes a set of streams ended with.
fn tally(codes: &[Code]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for c in codes {
        let name = format!("{c:?}");
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, n)) => *n += 1,
            None => counts.push((name, 1)),
        }
    }
    counts
        .iter()
        .map(|(n, c)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn line(probe: &str, what: String) {
    println!("{probe:18} {what}");
}

/// Waits for every stream's status, stamping when the last one came.
async fn statuses(
    t0: Instant,
    streams: Vec<tokio::task::JoinHandle<(Code, String)>>,
) -> (Vec<Code>, Duration) {
    let mut codes = Vec::new();
    for s in streams {
        codes.push(s.await.map(|(c, _)| c).unwrap_or(Code::Unknown));
    }
    (codes, t0.elapsed())
}

/// 10 000 gRPC streams (100 connections × 100) that never send `Open`.
async fn never_open() {
    let node = Node::start().await;
    let base = node.rss_mb();
    let peak = Peak::watch(node.pid());
    let t0 = Instant::now();
    let (mut streams, mut bodies, mut conns) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..100 {
        let mut send = h2_to(node.grpc).await;
        for _ in 0..100 {
            let (resp, body) = h2_session(&mut send, Vec::new()).await;
            bodies.push(body);
            streams.push(tokio::spawn(h2_status(resp)));
        }
        conns.push(send);
    }
    let during = healthy(&node, Transport::Grpc).await;
    let (codes, all_done) = statuses(t0, streams).await;
    line(
        "never-open",
        format!(
            "10000 streams: {}; all answered after {:.1} s; RSS {base:.0} MB → peak {:.0} MB → {:.0} MB after; healthy gRPC session during it: {:.0} ms",
            tally(&codes),
            all_done.as_secs_f64(),
            peak.mb(),
            node.rss_mb(),
            during.as_secs_f64() * 1e3
        ),
    );
}

/// 5 000 streams on one HTTP/2 connection.
async fn one_connection() {
    let node = Node::start().await;
    let mut send = h2_to(node.grpc).await;
    let mut started = 0;
    let mut streams = Vec::new();
    let mut bodies = Vec::new();
    let t0 = Instant::now();
    for _ in 0..5000 {
        // The client may open only as many as the server's SETTINGS allow.
        match tokio::time::timeout(
            Duration::from_millis(200),
            h2_session(&mut send, Vec::new()),
        )
        .await
        {
            Ok((resp, body)) => {
                started += 1;
                bodies.push(body);
                streams.push(tokio::spawn(h2_status(resp)));
            }
            Err(_) => break,
        }
    }
    let max = send.current_max_send_streams();
    let (codes, _) = statuses(t0, streams).await;
    line(
        "one-connection",
        format!(
            "5000 asked, {started} opened (server allows {max} concurrent): {}",
            tally(&codes)
        ),
    );
}

/// 50 gRPC streams each announcing 8 MiB and sending all but one byte.
async fn half_sent_grpc() {
    let node = Node::start().await;
    let base = node.rss_mb();
    let peak = Peak::watch(node.pid());
    let t0 = Instant::now();
    let (mut streams, mut bodies, mut conns) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..50 {
        let mut send = h2_to(node.grpc).await;
        let body = [grpc_prefix(8 << 20), vec![0; (8 << 20) - 1]].concat();
        let (resp, stream) = h2_session(&mut send, body).await;
        bodies.push(stream);
        conns.push(send);
        streams.push(tokio::spawn(h2_status(resp)));
    }
    let during = healthy(&node, Transport::Grpc).await;
    let (codes, all_done) = statuses(t0, streams).await;
    line(
        "half-sent-grpc",
        format!(
            "50 × (8 MiB − 1 B): {}; all answered after {:.1} s; RSS {base:.0} MB → peak {:.0} MB → {:.0} MB after; healthy gRPC session during it: {:.0} ms",
            tally(&codes),
            all_done.as_secs_f64(),
            peak.mb(),
            node.rss_mb(),
            during.as_secs_f64() * 1e3
        ),
    );
}

/// What a QUIC stream was answered: the in-stream error's code, or how it ended.
async fn quic_answer(mut recv: quinn::RecvStream) -> (Code, String) {
    match tandem_protocol::frame::read::<tandem_protocol::pb::CloudMessage, _>(&mut recv, 1 << 20)
        .await
    {
        Ok(Some(m)) => match m.kind {
            Some(tandem_protocol::pb::cloud_message::Kind::Error(e)) => {
                (Code::from_i32(e.code), e.message)
            }
            other => (Code::Ok, format!("{other:?}")),
        },
        Ok(None) => (Code::Unknown, "ended".into()),
        Err(e) => (Code::Unavailable, e.to_string()),
    }
}

/// A QUIC connection whose own send window does not throttle a flood: quinn keeps
/// counting the unsent bytes of streams the verifier stopped against the connection's
/// window, so with the default window the flood stalls itself before the verifier sees
/// all of it.
async fn flooding_quic(node: &Node) -> quinn::Connection {
    let mut cfg = tandem_protocol::tls::quic_client_config(&node.cert).unwrap();
    let mut t = quinn::TransportConfig::default();
    t.send_window(1 << 40);
    cfg.transport_config(Arc::new(t));
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(cfg);
    ep.connect(node.quic, "localhost").unwrap().await.unwrap()
}

/// 2 QUIC connections × 100 streams of almost-complete 8 MiB frames.
async fn half_sent_quic() {
    let node = Node::start().await;
    let base = node.rss_mb();
    let peak = Peak::watch(node.pid());
    let t0 = Instant::now();
    let mut streams = Vec::new();
    let mut keep = Vec::new();
    let frame = [quic_prefix(8 << 20), vec![0; (8 << 20) - 1]].concat();
    for _ in 0..2 {
        let conn = flooding_quic(&node).await;
        for _ in 0..100 {
            let (conn, frame) = (conn.clone(), frame.clone());
            streams.push(tokio::spawn(async move {
                let (mut send, recv) = conn.open_bi().await.unwrap();
                let answer = tokio::spawn(quic_answer(recv));
                let _ = send.write_all(&frame).await;
                let got = answer.await.unwrap();
                drop(send);
                got
            }));
        }
        keep.push(conn);
    }
    let during = healthy(&node, Transport::Quic).await;
    let (codes, all_done) = statuses(t0, streams).await;
    line(
        "half-sent-quic",
        format!(
            "2 × 100 × (8 MiB − 1 B): {}; all answered after {:.1} s; RSS {base:.0} MB → peak {:.0} MB → {:.0} MB after; healthy QUIC session during it: {:.0} ms",
            tally(&codes),
            all_done.as_secs_f64(),
            peak.mb(),
            node.rss_mb(),
            during.as_secs_f64() * 1e3
        ),
    );
}

/// 100 QUIC streams that send only a length prefix announcing 8 MiB.
async fn prefix_only_quic() {
    let node = Node::start().await;
    let (rss, vm) = (node.rss_mb(), node.vm_mb());
    let conn = quic_to(node.quic, &node.cert).await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(quic_partial(&conn, &quic_prefix(8 << 20)).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    line(
        "prefix-only-quic",
        format!(
            "100 prefixes of 8 MiB: RSS {rss:.0} → {:.0} MB, virtual {vm:.0} → {:.0} MB",
            node.rss_mb(),
            node.vm_mb()
        ),
    );
}

/// Holds `n` idle TCP connections to `addr` for `secs` (run as a child process, so the
/// probe's own descriptor limit does not cap the attack).
async fn hold(addr: SocketAddr, n: usize, secs: u64) {
    let mut socks = Vec::new();
    let mut failed = 0;
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(s)) => socks.push(s),
            _ => failed += 1,
        }
    }
    println!("{} {failed}", socks.len());
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

/// 21 000 idle TCP connections to the gRPC port, from three processes.
async fn idle() {
    let node = Node::start().await;
    let fds0 = node.fds();
    let holders: Vec<Child> = (0..3)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--hold", &node.grpc.to_string(), "7000", "30"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Let the connects land, then measure the verifier's CPU for 5 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (c0, t0) = (node.cpu_ticks(), Instant::now());
    let fds_during = node.fds();
    let during = healthy(&node, Transport::Grpc).await;
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(t0.elapsed())).await;
    let cpu = (node.cpu_ticks() - c0) as f64 / t0.elapsed().as_secs_f64();
    // Past the 10 s preface deadline, the header-less connections are gone.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let fds_after = node.fds();
    let after = healthy(&node, Transport::Grpc).await;
    let mut held = Vec::new();
    for h in holders {
        let out = h.wait_with_output().unwrap();
        held.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    line(
        "idle",
        format!(
            "3 × 7000 connections (connected failed: {held:?}); verifier fds {fds0} → {fds_during} → {fds_after} after the preface deadline; CPU {cpu:.0} % meanwhile; healthy gRPC session during it {:.0} ms, after {:.0} ms",
            during.as_secs_f64() * 1e3,
            after.as_secs_f64() * 1e3
        ),
    );
}

/// How long the verifier keeps a session whose client process is killed.
async fn free_slot() {
    for transport in [Transport::Quic, Transport::Grpc] {
        let node = Node::start().await;
        let addr = match transport {
            Transport::Grpc => node.grpc,
            Transport::Quic => node.quic,
        };
        let mut client = Command::new(sibling("draft-node"))
            .args(["generate", "--draft", "builtin:tiny-draft", "--verifier"])
            .arg(Endpoint::at(transport, addr).to_string())
            .arg("--ca")
            .arg(&node.cert)
            .args(["--prompt", "Once upon a time", "--max-new-tokens", "4000"])
            .args(["--ignore-eos", "--link", "wan"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while metric(node.metrics, "tandem_active_sessions").await < 1.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = client.kill();
        let _ = client.wait();
        let t0 = Instant::now();
        while metric(node.metrics, "tandem_active_sessions").await > 0.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        line(
            "free-slot",
            format!(
                "{transport}: client killed with SIGKILL mid-session, slot freed after {:.0} ms",
                t0.elapsed().as_secs_f64() * 1e3
            ),
        );
    }
}

/// How long a client takes to notice its verifier was killed (and go on alone).
async fn dead_peer() {
    for transport in [Transport::Quic, Transport::Grpc] {
        let mut node = Node::start().await;
        let pid = node.pid();
        let prompt = prompt_ids(PROMPTS[0]);
        let mut cfg = config(Strategy::Speculative { k: 4 }, prompt, 400);
        cfg.ignore_eos = true;
        cfg.fallback = true;
        let mut target = node.target(transport);
        target.options.link = Some("wan".parse().unwrap());
        let killed_at: Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
        let gap: Arc<std::sync::Mutex<Option<Duration>>> = Default::default();
        let (k, g) = (killed_at.clone(), gap.clone());
        let mut n = 0;
        let mut on_tokens = move |tokens: &[u32], _: bool| {
            n += tokens.len();
            let mut killed = k.lock().unwrap();
            match *killed {
                None if n >= 40 => {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                    *killed = Some(Instant::now());
                }
                Some(at) => {
                    let mut g = g.lock().unwrap();
                    if g.is_none() {
                        *g = Some(at.elapsed());
                    }
                }
                None => {}
            }
        };
        let report = try_run_with(Some(target), &cfg, &mut on_tokens)
            .await
            .unwrap();
        node.kill();
        let gap = gap.lock().unwrap().unwrap();
        line(
            "dead-peer",
            format!(
                "{transport} over a wan link: verifier killed with SIGKILL, client went on alone after {:.0} ms ({} fallbacks, {} tokens unverified)",
                gap.as_secs_f64() * 1e3,
                report.summary.fallbacks,
                report.unverified.len()
            ),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--hold") {
        let n = args[2].parse().unwrap();
        return hold(args[1].parse().unwrap(), n, args[3].parse().unwrap()).await;
    }
    let all = [
        "never-open",
        "one-connection",
        "half-sent-grpc",
        "half-sent-quic",
        "prefix-only-quic",
        "idle",
        "free-slot",
        "dead-peer",
    ];
    let chosen: Vec<&str> = if args.is_empty() {
        all.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    for name in chosen {
        match name {
            "never-open" => never_open().await,
            "one-connection" => one_connection().await,
            "half-sent-grpc" => half_sent_grpc().await,
            "half-sent-quic" => half_sent_quic().await,
            "prefix-only-quic" => prefix_only_quic().await,
            "idle" => idle().await,
            "free-slot" => free_slot().await,
            "dead-peer" => dead_peer().await,
            other => {
                eprintln!("unknown probe {other:?}; probes: {}", all.join(", "));
                std::process::exit(2);
            }
        }
    }
}
