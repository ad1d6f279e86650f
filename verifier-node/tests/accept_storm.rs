//! Out of file descriptors: a flood of connections exhausts the process's limit, so
//! accepting fails with EMFILE while connections wait in the backlog. The accept loop
//! backs off (10 ms, doubling to 1 s) instead of retrying at once, which spun two cores
//! for as long as the flood lasted; once the flood is gone the verifier serves again.
//!
//! The verifier runs as its own process under `ulimit -n 128` (soft and hard, so its
//! start-up raise to the hard limit cannot lift it), and says the limit it runs with.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use tandem_protocol::pb::InfoRequest;
use tandem_protocol::pb::verifier_client::VerifierClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 128;
const FLOOD: usize = 200;

/// Reads lines of the verifier's stdout until it has said where gRPC and metrics are.
fn addresses(out: &mut impl BufRead) -> (SocketAddr, SocketAddr) {
    let (mut grpc, mut metrics) = (None, None);
    let mut line = String::new();
    while grpc.is_none() || metrics.is_none() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "verifier exited");
        if let Some(a) = line.trim().strip_prefix("listening on grpc://") {
            grpc = Some(a.parse().unwrap());
        }
        if let Some(a) = line.trim().strip_prefix("metrics on http://") {
            metrics = Some(a.trim_end_matches("/metrics").parse().unwrap());
        }
    }
    (grpc.unwrap(), metrics.unwrap())
}

async fn scrape(addr: SocketAddr) -> String {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    sock.read_to_string(&mut page).await.unwrap();
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_flood_backs_off_and_the_verifier_recovers() {
    let certs = tempfile::tempdir().unwrap();
    let log = certs.path().join("stderr.log");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n {LIMIT} && exec \"$0\" serve --model builtin:tiny-target --grpc 127.0.0.1:0 --quic off --metrics 127.0.0.1:0 --ca-dir \"$1\" 2> \"$2\""
        ))
        .arg(env!("CARGO_BIN_EXE_verifier-node"))
        .arg(certs.path())
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (grpc, metrics) = addresses(&mut out);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains(&format!("open-files limit: {LIMIT}")),
        "{said}"
    );

    // More connections than descriptors; hold them for two seconds.
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(tokio::net::TcpStream::connect(grpc).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(flood);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let page = scrape(metrics).await;
    let errors: f64 = page
        .lines()
        .filter(|l| l.starts_with("tandem_accept_errors_total{listener=\"grpc\"}"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    eprintln!("failed accepts during the flood: {errors}");
    // It ran out (the test is not vacuous), and backed off: a retry at once makes
    // hundreds of thousands of failed accepts in two seconds, the back-off about ten.
    assert!(
        errors >= 1.0,
        "the flood never exhausted the descriptors:\n{page}"
    );
    assert!(errors <= 50.0, "{errors} failed accepts: the loop spins");

    // Served again.
    let mut client = VerifierClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let info = client
        .info(InfoRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.model, "builtin:tiny-target");
    let _ = child.kill();
    let _ = child.wait();
}
