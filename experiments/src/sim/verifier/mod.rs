//! The simulated verifier: the wire protocol of the real one, in memory, on the
//! virtual clock. The edge reaches it through [`tandem_draft::Dial`], so the real
//! draft loop talks to it exactly as to a verifier over QUIC.
//!
//! - **Link**: every message crosses the cell's link through the real link model
//!   ([`tandem_protocol::link::Shaper`]: delay, jitter, bandwidth, loss, order), and
//!   is counted in bytes as QUIC frames it; every message also spends the spec's
//!   `transport_ms` (software time a real one spends besides the link).
//! - **Engine**: it drives the real engine's scheduler
//!   (`tandem_verifier::engine::scheduler`): gathers work for up to `gather_ms` (less
//!   when the batch is full or every session has work waiting), picks each pass (long
//!   prompts in chunks, as the real one does), spends the latency profile's time on
//!   it, and answers. A session has at most one block in the engine; a block that does
//!   not extend what the session committed (a pipelined guess that missed) is refused
//!   as stale, by the real verifier's check.
//! - **Model**: verdicts come from the request's true continuation ([`super::draft`]).

mod engine;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use tandem_draft::clock::{BoxFuture, Clock};
use tandem_draft::{Conn, Dial};
use tandem_protocol::client::{ByteCounters, FromCloud, SessionChannel};
use tandem_protocol::frame::Framing;
use tandem_protocol::link::{Direction, Shaper};
use tandem_protocol::{LinkProfile, ProtocolError, pb};
use tokio::sync::mpsc;

use super::draft::{FINGERPRINT, VOCAB};
use super::exec::VirtualClock;
use crate::config::{Outage, SimSpec};

/// Largest draft block the simulated verifier takes.
const MAX_DRAFT: u32 = 64;

/// What reaches the engine.
enum Msg {
    /// A session stream was opened; its answers go down `Down`.
    Attach(u64, Down),
    /// A message from the edge arrived, at that time (boxed as it was sent).
    Edge(u64, Box<pb::EdgeMessage>, Instant),
    /// The edge let go of the stream, and all it sent has arrived.
    Gone(u64),
    /// The verifier goes down: every session is cut.
    Down,
}

/// The cloud → edge half of a session stream.
struct Down {
    shaper: Shaper,
    /// [`SimSpec::transport_ms`].
    transport: Duration,
    /// What each message's delivery needs, behind one handle (a message a round).
    end: Arc<DownEnd>,
}

/// Where a session's messages from the cloud are delivered.
struct DownEnd {
    clock: VirtualClock,
    tx: mpsc::Sender<FromCloud>,
    bytes: Arc<ByteCounters>,
    outages: Outages,
}

/// When the verifier is down (see [`SimSpec::outages`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Outages(Arc<Vec<Outage>>);

impl Outages {
    /// Whether it is down at `t` (from the cell's start).
    fn down_at(&self, t: Duration) -> bool {
        self.0.iter().any(|o| o.covers(t))
    }

    /// Whether it went down after `from` and by `to`: what was on the way is lost.
    fn cut_between(&self, from: Duration, to: Duration) -> bool {
        self.0.iter().any(|o| {
            let at = Duration::from_secs_f64(o.at_s);
            at > from && at <= to
        })
    }
}

fn unreachable() -> ProtocolError {
    ProtocolError::Disconnected("the verifier is down (a simulated outage)".into())
}

/// The verifier's end of every stream: where the edge's messages go.
#[derive(Debug)]
pub struct Hub {
    clock: VirtualClock,
    tx: mpsc::UnboundedSender<Msg>,
    streams: AtomicU64,
    outages: Outages,
    /// Its exits, as `Info` lists them: one (called layer 0) with `early_exit_at`.
    exits: Vec<u32>,
    /// Software time of every message besides the link ([`SimSpec::transport_ms`]).
    transport: Duration,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// Starts the simulated verifier as a task on `clock`'s executor. It ends when every
/// handle to it (the hub and the connections made from it) is gone.
pub fn start(clock: &VirtualClock, spec: &SimSpec) -> Arc<Hub> {
    let (tx, rx) = mpsc::unbounded_channel();
    let outages = Outages(Arc::new(spec.outages.clone()));
    let engine = engine::Engine::new(clock, spec, outages.clone());
    clock.spawn(engine.serve(rx));
    for o in spec.outages.iter() {
        let (c, tx) = (clock.clone(), tx.clone());
        let at = Duration::from_secs_f64(o.at_s);
        clock.spawn(async move {
            c.sleep(at.saturating_sub(c.elapsed())).await;
            let _ = tx.send(Msg::Down);
        });
    }
    Arc::new(Hub {
        clock: clock.clone(),
        tx,
        streams: AtomicU64::new(1),
        outages,
        exits: spec.early_exit_at.map(|_| 0).into_iter().collect(),
        transport: Duration::from_secs_f64(spec.transport_ms / 1e3),
    })
}

/// How one request's edge reaches the simulated verifier: over its cell's link, with
/// the link's randomness seeded by the request.
#[derive(Debug, Clone)]
pub struct SimDial {
    /// The verifier.
    pub hub: Arc<Hub>,
    /// The link.
    pub link: LinkProfile,
    /// Seed of the link's jitter and loss.
    pub seed: u64,
}

impl Dial for SimDial {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Conn>, ProtocolError>> {
        let down = self.hub.outages.down_at(self.hub.clock.elapsed());
        let conn = SimConn {
            dial: self.clone(),
            sessions: AtomicU64::new(0),
        };
        Box::pin(async move {
            if down {
                return Err(unreachable());
            }
            Ok(Box::new(conn) as Box<dyn Conn>)
        })
    }
}

#[derive(Debug)]
struct SimConn {
    dial: SimDial,
    sessions: AtomicU64,
}

/// The token trees the simulated verifier takes: the real one's defaults.
fn tree_limits() -> tandem_protocol::Limits {
    tandem_protocol::Limits::default()
}

/// The facts the simulated verifier announces.
fn info(exits: &[u32]) -> pb::InfoResponse {
    pb::InfoResponse {
        early_exit_layers: exits.to_vec(),
        model: "simulated".into(),
        vocab_size: VOCAB,
        tokenizer_fingerprint: FINGERPRINT.into(),
        max_context: u32::MAX,
        limits: Some(pb::Limits {
            max_draft_tokens: MAX_DRAFT,
            max_tree_nodes: tree_limits().max_tree_nodes,
            max_tree_depth: tree_limits().max_tree_depth,
            ..Default::default()
        }),
        modes: vec![
            pb::AcceptanceMode::Greedy as i32,
            pb::AcceptanceMode::Stochastic as i32,
        ],
        generate: true,
        ..Default::default()
    }
}

/// Bytes of a message on the wire, framed as QUIC frames it (a varint length).
fn wire_len(n: usize) -> u64 {
    Framing::Quic.framed_len(n) as u64
}

/// Bytes the link model charges for a message (as the real link emulation does).
fn link_len(n: usize) -> usize {
    Framing::Grpc.framed_len(n)
}

fn at(clock: &VirtualClock, t: tokio::time::Instant) -> super::exec::Sleep {
    clock.sleep_until(t.into_std())
}

fn now(clock: &VirtualClock) -> tokio::time::Instant {
    tokio::time::Instant::from_std(clock.now())
}

impl Conn for SimConn {
    fn info(&self) -> BoxFuture<'_, Result<pb::InfoResponse, ProtocolError>> {
        let exits = self.dial.hub.exits.clone();
        Box::pin(async move { Ok(info(&exits)) })
    }

