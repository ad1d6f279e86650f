//! Errors: what a verifier answers ([`WireError`]) and what a client can meet
//! ([`ProtocolError`]).

use tonic::Code;

/// A refusal with a gRPC status code and a message that says what was wrong.
///
/// The verifier answers bad input with one of these; over gRPC it becomes a `Status`
/// (or an in-stream `Error` for a refused draft block), over QUIC an `Error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct WireError {
    /// The status code (google.rpc.Code).
    pub code: Code,
    /// What was wrong, for a person.
    pub message: String,
}

impl WireError {
    /// A refusal with this code.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// `INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
    /// `RESOURCE_EXHAUSTED`.
    pub fn exhausted(message: impl Into<String>) -> Self {
        Self::new(Code::ResourceExhausted, message)
    }
    /// `FAILED_PRECONDITION`.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }
    /// `UNAUTHENTICATED`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }
    /// `INTERNAL`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    /// The in-stream `Error` message for this refusal, answering draft `seq` (0: none).
    pub fn to_pb(&self, seq: u64) -> crate::pb::Error {
        crate::pb::Error {
            code: self.code as i32,
            message: self.message.clone(),
            seq,
        }
    }

    /// Reads an in-stream `Error` message.
    pub fn from_pb(e: &crate::pb::Error) -> Self {
        Self::new(Code::from_i32(e.code), e.message.clone())
    }
}

impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> Self {
        tonic::Status::new(e.code, e.message)
    }
}

impl From<tonic::Status> for WireError {
    fn from(s: tonic::Status) -> Self {
        Self::new(s.code(), s.message())
    }
}

/// What can go wrong for a client of the verifier.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The verifier refused a request.
    #[error("verifier refused: {0}")]
    Refused(#[from] WireError),
    /// A `--verifier` address that is not `grpc://HOST:PORT` or `quic://HOST:PORT`.
    #[error("bad verifier address '{0}': expected grpc://HOST:PORT or quic://HOST:PORT")]
    BadEndpoint(String),
    /// The connection could not be made or was lost.
    #[error("connection to {endpoint} failed: {message}")]
    Connect {
        /// The address.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// The session's stream ended or broke.
    #[error("connection lost: {0}")]
    Disconnected(String),
    /// A frame that does not decode, or is larger than allowed.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// Certificates and keys.
    #[error("TLS: {0}")]
    Tls(String),
    /// The bearer token cannot be sent.
    #[error("authentication: {0}")]
    Auth(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
