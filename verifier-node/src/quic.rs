//! The QUIC transport: ALPN `tandem/1`, one bidirectional stream per session carrying
//! length-delimited `EdgeMessage`s up and `CloudMessage`s down. A refusal is an `Error`
//! frame followed by the end of the stream.

use std::sync::Arc;

use tandem_protocol::frame::{self, FrameError};
use tandem_protocol::{WireError, pb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::engine::EngineHandle;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::service::{check_token, count_message, msg, run_session};

/// What every QUIC stream handler needs.
#[derive(Debug, Clone)]
pub struct QuicContext {
    /// The engine.
    pub engine: EngineHandle,
    /// Required bearer token.
    pub auth: Option<Arc<str>>,
    /// The server's phase and its running sessions.
    pub life: Lifecycle,
}

/// Accepts connections until the endpoint closes.
pub async fn accept(endpoint: quinn::Endpoint, ctx: QuicContext) {
    while let Some(incoming) = endpoint.accept().await {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("QUIC handshake failed: {e}");
                    return;
                }
            };
            loop {
                match conn.accept_bi().await {
                    Ok((send, recv)) => {
                        tokio::spawn(stream(send, recv, ctx.clone()));
                    }
                    Err(e) => {
                        tracing::debug!(
                            "QUIC connection from {} ended: {e}",
                            conn.remote_address()
                        );
                        return;
                    }
                }
            }
        });
    }
}

async fn refuse(send: &mut quinn::SendStream, e: &WireError, metrics: &Metrics) {
    metrics.error(e.code);
    let _ = frame::write(send, &msg(pb::cloud_message::Kind::Error(e.to_pb(0)))).await;
    end(send).await;
}

/// How long a stream's last frames may take to be acknowledged before it is left.
const FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// Ends the stream and waits (briefly) until the client has acknowledged everything
/// sent, so that closing the connection afterwards loses nothing.
async fn end(send: &mut quinn::SendStream) {
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(FLUSH, send.stopped()).await;
    }
}

/// One stream: an `Info` call or a session.
async fn stream(mut send: quinn::SendStream, mut recv: quinn::RecvStream, ctx: QuicContext) {
    let _writing = ctx.life.writing();
    let limit = ctx.engine.limits().max_message_bytes;
    let first: pb::EdgeMessage = match frame::read(&mut recv, limit).await {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => return refuse(&mut send, &e.to_wire(), ctx.engine.metrics()).await,
    };
    let token = match &first.kind {
        Some(pb::edge_message::Kind::Info(i)) => &i.auth_token,
        Some(pb::edge_message::Kind::Open(o)) => &o.auth_token,
        _ => {
            let e =
                WireError::precondition("the first message of a QUIC stream must be Open or Info");
            return refuse(&mut send, &e, ctx.engine.metrics()).await;
        }
    };
    if let Err(e) = check_token(ctx.auth.as_deref(), Some(token)) {
        return refuse(&mut send, &e, ctx.engine.metrics()).await;
    }
    if let Some(pb::edge_message::Kind::Info(_)) = first.kind {
        let info = msg(pb::cloud_message::Kind::Info(ctx.engine.info().clone()));
        let _ = frame::write(&mut send, &info).await;
        end(&mut send).await;
        return;
    }
    let (in_tx, in_rx) = mpsc::channel::<Result<pb::EdgeMessage, WireError>>(16);
    let _ = in_tx.send(Ok(first)).await;
    tokio::spawn(async move {
        loop {
            let item = match frame::read::<pb::EdgeMessage, _>(&mut recv, limit).await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => return,
                Err(FrameError::Io(e)) => {
                    tracing::debug!("QUIC stream read failed: {e}");
                    return;
                }
                Err(e) => Err(e.to_wire()),
            };
            let end = item.is_err();
            if in_tx.send(item).await.is_err() || end {
                return;
            }
        }
    });
    let (out_tx, mut out_rx) = mpsc::channel(64);
    tokio::spawn(run_session(
        ctx.engine.clone(),
        ReceiverStream::new(in_rx),
        out_tx,
        ctx.life.clone(),
    ));
    while let Some(item) = out_rx.recv().await {
        match item {
            Ok(m) => {
                count_message(ctx.engine.metrics(), &m);
                if frame::write(&mut send, &m).await.is_err() {
                    return;
                }
            }
            Err(e) => return refuse(&mut send, &e, ctx.engine.metrics()).await,
        }
    }
    end(&mut send).await;
}
