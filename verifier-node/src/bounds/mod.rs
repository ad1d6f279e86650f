//! What one client may hold on the verifier, and for how long: connections per
//! listener, streams per connection, streams that have not yet said what they are,
//! bytes of messages not yet complete, and the time a silent peer, a missing first
//! message or a half-sent message may take. Every bound applies to gRPC and QUIC alike
//! and is advertised in `Info` (`Connections`).
//!
//! - [`listener`]: TCP accepting with a connection cap, a back-off on accept errors,
//!   and a deadline for a connection's first bytes.
//! - [`body`]: gRPC request bodies held to the message timeout and the byte budget.
//! - [`pending`]: streams before their first message, capped per connection and
//!   overall (full overall: the longest-waiting one gives way).
//! - [`FirstWithin`]: a session's inbound stream held to its first-message deadline.

pub mod body;
pub mod listener;
pub mod pending;

pub use pending::{ConnectionPending, Pending, PendingStreams};

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tandem_protocol::budget::ByteBudget;
use tandem_protocol::frame::ReadBounds;
use tandem_protocol::{WireError, pb};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_stream::Stream;

/// The bounds, as set on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientBounds {
    /// Most connections kept per listener (the next waits in the accept backlog).
    pub max_connections: usize,
    /// Most streams, all connections together, before their first message.
    pub max_pending_streams: usize,
    /// Most streams of one connection before their first message.
    pub max_pending_per_connection: usize,
    /// Most bytes, all streams together, held for messages not yet complete.
    pub max_buffered_bytes: u64,
    /// A stream's first message must arrive within this (and a TCP connection's
    /// HTTP/2 preface).
    pub first_message_timeout: Duration,
    /// A message, once begun, must be complete within this.
    pub message_timeout: Duration,
    /// How often the verifier pings its peers.
    pub keep_alive: Duration,
    /// How long a connection may hear nothing before it is closed.
    pub idle_timeout: Duration,
}

impl Default for ClientBounds {
    /// 4096 connections per listener, 1024 streams before `Open` (64 on one
    /// connection), 256 MiB of unfinished
    /// messages, 10 s to say the first message and to finish any message, a keep-alive
    /// every second and 5 s of silence before a peer is given up.
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_pending_streams: 1024,
            max_pending_per_connection: 64,
            max_buffered_bytes: 256 << 20,
            first_message_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
        }
    }
}

impl ClientBounds {
    /// Streams one connection may carry at once: every session the verifier admits,
    /// plus room for `Info` calls.
    pub fn streams_per_connection(max_sessions: u32) -> u32 {
        max_sessions.saturating_add(16)
    }

    /// The wire form advertised in `Info`.
    pub fn to_pb(&self, max_sessions: u32) -> pb::Connections {
        let ms = |d: Duration| d.as_millis().min(u128::from(u32::MAX)) as u32;
        pb::Connections {
            max_connections: self.max_connections.min(u32::MAX as usize) as u32,
            max_streams_per_connection: Self::streams_per_connection(max_sessions),
            first_message_timeout_ms: ms(self.first_message_timeout),
            message_timeout_ms: ms(self.message_timeout),
            max_pending_streams: self.max_pending_streams.min(u32::MAX as usize) as u32,
            max_pending_per_connection: self.max_pending_per_connection.min(u32::MAX as usize)
                as u32,
            max_buffered_bytes: self.max_buffered_bytes,
            keep_alive_ms: ms(self.keep_alive),
            idle_timeout_ms: ms(self.idle_timeout),
        }
    }
}

/// The shared state the bounds are enforced with (cheap to clone).
#[derive(Debug, Clone)]
pub struct Guards {
    /// The settings.
    pub bounds: Arc<ClientBounds>,
    pending: Arc<PendingStreams>,
    /// Bytes held for unfinished messages, all streams together.
    pub buffered: ByteBudget,
}

impl Guards {
    /// Fresh counters for `bounds`.
    pub fn new(bounds: ClientBounds) -> Self {
        Self {
            pending: PendingStreams::new(bounds.max_pending_streams),
            buffered: ByteBudget::new(bounds.max_buffered_bytes),
            bounds: Arc::new(bounds),
        }
    }

    /// The pending-stream count of a new connection.
    pub fn connection(&self) -> ConnectionPending {
        ConnectionPending(Arc::new(Semaphore::new(
            self.bounds.max_pending_per_connection.max(1),
        )))
    }

    /// Counts a new stream of `connection` until its first message, or refuses it if
    /// too many are waiting already on that connection (RESOURCE_EXHAUSTED). When too
    /// many wait overall, the longest-waiting stream gives way instead (see
    /// [`pending`]).
    pub fn pending(&self, connection: &ConnectionPending) -> Result<Pending, WireError> {
        let on_connection = connection.0.clone().try_acquire_owned().map_err(|_| {
            WireError::exhausted(format!(
                "{} streams of this connection are already waiting for their first message (Connections.max_pending_per_connection)",
                self.bounds.max_pending_per_connection
            ))
        })?;
        Ok(self.pending.admit(on_connection))
    }

    /// The refusal of a waiting stream that gave way to a newer one.
    pub fn gave_way(&self) -> WireError {
        WireError::exhausted(format!(
            "{} streams were waiting for their first message and this one had waited longest (Connections.max_pending_streams)",
            self.bounds.max_pending_streams
        ))
    }

    /// How a QUIC stream's frames are read: `max_len`, the message timeout, the budget.
    pub fn read_bounds(&self, max_len: u32) -> ReadBounds {
        ReadBounds {
            max_len,
            message_timeout: Some(self.bounds.message_timeout),
            budget: Some(self.buffered.clone()),
        }
    }

    /// The refusal of a stream whose first message did not come in time.
    pub fn first_message_late(&self) -> WireError {
        WireError::new(
            tonic::Code::DeadlineExceeded,
            format!(
                "no first message within {:?} of the stream's start (Connections.first_message_timeout_ms)",
                self.bounds.first_message_timeout
            ),
        )
    }
}

/// A session's inbound stream that must deliver its first item before a deadline (or
/// yields the refusal instead), counted as pending until then.
pub struct FirstWithin<S> {
    inner: S,
    first: Option<(Pin<Box<Sleep>>, Pending)>,
    guards: Guards,
}

impl<S> FirstWithin<S> {
    /// `inner`, whose first item must come within the guards' first-message timeout.
    pub fn new(inner: S, guards: &Guards, pending: Pending) -> Self {
        let sleep = Box::pin(tokio::time::sleep(guards.bounds.first_message_timeout));
        Self {
            inner,
            first: Some((sleep, pending)),
            guards: guards.clone(),
        }
    }
}

impl<S> Stream for FirstWithin<S>
where
    S: Stream<Item = Result<pb::EdgeMessage, WireError>> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(item) => {
                this.first = None;
                Poll::Ready(item)
            }
            Poll::Pending => {
                let Some((sleep, pending)) = &mut this.first else {
                    return Poll::Pending;
                };
                let refusal = if sleep.as_mut().poll(cx).is_ready() {
                    this.guards.first_message_late()
                } else if pending.poll_dropped(cx).is_ready() {
                    this.guards.gave_way()
                } else {
                    return Poll::Pending;
                };
                this.first = None;
                Poll::Ready(Some(Err(refusal)))
            }
        }
    }
}
