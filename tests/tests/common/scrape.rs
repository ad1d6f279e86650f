//! Reading the verifier's Prometheus endpoint.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` from `addr`, the whole response.
pub async fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).await.unwrap();
    out
}

/// Sum of every sample of `name` (any labels).
pub fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// The current value of metric `name` on the verifier at `addr`.
pub async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    value(&scrape(addr, "/metrics").await, name)
}

/// Waits (up to a minute) until metric `name` on the verifier at `addr` reads 0.
pub async fn until_zero(addr: std::net::SocketAddr, name: &str) {
    for _ in 0..12_000 {
        if metric(addr, name).await == 0.0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("{name} on the verifier was still not 0 after a minute");
}
