//! Length-delimited prost frames: the encoding of a QUIC stream.
//!
//! Each message is its length as a protobuf varint followed by the encoded message,
//! exactly what `prost::Message::encode_length_delimited` writes, so any protobuf
//! library can speak it.

use bytes::BytesMut;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tonic::Code;

use crate::WireError;

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
}

impl FrameError {
    /// The refusal a server answers this with.
    pub fn to_wire(&self) -> WireError {
        let code = match self {
            Self::TooLarge { .. } => Code::ResourceExhausted,
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

/// Reads one frame; `Ok(None)` when the stream ended cleanly between frames.
pub async fn read<M: Message + Default, R: AsyncRead + Unpin>(
    r: &mut R,
    limit: u32,
) -> Result<Option<M>, FrameError> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let byte = match r.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return if i == 0 {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated("length prefix"))
                };
            }
            Err(e) => return Err(e.into()),
        };
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if len > u64::from(limit) {
                return Err(FrameError::TooLarge { len, limit });
            }
            let mut body = vec![0u8; len as usize];
            match r.read_exact(&mut body).await {
                Ok(_) => return Ok(Some(M::decode(body.as_slice())?)),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(FrameError::Truncated("message body"));
                }
                Err(e) => return Err(e.into()),
            }
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
}
