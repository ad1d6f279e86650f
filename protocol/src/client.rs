//! The edge's view of a verifier: one API over gRPC and QUIC.
//!
//! [`Connection::connect`] reaches a verifier at a `grpc://` or `quic://` address;
//! [`Connection::open_session`] gives a [`SessionChannel`], a pair of channels that
//! carry the session's messages, with the emulated link (if any) applied in both
//! directions and every byte counted.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;

use crate::frame::{self, Framing};
use crate::link::{self, Direction, LinkProfile, Shaper};
use crate::pb::{self, verifier_client::VerifierClient};
use crate::{AUTH_HEADER, ProtocolError, WireError};

/// Where a verifier listens: `grpc://HOST:PORT` or `quic://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Which transport.
    pub transport: Transport,
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Endpoint {
    /// The endpoint of a listening socket.
    pub fn at(transport: Transport, addr: std::net::SocketAddr) -> Self {
        Self {
            transport,
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

/// The two transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// gRPC over HTTP/2 (cleartext).
    Grpc,
    /// QUIC with TLS 1.3, ALPN `tandem/1`.
    Quic,
}

impl Transport {
    /// Its name, and its scheme in an address: `grpc` or `quic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Quic => "quic",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "grpc" => Ok(Transport::Grpc),
            "quic" => Ok(Transport::Quic),
            _ => Err(format!("{s:?}: expected \"grpc\" or \"quic\"")),
        }
    }
}

impl FromStr for Endpoint {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError::BadEndpoint(s.to_string());
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        let transport: Transport = scheme.parse().map_err(|_| bad())?;
        let (host, port) = rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            transport,
            host: host.to_string(),
            port: port.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.transport.as_str();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// How to connect.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// QUIC: the PEM certificate to trust (the verifier's `cert.pem`).
    pub ca: Option<PathBuf>,
    /// Bearer token, if the verifier requires one.
    pub auth_token: Option<String>,
    /// Emulated link applied to every message (none: the real socket only).
    pub link: Option<LinkProfile>,
    /// Seed of the link's jitter and loss.
    pub link_seed: u64,
    /// Largest message accepted from the verifier, bytes (0: 64 MiB).
    pub max_message_bytes: usize,
}

/// Bytes a session sent and received, counted as they cross the wire (message plus
/// the transport's own per-message framing: 5 bytes for gRPC, the varint for QUIC).
#[derive(Debug, Default)]
pub struct ByteCounters {
    /// Edge → cloud.
    pub up: AtomicU64,
    /// Cloud → edge.
    pub down: AtomicU64,
}

/// The channels of one open session stream.
#[derive(Debug)]
pub struct SessionChannel {
    /// Messages to the verifier.
    pub tx: mpsc::Sender<pb::EdgeMessage>,
    /// Messages from the verifier; an `Err` ends the session (a refusal as a status,
    /// or a lost connection).
    pub rx: mpsc::Receiver<Result<pb::CloudMessage, ProtocolError>>,
    /// Bytes so far.
    pub bytes: Arc<ByteCounters>,
}

#[derive(Debug, Clone)]
enum Inner {
    Grpc(VerifierClient<tonic::transport::Channel>),
    Quic(quinn::Connection),
}

/// A connection to one verifier.
#[derive(Debug, Clone)]
pub struct Connection {
    inner: Inner,
    endpoint: Endpoint,
    opts: ConnectOptions,
    sessions: Arc<AtomicU64>,
}

const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

