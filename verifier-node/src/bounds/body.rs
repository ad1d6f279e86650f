//! gRPC request bodies held to the same bounds as QUIC frames: a message whose first
//! byte has arrived must be complete within the message timeout, and its bytes count
//! against the budget shared by every unfinished message until it is complete.
//!
//! The body is read as tonic will read it: gRPC's length-prefixed messages (a
//! compression flag, a 4-byte big-endian length, the message), which may be split
//! across or share HTTP/2 DATA frames. A refusal is the body's error, a `Status`, which
//! tonic hands the session as the status of its inbound stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tandem_protocol::budget::Held;
use tokio::time::Sleep;
use tonic::Status;
use tonic::codegen::Service;
use tonic::codegen::http::Request;
use tonic::server::NamedService;

use super::Guards;

/// Length of gRPC's message prefix.
const PREFIX: usize = 5;

/// Where a body is in its current message.
#[derive(Debug)]
enum Place {
    /// In the prefix: the bytes of it seen so far.
    Prefix { seen: [u8; PREFIX], len: usize },
    /// In the message: bytes still to come.
    Message { left: u64 },
}

/// A request body held to the message timeout and the byte budget.
pub struct BoundedBody {
    inner: tonic::body::Body,
    place: Place,
    held: Held,
    timeout: Duration,
    /// Running while a message is incomplete.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl BoundedBody {
    /// `inner`, bounded by `guards`.
    pub fn new(inner: tonic::body::Body, guards: &Guards) -> Self {
        Self {
            inner,
            place: Place::Prefix {
                seen: [0; PREFIX],
                len: 0,
            },
            held: guards.buffered.holder(),
            timeout: guards.bounds.message_timeout,
            deadline: None,
        }
    }

    /// Follows `data` through the messages it belongs to, holding the bytes of an
    /// incomplete message in the budget.
    fn account(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.deadline.is_none() {
                self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
            }
            match &mut self.place {
                Place::Prefix { seen, len } => {
                    let n = (PREFIX - *len).min(data.len());
                    seen[*len..*len + n].copy_from_slice(&data[..n]);
                    *len += n;
                    data.advance(n);
                    if *len == PREFIX {
                        let left = u32::from_be_bytes([seen[1], seen[2], seen[3], seen[4]]);
                        self.place = Place::Message {
                            left: u64::from(left),
                        };
                    }
                }
                Place::Message { left } => {
                    let n = (*left).min(data.len() as u64);
                    self.held
                        .grow(n)
                        .map_err(|e| Status::resource_exhausted(e.to_string()))?;
                    *left -= n;
                    data.advance(n as usize);
                }
            }
            if matches!(self.place, Place::Message { left: 0 }) {
                self.held.release();
                self.deadline = None;
                self.place = Place::Prefix {
                    seen: [0; PREFIX],
                    len: 0,
                };
            }
        }
        Ok(())
    }
}

impl Body for BoundedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(refused) = this.account(data)
                {
                    return Poll::Ready(Some(Err(refused)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if let Some(d) = &mut this.deadline
                    && d.as_mut().poll(cx).is_ready()
                {
                    this.deadline = None;
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                        "a message was not complete {:?} after its first byte (Connections.message_timeout_ms)",
                        this.timeout
                    )))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A gRPC service whose request bodies are [`BoundedBody`]s.
#[derive(Debug, Clone)]
pub struct Bounded<S> {
    inner: S,
    guards: Guards,
}

impl<S> Bounded<S> {
    /// `inner`, its requests bounded by `guards`.
    pub fn new(inner: S, guards: Guards) -> Self {
        Self { inner, guards }
    }
}

impl<S> Service<Request<tonic::body::Body>> for Bounded<S>
where
    S: Service<Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> S::Future {
        let guards = &self.guards;
        self.inner
            .call(req.map(|b| tonic::body::Body::new(BoundedBody::new(b, guards))))
    }
}

impl<S: NamedService> NamedService for Bounded<S> {
    const NAME: &'static str = S::NAME;
}
