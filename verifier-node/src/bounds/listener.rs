//! Accepting TCP connections without letting a flood take the server down: at most
//! `max` connections open per listener (the next waits in the kernel's backlog until
//! one closes), a back-off after a failed accept (out of file descriptors, say)
//! instead of a retry at once, and a deadline for a connection's first bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::{ConnectionPending, Guards};

/// First pause after a failed accept; it doubles while accepting keeps failing.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A listener and its cap on open connections.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    name: &'static str,
    errors: Counter,
    backoff: Duration,
}

/// A connection's place under its listener's cap, given back when dropped.
pub type Slot = OwnedSemaphorePermit;

impl Acceptor {
    /// Accepts on `listener` (called `name` in logs), at most `max` connections open at
    /// once; failed accepts are counted in `errors`.
    pub fn new(listener: TcpListener, max: usize, name: &'static str, errors: Counter) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max.max(1))),
            name,
            errors,
            backoff: FIRST_BACKOFF,
        }
    }

    /// The next connection, once there is room for it. Never fails: a failed accept is
    /// logged, counted and retried after a pause that doubles (to 1 s) while failures
    /// go on.
    pub async fn next(&mut self) -> (TcpStream, Slot) {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((sock, _)) => {
                    self.backoff = FIRST_BACKOFF;
                    return (sock, slot);
                }
                Err(e) => {
                    self.errors.inc();
                    let level_warn = self.backoff == FIRST_BACKOFF;
                    if level_warn {
                        tracing::warn!(
                            "{}: accept failed ({e}); retrying with back-off up to {MAX_BACKOFF:?}",
                            self.name
                        );
                    } else {
                        tracing::debug!("{}: accept failed ({e})", self.name);
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// What tonic puts in the extensions of each request of a connection: its TCP facts
/// and its count of streams waiting for their first message.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Addresses.
    pub tcp: TcpConnectInfo,
    /// Streams of this connection before their first message.
    pub pending: ConnectionPending,
}

/// The connections of `acceptor` as tonic takes them: TCP_NODELAY set (accepted
/// sockets do not inherit it, and Nagle's algorithm with delayed ACKs adds 40 ms to a
/// session's first answer), each closed if it has not sent the 24-byte HTTP/2 preface
/// within `first_bytes`. The listener closes when the stream is dropped.
pub fn grpc_incoming(
    mut acceptor: Acceptor,
    guards: Guards,
) -> ReceiverStream<io::Result<Admitted>> {
    let first_bytes = guards.bounds.first_message_timeout;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let (sock, slot) = tokio::select! {
                _ = tx.closed() => return,
                next = acceptor.next() => next,
            };
            let _ = sock.set_nodelay(true);
            let conn = Admitted {
                sock,
                _slot: slot,
                pending: guards.connection(),
                preface: Some((Box::pin(tokio::time::sleep(first_bytes)), PREFACE_LEN)),
            };
            if tx.send(Ok(conn)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Bytes of the HTTP/2 client connection preface.
const PREFACE_LEN: usize = 24;

/// An accepted connection holding its slot; until its first bytes have arrived, a
/// deadline for them.
#[derive(Debug)]
pub struct Admitted {
    sock: TcpStream,
    _slot: Slot,
    pending: ConnectionPending,
    preface: Option<(Pin<Box<Sleep>>, usize)>,
}

impl Connected for Admitted {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        ConnectionInfo {
            tcp: self.sock.connect_info(),
            pending: self.pending.clone(),
        }
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.sock).poll_read(cx, buf);
        if let Some((sleep, left)) = &mut this.preface {
            if polled.is_ready() {
                let got = buf.filled().len() - before;
                *left = left.saturating_sub(got);
                if *left == 0 || got == 0 {
                    this.preface = None;
                }
            } else if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within the first-message timeout",
                )));
            }
        }
        polled
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().sock).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().sock).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().sock).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().sock).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.sock.is_write_vectored()
    }
}

/// Raises this process's soft limit on open files to its hard limit (a server with
/// thousands of clients needs a descriptor for each) and returns the limit now in
/// force, or why it could not be read or raised.
pub fn raise_open_files_limit() -> Result<u64, String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (lim.current, lim.maximum) else {
        return Ok(u64::MAX);
    };
    let target = hard.unwrap_or(u64::MAX);
    if soft >= target {
        return Ok(soft);
    }
    lim.current = hard;
    match setrlimit(Resource::Nofile, lim) {
        Ok(()) => Ok(target),
        Err(e) => Err(format!(
            "cannot raise the open-files limit from {soft} to {target}: {e}"
        )),
    }
}
