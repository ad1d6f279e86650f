//! Starting and stopping the verifier's listeners.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tandem_protocol::pb::verifier_server::VerifierServer;
use tandem_protocol::tls::ServerIdentity;
use tandem_protocol::{ProtocolError, pb};
use tokio::task::JoinHandle;

use crate::bounds::body::Bounded;
use crate::bounds::listener::{Acceptor, grpc_incoming};
use crate::bounds::{ClientBounds, Guards};
use crate::engine::EngineHandle;
use crate::grpc::GrpcService;
use crate::lifecycle::{Controller, Lifecycle, Phase};
use crate::quic;
use crate::service::Serving;

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
    /// What one client may hold, and for how long.
    pub bounds: ClientBounds,
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
            bounds: ClientBounds::default(),
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
        if let Some(ep) = &self.quic {
            // New QUIC connections are refused now: one left waiting in its handshake
            // would hold the endpoint (and its port) open for the whole idle timeout.
            ep.set_server_config(None);
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
    let max_sessions = engine.limits().max_sessions;
    let ctx = Serving {
        info: Arc::new(pb::InfoResponse {
            connections: Some(cfg.bounds.to_pb(max_sessions)),
            ..engine.info().clone()
        }),
        engine: engine.clone(),
        auth: cfg.auth_token.as_deref().map(Arc::from),
        life: life.clone(),
        guards: Guards::new(cfg.bounds.clone()),
    };
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
        tasks.push(serve_grpc(listener, ctx.clone()).await?);
    }
    if let Some(addr) = cfg.quic {
        let mut names = Vec::new();
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
        let identity = ServerIdentity::load_or_create(&cfg.cert_dir, &names)?;
        let mut server = identity.quic_server_config()?;
        server.transport_config(quic_transport(&cfg.bounds, max_sessions));
        let endpoint = quinn::Endpoint::server(server, addr)
            .map_err(|source| ServeError::Bind { addr, source })?;
        running.quic_addr = Some(
            endpoint
                .local_addr()
                .map_err(|source| ServeError::Bind { addr, source })?,
        );
        running.cert_path = Some(identity.cert_path.clone());
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

/// QUIC's side of the bounds: stream credit, keep-alives, the idle timeout.
fn quic_transport(bounds: &ClientBounds, max_sessions: u32) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(ClientBounds::streams_per_connection(max_sessions).into())
        .max_concurrent_uni_streams(0u32.into())
        .keep_alive_interval(Some(bounds.keep_alive))
        .max_idle_timeout(bounds.idle_timeout.try_into().ok());
    Arc::new(t)
}

/// Starts gRPC on `listener`: the verifier, health, and reflection services, each
/// connection and request body held to the bounds.
async fn serve_grpc(
    listener: tokio::net::TcpListener,
    ctx: Serving,
) -> Result<JoinHandle<()>, ServeError> {
    let bounds = ctx.guards.bounds.clone();
    let max_sessions = ctx.engine.limits().max_sessions;
    let max = ctx.engine.limits().max_message_bytes as usize;
    let (health, health_svc) = tonic_health::server::health_reporter();
    let serving = <VerifierServer<GrpcService> as tonic::server::NamedService>::NAME;
    health
        .set_service_status(serving, tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(report_health(health, ctx.clone()));
    let mut leaving = ctx.life.clone();
    let svc = VerifierServer::new(GrpcService::new(ctx.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX);
    let svc = Bounded::new(svc, ctx.guards.clone());
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
    let errors = ctx.engine.metrics().accept_errors("grpc");
    let acceptor = Acceptor::new(listener, bounds.max_connections, "gRPC", errors);
    let incoming = grpc_incoming(acceptor, ctx.guards.clone());
    Ok(tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .max_concurrent_streams(ClientBounds::streams_per_connection(max_sessions))
            .http2_keepalive_interval(Some(bounds.keep_alive))
            .http2_keepalive_timeout(Some(bounds.idle_timeout))
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
    }))
}

/// How often health follows the server's state.
const HEALTH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Keeps `grpc.health.v1` true for a balancer: NOT_SERVING while every session slot is
/// taken or the server is draining, SERVING otherwise (for the whole server, `""`, and
/// for `tandem.v1.Verifier`). Ends when the server stops.
async fn report_health(health: tonic_health::server::HealthReporter, ctx: Serving) {
    use tonic::server::NamedService;
    use tonic_health::ServingStatus;
    let names = ["", <VerifierServer<GrpcService> as NamedService>::NAME];
    let max = i64::from(ctx.engine.limits().max_sessions);
    let mut life: Lifecycle = ctx.life.clone();
    let mut last = None;
    loop {
        let full = ctx.engine.metrics().active_sessions.get() >= max;
        let status = if life.phase() == Phase::Serving && !full {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(status) {
            for name in names {
                health.set_service_status(name, status).await;
            }
            last = Some(status);
        }
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_EVERY) => {}
            _ = life.stopped() => return,
        }
    }
}
