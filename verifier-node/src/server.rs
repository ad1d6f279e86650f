//! Starting and stopping the verifier's listeners.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tandem_protocol::pb::verifier_server::VerifierServer;
use tandem_protocol::tls::ServerIdentity;
use tandem_protocol::{ProtocolError, pb};
use tokio::task::JoinHandle;

use crate::engine::EngineHandle;
use crate::grpc::GrpcService;
use crate::lifecycle::{Controller, Phase};
use crate::quic::{self, QuicContext};

/// Where and how to listen.
#[derive(Debug, Clone, Default)]
pub struct ListenConfig {
    /// gRPC address (none: no gRPC).
    pub grpc: Option<SocketAddr>,
    /// QUIC address (none: no QUIC).
    pub quic: Option<SocketAddr>,
    /// Where the QUIC certificate lives (created on first start).
    pub cert_dir: PathBuf,
    /// Required bearer token, on both transports.
    pub auth_token: Option<String>,
    /// Where to serve Prometheus `GET /metrics` (none: nowhere).
    pub metrics: Option<SocketAddr>,
}

impl ListenConfig {
    /// Both transports on 127.0.0.1 at ports the system picks, the certificate in
    /// `cert_dir`; no token, no metrics. For tests, benches and `tandem generate`.
    pub fn loopback(cert_dir: impl Into<PathBuf>) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            grpc: Some(any),
            quic: Some(any),
            cert_dir: cert_dir.into(),
            auth_token: None,
            metrics: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding a socket.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Certificates.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Reflection service setup.
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    /// Neither transport asked for.
    #[error("nothing to serve: give a gRPC address, a QUIC address, or both")]
    NoListener,
}

/// A running verifier.
#[derive(Debug)]
pub struct Running {
    /// Where gRPC listens.
    pub grpc_addr: Option<SocketAddr>,
    /// Where QUIC listens.
    pub quic_addr: Option<SocketAddr>,
    /// The certificate a QUIC client pins (`--ca`).
    pub cert_path: Option<PathBuf>,
    /// Where `GET /metrics` is served.
    pub metrics_addr: Option<SocketAddr>,
    control: Controller,
    tasks: Vec<JoinHandle<()>>,
    quic_accept: Option<JoinHandle<()>>,
    quic: Option<quinn::Endpoint>,
}

impl Running {
    /// Stops at once, as a crash would: every session ends, both listeners close.
    pub async fn stop(mut self) {
        self.control.set(Phase::Stopped);
        if let Some(ep) = &self.quic {
            ep.close(0u32.into(), b"verifier stopped");
        }
        let tasks = self.tasks.drain(..).chain(self.quic_accept.take());
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        if let Some(ep) = self.quic.take() {
            ep.wait_idle().await;
        }
    }

    /// Shuts down gracefully: no new sessions; blocks already being verified are
    /// answered; sessions then end with `UNAVAILABLE` (a draft node re-opens
    /// elsewhere or goes on alone). After `grace`, whatever is left is stopped.
    /// Returns the sessions that had to be cut off.
    pub async fn shutdown(mut self, grace: std::time::Duration) -> usize {
        self.control.set(Phase::Draining);
        if let Some(t) = self.quic_accept.take() {
            t.abort();
        }
        let left = self.control.wait_idle(grace).await;
        if left > 0 {
            tracing::warn!("{left} sessions still running after {grace:?}: stopping them");
        }
        self.stop().await;
        left
    }

    /// Sessions running now.
    pub fn active_sessions(&self) -> usize {
        self.control.active()
    }

    /// Runs until Ctrl-C, then shuts down gracefully (10 s grace; a second Ctrl-C
    /// stops at once).
    pub async fn until_ctrl_c(self) {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: finishing in-flight work (Ctrl-C again to stop now)");
        tokio::select! {
            _ = self.shutdown(std::time::Duration::from_secs(10)) => {}
            _ = tokio::signal::ctrl_c() => tracing::warn!("stopped"),
        }
    }
}

/// Starts the listeners in `cfg` over `engine`.
pub async fn serve(engine: EngineHandle, cfg: ListenConfig) -> Result<Running, ServeError> {
    if cfg.grpc.is_none() && cfg.quic.is_none() {
        return Err(ServeError::NoListener);
    }
    let metrics_task = match cfg.metrics {
        Some(addr) => {
            let listener = crate::metrics::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| ServeError::Bind { addr, source })?;
            let task = tokio::spawn(crate::metrics::serve_metrics(
                listener,
                engine.metrics().clone(),
            ));
            Some((bound, task))
        }
        None => None,
    };
    let (control, life) = Controller::new();
    let auth: Option<Arc<str>> = cfg.auth_token.as_deref().map(Arc::from);
    let mut tasks = Vec::new();
    let mut running = Running {
        grpc_addr: None,
        quic_addr: None,
        cert_path: None,
        metrics_addr: None,
        control,
        tasks: Vec::new(),
        quic_accept: None,
        quic: None,
    };
    if let Some(addr) = cfg.grpc {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        running.grpc_addr = Some(
            listener
                .local_addr()
                .map_err(|source| ServeError::Bind { addr, source })?,
        );
        let max = engine.limits().max_message_bytes as usize;
        let svc = VerifierServer::new(GrpcService::new(engine.clone(), auth.clone(), life.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX);
        let (health, health_svc) = tonic_health::server::health_reporter();
        health.set_serving::<VerifierServer<GrpcService>>().await;
        // Reflection in both versions: v1, and v1alpha for older grpcurl and clients.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .build_v1()
            .map_err(|e| ServeError::Reflection(e.to_string()))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| ServeError::Reflection(e.to_string()))?;
        let mut leaving = life.clone();
        // Accepted sockets do not inherit the builder's TCP_NODELAY: set it on each, or
        // Nagle's algorithm and delayed ACKs add 40 ms to a session's first answer.
        let incoming = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            |s| {
                if let Ok(s) = &s {
                    let _ = s.set_nodelay(true);
                }
                s
            },
        );
        tasks.push(tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(health_svc)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async move {
                    leaving.leaving().await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!("gRPC server failed: {e}");
            }
        }));
    }
    if let Some(addr) = cfg.quic {
        let mut names = Vec::new();
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
        let identity = ServerIdentity::load_or_create(&cfg.cert_dir, &names)?;
        let endpoint = quinn::Endpoint::server(identity.quic_server_config()?, addr)
            .map_err(|source| ServeError::Bind { addr, source })?;
        running.quic_addr = Some(
            endpoint
                .local_addr()
                .map_err(|source| ServeError::Bind { addr, source })?,
        );
        running.cert_path = Some(identity.cert_path.clone());
        let ctx = QuicContext {
            engine: engine.clone(),
            auth,
            life,
        };
        running.quic_accept = Some(tokio::spawn(quic::accept(endpoint.clone(), ctx)));
        running.quic = Some(endpoint);
    }
    if let Some((addr, task)) = metrics_task {
        running.metrics_addr = Some(addr);
        tasks.push(task);
    }
    running.tasks = tasks;
    Ok(running)
}
