//! The client over QUIC: one bidirectional stream per session (and one for `Info`),
//! carrying length-delimited frames ([`crate::frame`]); the bearer token rides in
//! `Open` and `InfoRequest`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{BoxFuture, ConnectOptions, DEAD_PEER_AFTER, Downlink, Endpoint, Wire, lost, resolve};
use crate::frame::{self, Framing};
use crate::pb;
use crate::{ProtocolError, WireError};

/// One QUIC connection to the verifier (and the endpoint that drives it).
#[derive(Debug, Clone)]
pub(super) struct QuicWire {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
}

/// Longest the endpoint is kept for a closed connection to drain.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long a close itself waits: time for the endpoint to send the close frame (it
/// goes out at once); the draining period after it (three probe timeouts, ~85 ms on
/// loopback) goes on in the background, so a client's next request does not wait.
const CLOSE_GRACE: Duration = Duration::from_millis(5);
/// How often the client pings a quiet connection.
const KEEP_ALIVE: Duration = Duration::from_millis(250);

impl QuicWire {
    /// Connects (within 5 s), trusting the certificate `opts.ca` names.
    pub(super) async fn connect(
        endpoint: &Endpoint,
        opts: &ConnectOptions,
        fail: impl Fn(String) -> ProtocolError,
    ) -> Result<Self, ProtocolError> {
        let ca = opts.ca.as_ref().ok_or_else(|| {
            fail("QUIC needs the verifier's certificate: pass --ca PATH/cert.pem".into())
        })?;
        let mut config = crate::tls::quic_client_config(ca)?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(KEEP_ALIVE))
            .max_idle_timeout(DEAD_PEER_AFTER.try_into().ok());
        config.transport_config(std::sync::Arc::new(transport));
        let addr = resolve(&endpoint.host, endpoint.port)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().expect("literal")
        } else {
            "0.0.0.0:0".parse().expect("literal")
        };
        let mut ep = quinn::Endpoint::client(bind).map_err(|e| fail(e.to_string()))?;
        ep.set_default_client_config(config);
        let connecting = ep
            .connect(addr, &endpoint.host)
            .map_err(|e| fail(e.to_string()))?;
        let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
            .await
            .map_err(|_| fail("no answer within 5 s".into()))?
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self { conn, endpoint: ep })
    }
}

fn limit(opts: &ConnectOptions) -> u32 {
    opts.max_message().min(u32::MAX as usize) as u32
}

impl Wire for QuicWire {
    fn framing(&self) -> Framing {
        Framing::Quic
    }

    fn info<'a>(
        &'a self,
        opts: &'a ConnectOptions,
    ) -> BoxFuture<'a, Result<pb::InfoResponse, ProtocolError>> {
        Box::pin(async move {
            let (mut send, mut recv) = self.conn.open_bi().await.map_err(lost)?;
            let msg = pb::EdgeMessage {
                kind: Some(pb::edge_message::Kind::Info(pb::InfoRequest {
                    auth_token: opts.auth_token.clone().unwrap_or_default(),
                })),
            };
            frame::write(&mut send, &msg).await.map_err(lost)?;
            send.finish().map_err(lost)?;
            let reply: Option<pb::CloudMessage> = frame::read(&mut recv, limit(opts))
                .await
                .map_err(|e| ProtocolError::BadFrame(e.to_string()))?;
            match reply.and_then(|m| m.kind) {
                Some(pb::cloud_message::Kind::Info(info)) => Ok(info),
                Some(pb::cloud_message::Kind::Error(e)) => Err(WireError::from_pb(&e).into()),
                other => Err(ProtocolError::BadFrame(format!(
                    "expected an Info answer, got {other:?}"
                ))),
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.conn.close(0u32.into(), b"done");
            if tokio::time::timeout(CLOSE_GRACE, self.endpoint.wait_idle())
                .await
                .is_err()
            {
                let endpoint = self.endpoint.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
                });
            }
        })
    }

    fn open<'a>(
        &'a self,
        opts: &'a ConnectOptions,
        mut up: mpsc::Receiver<pb::EdgeMessage>,
        down: Downlink,
    ) -> BoxFuture<'a, Result<(), ProtocolError>> {
        Box::pin(async move {
            let (mut send, mut recv) = self.conn.open_bi().await.map_err(lost)?;
            let token = opts.auth_token.clone().unwrap_or_default();
            tokio::spawn(async move {
                while let Some(mut msg) = up.recv().await {
                    if let Some(pb::edge_message::Kind::Open(open)) = &mut msg.kind {
                        open.auth_token = token.clone();
                    }
                    if frame::write(&mut send, &msg).await.is_err() {
                        return;
                    }
                }
                let _ = send.finish();
            });
            let limit = limit(opts);
            tokio::spawn(async move {
                loop {
                    let item = match frame::read::<pb::CloudMessage, _>(&mut recv, limit).await {
                        Ok(Some(m)) => Ok(m),
                        Ok(None) => Err(ProtocolError::Disconnected(
                            "the verifier ended the session".into(),
                        )),
                        Err(e) => Err(ProtocolError::Disconnected(e.to_string())),
                    };
                    let end = item.is_err();
                    if down.send(item).await.is_err() || end {
                        return;
                    }
                }
            });
            Ok(())
        })
    }
}