impl Connection {
    /// Connects to `endpoint`.
    pub async fn connect(endpoint: &Endpoint, opts: ConnectOptions) -> Result<Self, ProtocolError> {
        let fail = |m: String| ProtocolError::Connect {
            endpoint: endpoint.to_string(),
            message: m,
        };
        let max = if opts.max_message_bytes == 0 {
            DEFAULT_MAX_MESSAGE
        } else {
            opts.max_message_bytes
        };
        let inner = match endpoint.transport {
            Transport::Grpc => {
                let host = if endpoint.host.contains(':') {
                    format!("[{}]", endpoint.host)
                } else {
                    endpoint.host.clone()
                };
                let channel = tonic::transport::Endpoint::from_shared(format!(
                    "http://{host}:{}",
                    endpoint.port
                ))
                .map_err(|e| fail(e.to_string()))?
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| fail(error_chain(&e)))?;
                Inner::Grpc(
                    VerifierClient::new(channel)
                        .max_decoding_message_size(max)
                        .max_encoding_message_size(usize::MAX),
                )
            }
            Transport::Quic => {
                let ca = opts.ca.as_ref().ok_or_else(|| {
                    fail("QUIC needs the verifier's certificate: pass --ca PATH/cert.pem".into())
                })?;
                let config = crate::tls::quic_client_config(ca)?;
                let addr = resolve(&endpoint.host, endpoint.port)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let bind: SocketAddr = if addr.is_ipv6() {
                    "[::]:0".parse().expect("literal")
                } else {
                    "0.0.0.0:0".parse().expect("literal")
                };
                let mut ep = quinn::Endpoint::client(bind).map_err(|e| fail(e.to_string()))?;
                ep.set_default_client_config(config);
                let connecting = ep
                    .connect(addr, &endpoint.host)
                    .map_err(|e| fail(e.to_string()))?;
                let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
                    .await
                    .map_err(|_| fail("no answer within 5 s".into()))?
                    .map_err(|e| fail(e.to_string()))?;
                Inner::Quic(conn)
            }
        };
        Ok(Self {
            inner,
            endpoint: endpoint.clone(),
            opts,
            sessions: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The address this connection reached.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// What the verifier serves. Over an emulated link this costs one round trip.
    pub async fn info(&self) -> Result<pb::InfoResponse, ProtocolError> {
        if let Some(link) = &self.opts.link {
            tokio::time::sleep(link.rtt()).await;
        }
        match &self.inner {
            Inner::Grpc(client) => {
                let mut req = tonic::Request::new(pb::InfoRequest::default());
                self.authorize(req.metadata_mut())?;
                let resp = client.clone().info(req).await.map_err(WireError::from)?;
                Ok(resp.into_inner())
            }
            Inner::Quic(conn) => {
                let (mut send, mut recv) = conn.open_bi().await.map_err(lost)?;
                let msg = pb::EdgeMessage {
                    kind: Some(pb::edge_message::Kind::Info(pb::InfoRequest {
                        auth_token: self.opts.auth_token.clone().unwrap_or_default(),
                    })),
                };
                frame::write(&mut send, &msg).await.map_err(lost)?;
                send.finish().map_err(lost)?;
                let reply: Option<pb::CloudMessage> = frame::read(&mut recv, self.max_message())
                    .await
                    .map_err(|e| ProtocolError::BadFrame(e.to_string()))?;
                match reply.and_then(|m| m.kind) {
                    Some(pb::cloud_message::Kind::Info(info)) => Ok(info),
                    Some(pb::cloud_message::Kind::Error(e)) => Err(WireError::from_pb(&e).into()),
                    other => Err(ProtocolError::BadFrame(format!(
                        "expected an Info answer, got {other:?}"
                    ))),
                }
            }
        }
    }

    /// Opens a session stream. The first message to send is an `Open`.
    pub async fn open_session(&self) -> Result<SessionChannel, ProtocolError> {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let bytes = Arc::new(ByteCounters::default());
        let (edge_tx, edge_rx) = mpsc::channel::<pb::EdgeMessage>(64);
        let (cloud_tx, cloud_rx) = mpsc::channel::<Result<pb::CloudMessage, ProtocolError>>(64);
        // Count at the edge, then (optionally) delay, then hand to the transport.
        let framing = match self.inner {
            Inner::Grpc(_) => Framing::Grpc,
            Inner::Quic(_) => Framing::Quic,
        };
        let up = count(edge_rx, bytes.clone(), framing);
        let (up, down_tx, down_rx) = match &self.opts.link {
            Some(profile) if !profile.is_passthrough() => {
                let seed = self.opts.link_seed.wrapping_add(n);
                let up = link::shape(up, Shaper::new(profile, Direction::Up, seed), edge_len);
                let (tx, rx) = mpsc::channel(64);
                let down = link::shape(rx, Shaper::new(profile, Direction::Down, seed), cloud_len);
                (up, tx, down)
            }
            _ => {
                let (tx, rx) = mpsc::channel(64);
                (up, tx, rx)
            }
        };
        tokio::spawn(forward_down(down_rx, cloud_tx, bytes.clone(), framing));
        match &self.inner {
            Inner::Grpc(client) => {
                let mut req = tonic::Request::new(ReceiverStream::new(up));
                self.authorize(req.metadata_mut())?;
                let mut client = client.clone();
                tokio::spawn(async move {
                    let mut stream = match client.session(req).await {
                        Ok(resp) => resp.into_inner(),
                        Err(status) => {
                            let _ = down_tx.send(Err(grpc_error(status))).await;
                            return;
                        }
                    };
                    loop {
                        let item = match stream.message().await {
                            Ok(Some(m)) => Ok(m),
                            Ok(None) => Err(ProtocolError::Disconnected(
                                "the verifier ended the session".into(),
                            )),
                            Err(status) => Err(grpc_error(status)),
                        };
                        let end = item.is_err();
                        if down_tx.send(item).await.is_err() || end {
                            return;
                        }
                    }
                });
            }
            Inner::Quic(conn) => {
                let (mut send, mut recv) = conn.open_bi().await.map_err(lost)?;
                let token = self.opts.auth_token.clone().unwrap_or_default();
                let mut up = up;
                tokio::spawn(async move {
                    while let Some(mut msg) = up.recv().await {
                        if let Some(pb::edge_message::Kind::Open(open)) = &mut msg.kind {
                            open.auth_token = token.clone();
                        }
                        if frame::write(&mut send, &msg).await.is_err() {
                            return;
                        }
                    }
                    let _ = send.finish();
                });
                let limit = self.max_message();
                tokio::spawn(async move {
                    loop {
                        let item = match frame::read::<pb::CloudMessage, _>(&mut recv, limit).await
                        {
                            Ok(Some(m)) => Ok(m),
                            Ok(None) => Err(ProtocolError::Disconnected(
                                "the verifier ended the session".into(),
                            )),
                            Err(e) => Err(ProtocolError::Disconnected(e.to_string())),
                        };
                        let end = item.is_err();
                        if down_tx.send(item).await.is_err() || end {
                            return;
                        }
                    }
                });
            }
        }
        Ok(SessionChannel {
            tx: edge_tx,
            rx: cloud_rx,
            bytes,
        })
    }

    fn max_message(&self) -> u32 {
        if self.opts.max_message_bytes == 0 {
            DEFAULT_MAX_MESSAGE as u32
        } else {
            self.opts.max_message_bytes.min(u32::MAX as usize) as u32
        }
    }

    fn authorize(&self, md: &mut tonic::metadata::MetadataMap) -> Result<(), ProtocolError> {
        if let Some(token) = &self.opts.auth_token {
            let value: MetadataValue<_> = format!("Bearer {token}").parse().map_err(|_| {
                ProtocolError::Auth(
                    "the auth token is not valid header text (printable ASCII only)".into(),
                )
            })?;
            md.insert(AUTH_HEADER, value);
        }
        Ok(())
    }
}

/// Bytes the link emulation charges for an edge message (framed as gRPC frames it, on
/// either transport, so both meet the same link).
fn edge_len(m: &pb::EdgeMessage) -> usize {
    Framing::Grpc.framed_len(m.encoded_len())
}

fn cloud_len(m: &Result<pb::CloudMessage, ProtocolError>) -> usize {
    m.as_ref()
        .map_or(0, |m| Framing::Grpc.framed_len(m.encoded_len()))
}

/// Counts the bytes of every message that passes.
fn count(
    mut rx: mpsc::Receiver<pb::EdgeMessage>,
    bytes: Arc<ByteCounters>,
    framing: Framing,
) -> mpsc::Receiver<pb::EdgeMessage> {
    let (tx, out) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            bytes.up.fetch_add(
                framing.framed_len(m.encoded_len()) as u64,
                Ordering::Relaxed,
            );
            if tx.send(m).await.is_err() {
                return;
            }
        }
    });
    out
}

