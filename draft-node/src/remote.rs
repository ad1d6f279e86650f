//! The edge's session with the verifier: connect, open (or re-open), send blocks,
//! wait for answers under a deadline.
//!
//! How a verifier is reached is a seam ([`Dial`], [`Conn`]): a [`VerifierTarget`]
//! over QUIC or gRPC in a real run, an in-memory verifier on a virtual clock in a
//! simulation. Either way a session is a [`SessionChannel`], and everything above it
//! (deadlines, refusals, eviction, byte counts) is this module's, shared by both.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tandem_protocol::client::{ConnectOptions, Connection, Endpoint, SessionChannel};
use tandem_protocol::{ProtocolError, WireError, pb};
use tonic::Code;

use crate::DraftError;
use crate::clock::{BoxFuture, Clock, timeout};

/// A verifier the edge can connect to.
pub trait Dial: Send + Sync + fmt::Debug {
    /// Connects.
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Conn>, ProtocolError>>;
}

/// A connection to a verifier.
pub trait Conn: Send + Sync + fmt::Debug {
    /// Asks for the verifier's facts and limits.
    fn info(&self) -> BoxFuture<'_, Result<pb::InfoResponse, ProtocolError>>;
    /// Opens a session stream; the first message to send on it is an `Open`.
    fn open_session(&self) -> BoxFuture<'_, Result<SessionChannel, ProtocolError>>;
    /// Closes the connection and waits (briefly) until the verifier knows, so that
    /// every session on it ends there at once.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

impl Dial for VerifierTarget {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Conn>, ProtocolError>> {
        Box::pin(async move {
            let conn = Connection::connect(&self.endpoint, self.options.clone()).await?;
            Ok(Box::new(conn) as Box<dyn Conn>)
        })
    }
}

/// A verifier with replicas: each connection goes to the next replica in turn, starting
/// at one the request's seed picks (so sessions spread), skipping any that cannot be
/// reached (so a session lost with its replica re-joins on another).
#[derive(Debug)]
pub(crate) struct Replicas {
    target: VerifierTarget,
    next: AtomicUsize,
}

impl Replicas {
    /// Over `target`'s endpoint and its replicas, starting at `seed`'s pick.
    pub fn new(target: VerifierTarget, seed: u64) -> Self {
        let n = 1 + target.replicas.len() as u64;
        Self {
            target,
            next: AtomicUsize::new((seed % n) as usize),
        }
    }

    fn endpoint(&self, i: usize) -> &Endpoint {
        match i {
            0 => &self.target.endpoint,
            i => &self.target.replicas[i - 1],
        }
    }
}

impl Dial for Replicas {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Conn>, ProtocolError>> {
        Box::pin(async move {
            let n = 1 + self.target.replicas.len();
            let start = self.next.load(Ordering::Acquire);
            let mut last = None;
            for i in (0..n).map(|k| (start + k) % n) {
                let ep = self.endpoint(i);
                match Connection::connect(ep, self.target.options.clone()).await {
                    Ok(conn) => {
                        self.next.store((i + 1) % n, Ordering::Release);
                        return Ok(Box::new(conn) as Box<dyn Conn>);
                    }
                    Err(e) => {
                        tracing::debug!("replica {ep} unreachable: {e}");
                        last = Some(e);
                    }
                }
            }
            Err(last.expect("at least one endpoint"))
        })
    }
}

impl Conn for Connection {
    fn info(&self) -> BoxFuture<'_, Result<pb::InfoResponse, ProtocolError>> {
        Box::pin(Connection::info(self))
    }

    fn open_session(&self) -> BoxFuture<'_, Result<SessionChannel, ProtocolError>> {
        Box::pin(Connection::open_session(self))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(Connection::close(self))
    }
}

/// Which verifier, and how to reach it.
#[derive(Debug, Clone)]
pub struct VerifierTarget {
    /// Its address.
    pub endpoint: Endpoint,
    /// Replicas of the same target, tried in turn after `endpoint` (see [`Replicas`]);
    /// QUIC replicas share one certificate, or `options.ca` holds each one's.
    pub replicas: Vec<Endpoint>,
    /// Certificates, token, emulated link.
    pub options: ConnectOptions,
}

/// Where `verifier-node serve` writes the certificate QUIC clients trust, relative to
/// its working directory; clients use it when no other is given and it exists.
pub const DEFAULT_CA: &str = ".tandem/certs/cert.pem";

/// The certificate to trust: `given`, else [`DEFAULT_CA`] if that exists and a QUIC
/// endpoint needs one.
pub fn ca_or_default(given: Option<PathBuf>, quic: bool) -> Option<PathBuf> {
    given.or_else(|| {
        let default = PathBuf::from(DEFAULT_CA);
        (quic && default.exists()).then_some(default)
    })
}

/// A bearer token from the first line of `path`.
pub fn token_from_file(path: &Path) -> Result<String, DraftError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DraftError::Usage(format!(
            "cannot read the auth token file {}: {e}",
            path.display()
        ))
    })?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    /// Nothing within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed or broke.
    #[error(transparent)]
    Link(ProtocolError),
    /// The verifier refused (a status that ended the session).
    #[error("{0}")]
    Refused(WireError),
    /// The verifier no longer knows the session (it was evicted): re-open it.
    #[error("session evicted: {0}")]
    Evicted(WireError),
}

/// Whether a refusal means "this verifier cannot serve you now" (shutting down, full):
/// a reason to go on alone and come back, not to give up.
fn transient(e: &WireError) -> bool {
    matches!(e.code, Code::Unavailable | Code::ResourceExhausted)
}

