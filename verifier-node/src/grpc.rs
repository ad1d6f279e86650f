//! The gRPC transport: `tandem.v1.Verifier` with tonic.

use std::pin::Pin;

use tandem_protocol::pb::verifier_server::Verifier;
use tandem_protocol::{AUTH_HEADER, WireError, pb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::bounds::FirstWithin;
use crate::bounds::listener::ConnectionInfo;
use crate::service::{Serving, check_token, count_refusal, run_session};

/// The tonic service.
#[derive(Debug, Clone)]
pub struct GrpcService {
    ctx: Serving,
}

impl GrpcService {
    /// A service over `ctx`.
    pub fn new(ctx: Serving) -> Self {
        Self { ctx }
    }

    /// Counts `e` and makes it the call's status.
    fn refuse(&self, e: WireError) -> Status {
        self.ctx.engine.metrics().error(e.code);
        Status::from(e)
    }

    fn authorize(&self, md: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let Some(expected) = self.ctx.auth.as_deref() else {
            return Ok(());
        };
        let got = md.get(AUTH_HEADER).map(|v| v.to_str().unwrap_or(""));
        bearer(got)
            .and_then(|token| check_token(Some(expected), token))
            .map_err(|e| self.refuse(e))
    }
}

/// The token of an `authorization` value, which must use the `Bearer` scheme (matched
/// without regard to case, RFC 7235); no value: no token.
fn bearer(value: Option<&str>) -> Result<Option<&str>, WireError> {
    let Some(v) = value else { return Ok(None) };
    match v.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token.trim())),
        _ => Err(WireError::unauthenticated(
            "the authorization metadata must be 'Bearer <token>'",
        )),
    }
}

/// Maps tonic's decoding statuses to the contract's: a message over the size limit is
/// OUT_OF_RANGE in tonic but RESOURCE_EXHAUSTED in the contract (and gRPC's own
/// convention); bytes that are not a protobuf `EdgeMessage` are INTERNAL in tonic but
/// INVALID_ARGUMENT in the contract, as over QUIC.
fn inbound_status(s: Status) -> WireError {
    match s.code() {
        tonic::Code::OutOfRange if s.message().contains("too large") => {
            WireError::exhausted(format!(
                "{} (Limits.max_message_bytes)",
                s.message().trim_start_matches("Error, ")
            ))
        }
        tonic::Code::Internal if s.message().starts_with("failed to decode Protobuf message") => {
            WireError::invalid(format!("message does not decode: {}", s.message()))
        }
        _ => WireError::from(s),
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::CloudMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Verifier for GrpcService {
    async fn info(
        &self,
        req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        self.authorize(req.metadata())?;
        Ok(Response::new(self.ctx.info.as_ref().clone()))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<Streaming<pb::EdgeMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        self.authorize(req.metadata())?;
        let guards = &self.ctx.guards;
        // Each accepted connection carries its own count (see bounds::listener); a
        // request from elsewhere (a test's in-memory transport) counts on its own.
        let connection = req
            .extensions()
            .get::<ConnectionInfo>()
            .map(|c| c.pending.clone())
            .unwrap_or_else(|| guards.connection());
        let pending = guards.pending(&connection).map_err(|e| self.refuse(e))?;
        let inbound = req.into_inner().map(|r| r.map_err(inbound_status));
        let inbound = FirstWithin::new(Box::pin(inbound), guards, pending);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run_session(self.ctx.clone(), inbound, tx));
        let metrics = self.ctx.engine.metrics().clone();
        let out = ReceiverStream::new(rx).map(move |r| {
            count_refusal(&metrics, &r);
            r.map_err(Status::from)
        });
        Ok(Response::new(Box::pin(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_needs_the_bearer_scheme() {
        assert_eq!(bearer(None).unwrap(), None);
        assert_eq!(bearer(Some("Bearer s3cret")).unwrap(), Some("s3cret"));
        assert_eq!(bearer(Some("bearer  s3cret")).unwrap(), Some("s3cret"));
        for bad in ["s3cret", "Basic s3cret", "Bearers3cret", ""] {
            let e = bearer(Some(bad)).unwrap_err();
            assert_eq!(e.code, tonic::Code::Unauthenticated, "{bad:?}");
        }
    }
}