async fn forward_down(
    mut rx: mpsc::Receiver<Result<pb::CloudMessage, ProtocolError>>,
    tx: mpsc::Sender<Result<pb::CloudMessage, ProtocolError>>,
    bytes: Arc<ByteCounters>,
    framing: Framing,
) {
    while let Some(m) = rx.recv().await {
        if let Ok(msg) = &m {
            bytes.down.fetch_add(
                framing.framed_len(msg.encoded_len()) as u64,
                Ordering::Relaxed,
            );
        }
        if tx.send(m).await.is_err() {
            return;
        }
    }
}

fn grpc_error(status: tonic::Status) -> ProtocolError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            ProtocolError::Disconnected(status.message().to_string())
        }
        _ => WireError::from(status).into(),
    }
}

fn lost(e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Disconnected(e.to_string())
}

/// The full cause chain of an error, for messages that must say why.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} does not resolve")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print() {
        for s in [
            "grpc://127.0.0.1:50051",
            "quic://localhost:4433",
            "quic://[::1]:9",
        ] {
            let e: Endpoint = s.parse().unwrap();
            assert_eq!(e.to_string(), s);
        }
        for s in [
            "http://x:1",
            "grpc://x",
            "grpc://:1",
            "quic://x:99999",
            "x:1",
        ] {
            assert!(s.parse::<Endpoint>().is_err(), "{s}");
        }
    }
}