    fn open_session(&self) -> BoxFuture<'_, Result<SessionChannel, ProtocolError>> {
        let d = &self.dial;
        if d.hub.outages.down_at(d.hub.clock.elapsed()) {
            return Box::pin(async { Err(unreachable()) });
        }
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let seed = d.seed.wrapping_add(n);
        let stream = d.hub.streams.fetch_add(1, Ordering::Relaxed);
        let bytes = Arc::new(ByteCounters::default());
        let (edge_tx, edge_rx) = mpsc::channel(64);
        let (cloud_tx, cloud_rx) = mpsc::channel(1024);
        let down = Down {
            shaper: Shaper::new(&d.link, Direction::Down, seed),
            transport: d.hub.transport,
            end: Arc::new(DownEnd {
                clock: d.hub.clock.clone(),
                tx: cloud_tx,
                bytes: bytes.clone(),
                outages: d.hub.outages.clone(),
            }),
        };
        let attached = d.hub.tx.send(Msg::Attach(stream, down));
        let up = Shaper::new(&d.link, Direction::Up, seed);
        d.hub
            .clock
            .spawn(uplink(d.hub.clone(), stream, edge_rx, up, bytes.clone()));
        Box::pin(async move {
            attached.map_err(|_| {
                ProtocolError::Disconnected("the simulated verifier stopped".into())
            })?;
            Ok(SessionChannel {
                tx: edge_tx,
                rx: cloud_rx,
                bytes,
            })
        })
    }
}

/// Carries a stream's edge messages across the link: each is stamped when sent and
/// handed to the engine when the link delivers it.
async fn uplink(
    hub: Arc<Hub>,
    stream: u64,
    mut rx: mpsc::Receiver<Box<pb::EdgeMessage>>,
    mut shaper: Shaper,
    bytes: Arc<ByteCounters>,
) {
    let mut last = now(&hub.clock);
    while let Some(m) = rx.recv().await {
        let n = m.encoded_len();
        bytes.up.fetch_add(wire_len(n), Ordering::Relaxed);
        last = shaper.arrival(now(&hub.clock), link_len(n)) + hub.transport;
        let when = last.into_std();
        let (h, sent) = (hub.clone(), hub.clock.elapsed());
        hub.clock.call_at(when, move || {
            // A message on the way when the verifier went down is lost with it.
            if !h.outages.cut_between(sent, h.clock.elapsed()) {
                let _ = h.tx.send(Msg::Edge(stream, m, when));
            }
        });
    }
    let (clock, tx) = (hub.clock.clone(), hub.tx.clone());
    let arrival = at(&clock, last);
    clock.spawn(async move {
        arrival.await;
        let _ = tx.send(Msg::Gone(stream));
    });
}

/// Sends a message down a session's stream, across the link.
fn send(clock: &VirtualClock, down: &mut Down, kind: pb::cloud_message::Kind) {
    let msg = Box::new(pb::CloudMessage { kind: Some(kind) });
    let n = msg.encoded_len();
    let arrival = down.shaper.arrival(now(clock), link_len(n)) + down.transport;
    let (end, sent) = (down.end.clone(), clock.elapsed());
    clock.call_at(arrival.into_std(), move || {
        if end.outages.cut_between(sent, end.clock.elapsed()) {
            return;
        }
        end.bytes.down.fetch_add(wire_len(n), Ordering::Relaxed);
        match end.tx.try_send(Ok(msg)) {
            // The edge is 1 024 messages behind: this one waits for room.
            Err(mpsc::error::TrySendError::Full(m)) => end.clock.clone().spawn(async move {
                let _ = end.tx.send(m).await;
            }),
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    });
}
