//! The edge's view of a verifier: one API over gRPC and QUIC.
//!
//! [`Connection::connect`] reaches a verifier at a `grpc://` or `quic://` address;
//! [`Connection::open_session`] gives a [`SessionChannel`], a pair of channels that
//! carry the session's messages, with the emulated link (if any) applied in both
//! directions and every byte counted.
//!
//! Each transport is one module behind one interface ([`grpc`], [`quic`], mirroring the
//! verifier's own `grpc.rs` and `quic.rs`); what every session shares, byte counting
//! and link shaping, is one task per session ([`pump`]).

mod grpc;
mod pump;
mod quic;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::ProtocolError;
use crate::frame::Framing;
use crate::link::{Direction, LinkProfile, Shaper};
use crate::pb;

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

/// How long a client hears nothing on a connection (its keep-alives unanswered)
/// before it calls the verifier dead and falls back. Over QUIC a connection uses the
/// smaller of the two sides' idle timeouts, and never less than three probe timeouts,
/// so a slow link stretches it rather than losing a live verifier.
pub const DEAD_PEER_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

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

/// A message from the verifier as a session's channel carries it; an `Err` ends the
/// session (a refusal as a status, or a lost connection). Boxed, like the messages to
/// the verifier: tokio's channels buffer 32 slots at a time, and boxed slots make an
/// open session's buffers ~1 kB instead of ~24 kB (a simulated fleet holds 100 000).
pub type FromCloud = Result<Box<pb::CloudMessage>, ProtocolError>;

/// The channels of one open session stream.
#[derive(Debug)]
pub struct SessionChannel {
    /// Messages to the verifier.
    pub tx: mpsc::Sender<Box<pb::EdgeMessage>>,
    /// Messages from the verifier.
    pub rx: mpsc::Receiver<FromCloud>,
    /// Bytes so far.
    pub bytes: Arc<ByteCounters>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The messages from the verifier, as a transport hands them on: an `Err` ends the
/// session.
type Downlink = mpsc::Sender<Result<pb::CloudMessage, ProtocolError>>;

/// What a transport does for the client.
trait Wire: Send + Sync + fmt::Debug {
    /// How it frames messages (for the byte counts).
    fn framing(&self) -> Framing;
    /// Asks for the verifier's facts and limits.
    fn info<'a>(
        &'a self,
        opts: &'a ConnectOptions,
    ) -> BoxFuture<'a, Result<pb::InfoResponse, ProtocolError>>;
    /// Opens a session stream that carries `up` to the verifier and its answers to
    /// `down`, until either side ends.
    fn open<'a>(
        &'a self,
        opts: &'a ConnectOptions,
        up: mpsc::Receiver<pb::EdgeMessage>,
        down: Downlink,
    ) -> BoxFuture<'a, Result<(), ProtocolError>>;
    /// Closes the connection and waits (briefly) until the verifier has been told.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// A connection to one verifier.
#[derive(Debug, Clone)]
pub struct Connection {
    wire: Arc<dyn Wire>,
    endpoint: Endpoint,
    opts: ConnectOptions,
    sessions: Arc<AtomicU64>,
}

const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

impl ConnectOptions {
    /// Largest message accepted from the verifier, bytes.
    fn max_message(&self) -> usize {
        if self.max_message_bytes == 0 {
            DEFAULT_MAX_MESSAGE
        } else {
            self.max_message_bytes
        }
    }
}

impl Connection {
    /// Connects to `endpoint`.
    pub async fn connect(endpoint: &Endpoint, opts: ConnectOptions) -> Result<Self, ProtocolError> {
        let fail = |m: String| ProtocolError::Connect {
            endpoint: endpoint.to_string(),
            message: m,
        };
        let wire: Arc<dyn Wire> = match endpoint.transport {
            Transport::Grpc => Arc::new(grpc::GrpcWire::connect(endpoint, &opts, fail).await?),
            Transport::Quic => Arc::new(quic::QuicWire::connect(endpoint, &opts, fail).await?),
        };
        Ok(Self {
            wire,
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
            crate::timer::sleep(link.rtt()).await;
        }
        self.wire.info(&self.opts).await
    }

    /// Closes the connection (every session on it ends at the verifier at once) and
    /// waits at most a couple of seconds for the verifier to be told. Call it before a
    /// process exits: a QUIC connection left open holds its sessions at the verifier
    /// until its idle timeout.
    pub async fn close(&self) {
        self.wire.close().await
    }

    /// Opens a session stream. The first message to send is an `Open`.
    pub async fn open_session(&self) -> Result<SessionChannel, ProtocolError> {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let bytes = Arc::new(ByteCounters::default());
        let (edge_tx, edge_rx) = mpsc::channel(64);
        let (cloud_tx, cloud_rx) = mpsc::channel(64);
        let (up_tx, up_rx) = mpsc::channel(64);
        let (down_tx, down_rx) = mpsc::channel(64);
        self.wire.open(&self.opts, up_rx, down_tx).await?;
        let link = self
            .opts
            .link
            .as_ref()
            .filter(|p| !p.is_passthrough())
            .map(|profile| {
                let seed = self.opts.link_seed.wrapping_add(n);
                (
                    Shaper::new(profile, Direction::Up, seed),
                    Shaper::new(profile, Direction::Down, seed),
                )
            });
        tokio::spawn(
            pump::Pump {
                edge: edge_rx,
                to_wire: up_tx,
                from_wire: down_rx,
                cloud: cloud_tx,
                bytes: bytes.clone(),
                framing: self.wire.framing(),
                link,
            }
            .run(),
        );
        Ok(SessionChannel {
            tx: edge_tx,
            rx: cloud_rx,
            bytes,
        })
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
