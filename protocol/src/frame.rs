//! Length-delimited prost frames: the encoding of a QUIC stream.
//!
//! Each message is its length as a protobuf varint followed by the encoded message,
//! exactly what `prost::Message::encode_length_delimited` writes, so any protobuf
//! library can speak it.

use std::time::Duration;

use bytes::BytesMut;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tonic::Code;

use crate::WireError;
use crate::budget::{ByteBudget, OverBudget};

/// How a transport frames each message on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// gRPC's length-prefixed message: a compression flag and a 4-byte length.
    Grpc,
    /// A QUIC stream of [this module's](self) frames: a varint length.
    Quic,
}

impl Framing {
    /// Bytes the framing adds to a message of `n` bytes.
    pub fn overhead(self, n: usize) -> usize {
        match self {
            Framing::Grpc => 5,
            Framing::Quic => prost::length_delimiter_len(n),
        }
    }

    /// Bytes a message of `n` bytes takes on the wire, framing included.
    pub fn framed_len(self, n: usize) -> usize {
        n + self.overhead(n)
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({0})")]
    Truncated(&'static str),
    /// The length prefix announces more than the limit.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The limit.
        limit: u32,
    },
    /// The length prefix is not a varint.
    #[error("malformed length prefix")]
    BadLength,
    /// The body is not the expected message.
    #[error("frame does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The frame's first byte came, its last did not within the message timeout.
    #[error(
        "a message was not complete {0:?} after its first byte (Connections.message_timeout_ms)"
    )]
    Stalled(Duration),
    /// Holding the body would pass the server's cap on unfinished messages.
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
}

impl FrameError {
    /// The refusal a server answers this with.
    pub fn to_wire(&self) -> WireError {
        let code = match self {
            Self::TooLarge { .. } | Self::OverBudget(_) => Code::ResourceExhausted,
            Self::Stalled(_) => Code::DeadlineExceeded,
            Self::Io(_) => Code::Unavailable,
            _ => Code::InvalidArgument,
        };
        WireError::new(code, self.to_string())
    }
}

/// Encodes one message as a frame.
pub fn encode<M: Message>(msg: &M) -> BytesMut {
    let mut buf = BytesMut::with_capacity(msg.encoded_len() + 10);
    msg.encode_length_delimited(&mut buf)
        .expect("BytesMut grows as needed");
    buf
}

/// Bytes a message takes on a QUIC stream (prefix included).
pub fn framed_len<M: Message>(msg: &M) -> usize {
    let n = msg.encoded_len();
    n + prost::length_delimiter_len(n)
}

/// Writes one message as a frame.
pub async fn write<M: Message, W: AsyncWrite + Unpin>(w: &mut W, msg: &M) -> std::io::Result<()> {
    w.write_all(&encode(msg)).await
}

/// How much a reader lets a frame cost: its length, the time from its first byte to its
/// last, and the shared budget its unfinished body is held in.
#[derive(Debug, Clone)]
pub struct ReadBounds {
    /// Largest body accepted, bytes.
    pub max_len: u32,
    /// Longest a frame may take once its first byte has arrived (none: unbounded).
    pub message_timeout: Option<Duration>,
    /// Where the bytes of an unfinished body are counted (none: not counted).
    pub budget: Option<ByteBudget>,
}

impl ReadBounds {
    /// Only a length limit: what a client reading its server needs.
    pub fn max_len(max_len: u32) -> Self {
        Self {
            max_len,
            message_timeout: None,
            budget: None,
        }
    }
}

/// Bytes a body grows by at a time: a frame costs memory as its bytes arrive, not as
/// its length prefix announces.
const CHUNK: usize = 64 << 10;

/// Reads one frame; `Ok(None)` when the stream ended cleanly between frames.
pub async fn read<M: Message + Default, R: AsyncRead + Unpin>(
    r: &mut R,
    limit: u32,
) -> Result<Option<M>, FrameError> {
    read_within(r, &ReadBounds::max_len(limit)).await
}

/// Reads one frame within `bounds`; `Ok(None)` when the stream ended cleanly between
/// frames. Waiting for a frame's first byte is not bounded; the rest is.
pub async fn read_within<M: Message + Default, R: AsyncRead + Unpin>(
    r: &mut R,
    bounds: &ReadBounds,
) -> Result<Option<M>, FrameError> {
    let first = match r.read_u8().await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let rest = read_rest(r, first, bounds);
    let body = match bounds.message_timeout {
        Some(t) => tokio::time::timeout(t, rest)
            .await
            .map_err(|_| FrameError::Stalled(t))??,
        None => rest.await?,
    };
    Ok(Some(M::decode(body.as_slice())?))
}

