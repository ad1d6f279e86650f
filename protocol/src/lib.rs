//! # tandem-protocol
//!
//! Everything that crosses the wire between an edge draft node and the cloud verifier.
//!
//! - [`pb`]: the prost messages and tonic client/server generated from
//!   `proto/tandem/v1/verifier.proto`, the public contract other languages generate from.
//! - [`limits`]: the limits a verifier enforces and advertises, and the checks of each
//!   incoming message against them, as precise [`WireError`]s (gRPC status codes).
//! - [`convert`]: sampling parameters and draft distributions to and from the wire.
//! - [`frame`]: length-delimited prost frames, the QUIC stream encoding, read within
//!   bounds (length, time, and a [`budget`] shared by every unfinished message).
//! - [`tls`]: the verifier's self-signed certificate and the client's pinned trust.
//! - [`client`]: one [`client::Connection`] API over gRPC and QUIC for the edge.
//! - [`StopReason`]: why a generation stopped (`Finished.reason`).
//! - [`link`]: the emulated network link (delay, jitter, bandwidth, loss) and its profiles;
//!   [`timer`]: waits precise to tens of microseconds (tokio's timer rounds up to a
//!   millisecond), for the link and an emulated device's pace.
//!
//! It sits at the bottom of the workspace beside `tandem-decoding`.

pub mod budget;
pub mod client;
pub mod convert;
mod error;
pub mod frame;
pub mod limits;
pub mod link;
mod stop;
pub mod timer;
pub mod tls;

pub use client::{ConnectOptions, Connection, Endpoint, SessionChannel};
pub use error::{ProtocolError, WireError};
pub use limits::Limits;
pub use link::LinkProfile;
pub use stop::StopReason;

/// The generated protocol types (`tandem.v1`).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("tandem.v1");

    /// The encoded `FileDescriptorSet` of the protocol, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("tandem_v1_descriptor");
}

/// ALPN protocol id of Tandem over QUIC.
pub const ALPN: &[u8] = b"tandem/1";

/// gRPC metadata key (and header) that carries the bearer token.
pub const AUTH_HEADER: &str = "authorization";
