//! The QUIC transport: ALPN `tandem/1`, one bidirectional stream per session carrying
//! length-delimited `EdgeMessage`s up and `CloudMessage`s down. A refusal is an `Error`
//! frame followed by the end of the stream.

use std::sync::Arc;

use tandem_protocol::frame::{self, FrameError};
use tandem_protocol::{WireError, pb};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::bounds::ConnectionPending;
use crate::metrics::Metrics;
use crate::service::{Serving, check_token, count_message, msg, run_session};

/// Accepts connections until the endpoint closes; at most `max_connections` at once
/// (more are refused, and the client may try another replica or come back).
pub async fn accept(endpoint: quinn::Endpoint, ctx: Serving) {
    let slots = Arc::new(Semaphore::new(ctx.guards.bounds.max_connections.max(1)));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(
                "QUIC connection from {} refused: {} connections open",
                incoming.remote_address(),
                ctx.guards.bounds.max_connections
            );
            incoming.refuse();
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let pending = ctx.guards.connection();
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
                        tokio::spawn(stream(send, recv, ctx.clone(), pending.clone()));
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
async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: Serving,
    connection: ConnectionPending,
) {
    let _writing = ctx.life.writing();
    let metrics = ctx.engine.metrics().clone();
    let bounds = ctx
        .guards
        .read_bounds(ctx.engine.limits().max_message_bytes);
    let mut pending = match ctx.guards.pending(&connection) {
        Ok(p) => p,
        Err(e) => return refuse(&mut send, &e, &metrics).await,
    };
    let mut leaving = ctx.life.clone();
    let first = tokio::select! {
        read = tokio::time::timeout(
            ctx.guards.bounds.first_message_timeout,
            frame::read_within::<pb::EdgeMessage, _>(&mut recv, &bounds),
        ) => read,
        _ = leaving.leaving() => {
            return refuse(&mut send, &crate::service::shutting_down(), &metrics).await;
        }
        _ = pending.dropped() => {
            return refuse(&mut send, &ctx.guards.gave_way(), &metrics).await;
        }
    };
    drop(pending);
    let first = match first {
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return refuse(&mut send, &e.to_wire(), &metrics).await,
        Err(_) => return refuse(&mut send, &ctx.guards.first_message_late(), &metrics).await,
    };
    let token = match &first.kind {
        Some(pb::edge_message::Kind::Info(i)) => &i.auth_token,
        Some(pb::edge_message::Kind::Open(o)) => &o.auth_token,
        _ => {
            let e =
                WireError::precondition("the first message of a QUIC stream must be Open or Info");
            return refuse(&mut send, &e, &metrics).await;
        }
    };
    if let Err(e) = check_token(ctx.auth.as_deref(), Some(token)) {
        return refuse(&mut send, &e, &metrics).await;
    }
    if let Some(pb::edge_message::Kind::Info(_)) = first.kind {
        let info = msg(pb::cloud_message::Kind::Info(ctx.info.as_ref().clone()));
        let _ = frame::write(&mut send, &info).await;
        end(&mut send).await;
        return;
    }
    let (in_tx, in_rx) = mpsc::channel::<Result<pb::EdgeMessage, WireError>>(16);
    let _ = in_tx.send(Ok(first)).await;
    tokio::spawn(async move {
        loop {
            let item = match frame::read_within::<pb::EdgeMessage, _>(&mut recv, &bounds).await {
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
    tokio::spawn(run_session(ctx, ReceiverStream::new(in_rx), out_tx));
    while let Some(item) = out_rx.recv().await {
        match item {
            Ok(m) => {
                count_message(&metrics, &m);
                if frame::write(&mut send, &m).await.is_err() {
                    return;
                }
            }
            Err(e) => return refuse(&mut send, &e, &metrics).await,
        }
    }
    end(&mut send).await;
}