impl From<ProtocolError> for Lost {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Refused(w) if !transient(&w) => Lost::Refused(w),
            other => Lost::Link(other),
        }
    }
}

/// A connection and at most one open session on it.
#[derive(Debug)]
pub(crate) struct Remote {
    dial: Arc<dyn Dial>,
    clock: Arc<dyn Clock>,
    conn: Option<Box<dyn Conn>>,
    chan: Option<SessionChannel>,
    /// Bytes of sessions already closed.
    closed_up: u64,
    closed_down: u64,
    pub info: Option<pb::InfoResponse>,
}

impl Remote {
    pub fn new(dial: Arc<dyn Dial>, clock: Arc<dyn Clock>) -> Self {
        Self {
            dial,
            clock,
            conn: None,
            chan: None,
            closed_up: 0,
            closed_down: 0,
            info: None,
        }
    }

    /// Connects (if not connected) and asks for `Info`.
    pub async fn connect(&mut self, deadline: Duration) -> Result<&pb::InfoResponse, Lost> {
        if self.conn.is_none() {
            let conn = timeout(&*self.clock, deadline, self.dial.connect())
                .await
                .map_err(|_| Lost::Timeout(deadline))??;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_ref().expect("just set");
        match timeout(&*self.clock, deadline, conn.info()).await {
            Err(_) => {
                self.conn = None;
                Err(Lost::Timeout(deadline))
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e.into())
            }
            Ok(Ok(info)) => Ok(self.info.insert(info)),
        }
    }

    /// Opens a session stream and sends `open`; returns the `Opened` answer.
    pub async fn open(&mut self, open: pb::Open, deadline: Duration) -> Result<pb::Opened, Lost> {
        self.close();
        let conn = self
            .conn
            .as_ref()
            .ok_or_else(|| Lost::Link(ProtocolError::Disconnected("not connected".into())))?;
        let chan = conn.open_session().await.map_err(|e| {
            self.conn = None;
            Lost::from(e)
        })?;
        self.chan = Some(chan);
        self.send(pb::edge_message::Kind::Open(open)).await?;
        match self.recv(deadline).await? {
            pb::cloud_message::Kind::Opened(o) => Ok(o),
            pb::cloud_message::Kind::Error(e) => Err(Lost::Refused(WireError::from_pb(&e))),
            other => Err(Lost::Link(ProtocolError::BadFrame(format!(
                "expected Opened, got {other:?}"
            )))),
        }
    }

    pub async fn send(&mut self, kind: pb::edge_message::Kind) -> Result<(), Lost> {
        let chan = self.chan.as_ref().ok_or_else(no_session)?;
        chan.tx
            .send(Box::new(pb::EdgeMessage { kind: Some(kind) }))
            .await
            .map_err(|_| {
                Lost::Link(ProtocolError::Disconnected(
                    "the session stream closed".into(),
                ))
            })
    }

    /// The next message of the session, or why none came within `deadline`.
    pub async fn recv(&mut self, deadline: Duration) -> Result<pb::cloud_message::Kind, Lost> {
        let chan = self.chan.as_mut().ok_or_else(no_session)?;
        let got = timeout(&*self.clock, deadline, chan.rx.recv())
            .await
            .map(|m| m.map(|m| m.map(|m| *m)));
        let result = match got {
            Err(_) => Err(Lost::Timeout(deadline)),
            Ok(None) => Err(Lost::Link(ProtocolError::Disconnected(
                "the session stream closed".into(),
            ))),
            Ok(Some(Err(e))) => Err(e.into()),
            // A refusal that is not about one block (seq 0) and says "not now".
            Ok(Some(Ok(pb::CloudMessage {
                kind: Some(pb::cloud_message::Kind::Error(e)),
            }))) if e.seq == 0 && transient(&WireError::from_pb(&e)) => Err(Lost::Link(
                ProtocolError::Disconnected(WireError::from_pb(&e).to_string()),
            )),
            Ok(Some(Ok(pb::CloudMessage { kind: Some(kind) }))) => Ok(kind),
            Ok(Some(Ok(_))) => Err(Lost::Link(ProtocolError::BadFrame(
                "empty CloudMessage".into(),
            ))),
        };
        if let Err(Lost::Link(_) | Lost::Timeout(_)) = &result {
            // The connection is suspect: start over on the next attempt.
            self.close();
            self.conn = None;
        }
        result
    }

    /// Bytes sent and received so far, all sessions together.
    pub fn bytes(&self) -> (u64, u64) {
        let (mut up, mut down) = (self.closed_up, self.closed_down);
        if let Some(c) = &self.chan {
            up += c.bytes.up.load(Ordering::Relaxed);
            down += c.bytes.down.load(Ordering::Relaxed);
        }
        (up, down)
    }

    /// The connection, to close it.
    pub fn take_conn(&mut self) -> Option<Box<dyn Conn>> {
        self.conn.take()
    }

    /// Ends the session stream (the verifier frees the session).
    pub fn close(&mut self) {
        if let Some(c) = self.chan.take() {
            let _ = c.tx.try_send(Box::new(pb::EdgeMessage {
                kind: Some(pb::edge_message::Kind::Close(pb::Close {})),
            }));
            self.closed_up += c.bytes.up.load(Ordering::Relaxed);
            self.closed_down += c.bytes.down.load(Ordering::Relaxed);
        }
    }
}

fn no_session() -> Lost {
    Lost::Link(ProtocolError::Disconnected("no open session".into()))
}
