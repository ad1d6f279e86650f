//! The gRPC transport: `tandem.v1.Verifier` with tonic.

use std::pin::Pin;
use std::sync::Arc;

use tandem_protocol::pb::verifier_server::Verifier;
use tandem_protocol::{AUTH_HEADER, WireError, pb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::engine::EngineHandle;
use crate::lifecycle::Lifecycle;
use crate::service::{check_token, count_refusal, run_session};

/// The tonic service.
#[derive(Debug, Clone)]
pub struct GrpcService {
    engine: EngineHandle,
    auth: Option<Arc<str>>,
    life: Lifecycle,
}

impl GrpcService {
    /// A service over `engine`, requiring `auth` as bearer token if given.
    pub fn new(engine: EngineHandle, auth: Option<Arc<str>>, life: Lifecycle) -> Self {
        Self { engine, auth, life }
    }

    fn authorize(&self, md: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let got = md
            .get(AUTH_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v));
        check_token(self.auth.as_deref(), got).map_err(|e| {
            self.engine.metrics().error(e.code);
            Status::from(e)
        })
    }
}

/// tonic's decoder says OUT_OF_RANGE for a message over the size limit; the contract
/// (and gRPC's own convention) says RESOURCE_EXHAUSTED.
fn inbound_status(s: Status) -> WireError {
    if s.code() == tonic::Code::OutOfRange && s.message().contains("too large") {
        WireError::exhausted(format!(
            "{} (Limits.max_message_bytes)",
            s.message().trim_start_matches("Error, ")
        ))
    } else {
        WireError::from(s)
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
        Ok(Response::new(self.engine.info().clone()))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<Streaming<pb::EdgeMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        self.authorize(req.metadata())?;
        let inbound = req.into_inner().map(|r| r.map_err(inbound_status));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run_session(
            self.engine.clone(),
            Box::pin(inbound),
            tx,
            self.life.clone(),
        ));
        let metrics = self.engine.metrics().clone();
        let out = ReceiverStream::new(rx).map(move |r| {
            count_refusal(&metrics, &r);
            r.map_err(Status::from)
        });
        Ok(Response::new(Box::pin(out)))
    }
}