/// The rest of a frame whose first byte was `first`: the length prefix, then the body.
async fn read_rest<R: AsyncRead + Unpin>(
    r: &mut R,
    first: u8,
    bounds: &ReadBounds,
) -> Result<Vec<u8>, FrameError> {
    let eof = |what| {
        move |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FrameError::Truncated(what),
            _ => FrameError::Io(e),
        }
    };
    let mut len: u64 = 0;
    let mut byte = first;
    for i in 0..10 {
        if i > 0 {
            byte = r.read_u8().await.map_err(eof("length prefix"))?;
        }
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if len > u64::from(bounds.max_len) {
                return Err(FrameError::TooLarge {
                    len,
                    limit: bounds.max_len,
                });
            }
            let len = len as usize;
            let mut held = bounds.budget.as_ref().map(ByteBudget::holder);
            let mut body = Vec::with_capacity(len.min(CHUNK));
            while body.len() < len {
                let chunk = (len - body.len()).min(CHUNK);
                if let Some(h) = &mut held {
                    h.grow(chunk as u64)?;
                }
                let at = body.len();
                body.resize(at + chunk, 0);
                r.read_exact(&mut body[at..])
                    .await
                    .map_err(eof("message body"))?;
            }
            return Ok(body);
        }
    }
    Err(FrameError::BadLength)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn draft() -> pb::EdgeMessage {
        pb::EdgeMessage {
            kind: Some(pb::edge_message::Kind::Draft(pb::Draft {
                session_id: 7,
                base_len: 300,
                anchor: 5,
                tokens: vec![1, 2, 3, 400],
                q: vec![],
                seq: 9,
                parents: vec![],
            })),
        }
    }

    #[tokio::test]
    async fn frames_round_trip_and_end_cleanly() {
        let mut bytes = encode(&draft()).to_vec();
        bytes.extend_from_slice(&encode(&draft()));
        assert_eq!(bytes.len(), 2 * framed_len(&draft()));
        let mut r = bytes.as_slice();
        for _ in 0..2 {
            let m: pb::EdgeMessage = read(&mut r, 1 << 20).await.unwrap().unwrap();
            assert_eq!(m, draft());
        }
        assert!(
            read::<pb::EdgeMessage, _>(&mut r, 1 << 20)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn truncated_oversized_and_garbage_frames_are_errors() {
        let whole = encode(&draft()).to_vec();
        let mut cut = &whole[..whole.len() - 2];
        let e = read::<pb::EdgeMessage, _>(&mut cut, 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(e, FrameError::Truncated("message body")), "{e}");
        let mut big = whole.as_slice();
        let e = read::<pb::EdgeMessage, _>(&mut big, 4).await.unwrap_err();
        assert_eq!(e.to_wire().code, Code::ResourceExhausted);
        let mut garbage: &[u8] = &[3, 0xff, 0xff, 0xff];
        let e = read::<pb::EdgeMessage, _>(&mut garbage, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(e.to_wire().code, Code::InvalidArgument, "{e}");
        let mut endless: &[u8] = &[0xff; 12];
        let e = read::<pb::EdgeMessage, _>(&mut endless, 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(e, FrameError::BadLength));
    }

    #[tokio::test]
    async fn a_body_costs_what_has_arrived_and_what_is_held_is_capped() {
        let budget = ByteBudget::new(200 << 10);
        let bounds = ReadBounds {
            max_len: 8 << 20,
            message_timeout: Some(Duration::from_millis(200)),
            budget: Some(budget.clone()),
        };
        // A prefix announcing 8 MiB and 10 bytes of body: the reader holds one chunk,
        // not 8 MiB, and gives up when the message timeout passes.
        let (mut w, mut r) = tokio::io::duplex(1 << 20);
        let mut head = Vec::new();
        prost::encode_length_delimiter(8 << 20, &mut head).unwrap();
        head.extend_from_slice(&[0; 10]);
        w.write_all(&head).await.unwrap();
        let reading =
            tokio::spawn(async move { read_within::<pb::EdgeMessage, _>(&mut r, &bounds).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(budget.used(), CHUNK as u64, "held as it arrives");
        let e = reading.await.unwrap().unwrap_err();
        assert_eq!(e.to_wire().code, Code::DeadlineExceeded, "{e}");
        assert_eq!(budget.used(), 0, "given back");
        // Past the shared cap: RESOURCE_EXHAUSTED, and nothing kept.
        let mut other = budget.holder();
        other.grow(150 << 10).unwrap();
        let bounds = ReadBounds {
            max_len: 8 << 20,
            message_timeout: None,
            budget: Some(budget.clone()),
        };
        let big = encode(&pb::EdgeMessage {
            kind: Some(pb::edge_message::Kind::Draft(pb::Draft {
                tokens: vec![7; 60_000],
                ..Default::default()
            })),
        })
        .to_vec();
        let mut src = big.as_slice();
        let e = read_within::<pb::EdgeMessage, _>(&mut src, &bounds)
            .await
            .unwrap_err();
        assert_eq!(e.to_wire().code, Code::ResourceExhausted, "{e}");
        assert_eq!(budget.used(), 150 << 10);
        drop(other);
        let mut src = big.as_slice();
        assert!(
            read_within::<pb::EdgeMessage, _>(&mut src, &bounds)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(budget.used(), 0);
    }
}
