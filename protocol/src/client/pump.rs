//! One task per session between the draft loop and the transport: it counts every
//! message's bytes as the transport frames them, and (over an emulated link) holds
//! each until the link model says it arrives, in order, in both directions.
//!
//! ```text
//! draft loop ── edge ──▶ [count, shape up] ── to_wire ──▶ transport ──▶ verifier
//! draft loop ◀── cloud ── [shape down, count] ◀── from_wire ── transport ◀── verifier
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prost::Message;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ByteCounters, FromCloud};
use crate::frame::Framing;
use crate::link::Shaper;
use crate::{ProtocolError, pb};

type Down = Result<pb::CloudMessage, ProtocolError>;

/// A session's two directions and what happens on the way.
pub(super) struct Pump {
    /// From the draft loop.
    pub edge: mpsc::Receiver<Box<pb::EdgeMessage>>,
    /// To the transport.
    pub to_wire: mpsc::Sender<pb::EdgeMessage>,
    /// From the transport.
    pub from_wire: mpsc::Receiver<Down>,
    /// To the draft loop.
    pub cloud: mpsc::Sender<FromCloud>,
    pub bytes: Arc<ByteCounters>,
    pub framing: Framing,
    /// The emulated link (up, down); none: messages pass at once.
    pub link: Option<(Shaper, Shaper)>,
}

/// Bytes the link emulation charges for a message: framed as gRPC frames it, on either
/// transport, so both meet the same link.
fn edge_len(m: &pb::EdgeMessage) -> usize {
    Framing::Grpc.framed_len(m.encoded_len())
}

fn cloud_len(m: &Down) -> usize {
    m.as_ref()
        .map_or(0, |m| Framing::Grpc.framed_len(m.encoded_len()))
}

impl Pump {
    /// Runs until the draft loop has let go of the session and the verifier's side has
    /// ended (or the draft loop stopped listening).
    pub async fn run(self) {
        match self.link {
            None => self.direct().await,
            Some((up, down)) => {
                let Pump {
                    edge,
                    to_wire,
                    from_wire,
                    cloud,
                    bytes,
                    framing,
                    ..
                } = self;
                Shaped {
                    edge,
                    to_wire: Some(to_wire),
                    from_wire,
                    cloud,
                    bytes,
                    framing,
                    up,
                    down,
                }
                .run()
                .await
            }
        }
    }

    /// No link: count and pass on.
    async fn direct(mut self) {
        let mut to_wire = Some(self.to_wire);
        let mut wire_open = true;
        loop {
            tokio::select! {
                m = self.edge.recv(), if to_wire.is_some() => match m {
                    Some(m) => {
                        count(&self.bytes, self.framing, &m);
                        let tx = to_wire.as_ref().expect("open");
                        if tx.send(*m).await.is_err() {
                            // The transport is gone: the draft loop's next send fails.
                            to_wire = None;
                            self.edge.close();
                        }
                    }
                    // The stream's end reaches the verifier.
                    None => to_wire = None,
                },
                m = self.from_wire.recv(), if wire_open => match m {
                    Some(m) => {
                        count_down(&self.bytes, self.framing, &m);
                        if self.cloud.send(m.map(Box::new)).await.is_err() {
                            return;
                        }
                    }
                    None => wire_open = false,
                },
                else => return,
            }
        }
    }
}

fn count(bytes: &ByteCounters, framing: Framing, m: &pb::EdgeMessage) {
    let n = framing.framed_len(m.encoded_len()) as u64;
    bytes.up.fetch_add(n, Ordering::Relaxed);
}

fn count_down(bytes: &ByteCounters, framing: Framing, m: &Down) {
    if let Ok(msg) = m {
        let n = framing.framed_len(msg.encoded_len()) as u64;
        bytes.down.fetch_add(n, Ordering::Relaxed);
    }
}

/// Over an emulated link: each message waits in its direction's queue until its
/// arrival time.
struct Shaped {
    edge: mpsc::Receiver<Box<pb::EdgeMessage>>,
    to_wire: Option<mpsc::Sender<pb::EdgeMessage>>,
    from_wire: mpsc::Receiver<Down>,
    cloud: mpsc::Sender<FromCloud>,
    bytes: Arc<ByteCounters>,
    framing: Framing,
    up: Shaper,
    down: Shaper,
}

/// Resolves at `at`, or never.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => crate::timer::sleep_until(at.into_std()).await,
        None => std::future::pending().await,
    }
}

impl Shaped {
    async fn run(mut self) {
        let mut going_up: VecDeque<(Instant, pb::EdgeMessage)> = VecDeque::new();
        let mut going_down: VecDeque<(Instant, Down)> = VecDeque::new();
        let (mut edge_open, mut wire_open) = (true, true);
        loop {
            if !edge_open && going_up.is_empty() {
                // Everything sent has arrived: the stream's end reaches the verifier.
                self.to_wire = None;
            }
            if !wire_open && going_down.is_empty() {
                return;
            }
            let up_at = going_up.front().map(|(at, _)| *at);
            let down_at = going_down.front().map(|(at, _)| *at);
            tokio::select! {
                m = self.edge.recv(), if edge_open => match m {
                    Some(m) => {
                        count(&self.bytes, self.framing, &m);
                        let at = self.up.arrival(Instant::now(), edge_len(&m));
                        going_up.push_back((at, *m));
                    }
                    None => edge_open = false,
                },
                m = self.from_wire.recv(), if wire_open => match m {
                    Some(m) => {
                        let at = self.down.arrival(Instant::now(), cloud_len(&m));
                        going_down.push_back((at, m));
                    }
                    None => wire_open = false,
                },
                () = until(up_at), if up_at.is_some() => {
                    let (_, m) = going_up.pop_front().expect("due");
                    let sent = match &self.to_wire {
                        Some(tx) => tx.send(m).await.is_ok(),
                        None => false,
                    };
                    if !sent {
                        // The transport is gone: nothing more goes up.
                        self.to_wire = None;
                        going_up.clear();
                        edge_open = false;
                        self.edge.close();
                    }
                },
                () = until(down_at), if down_at.is_some() => {
                    let (_, m) = going_down.pop_front().expect("due");
                    count_down(&self.bytes, self.framing, &m);
                    if self.cloud.send(m.map(Box::new)).await.is_err() {
                        return;
                    }
                },
            }
        }
    }
}
