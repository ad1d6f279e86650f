//! One session's conversation, the same for both transports: read the `Open`, check
//! it, open the session in the engine, then answer each `Draft` with a `Verdict` (or
//! stream tokens for cloud-only generation) until the edge closes.
//!
//! Errors that concern one draft block are answered in-stream (`CloudMessage.error`,
//! with the block's `seq`) and the session goes on. Errors that make the session
//! meaningless (a bad `Open`, a broken stream) end it with a status.

use std::sync::Arc;

use tandem_protocol::{WireError, pb};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};

use crate::bounds::Guards;
use crate::engine::EngineHandle;
use crate::lifecycle::{Lifecycle, Phase};

/// What every handler of both transports shares (cheap to clone).
#[derive(Debug, Clone)]
pub struct Serving {
    /// The engine.
    pub engine: EngineHandle,
    /// Required bearer token.
    pub auth: Option<Arc<str>>,
    /// The server's phase and its running sessions.
    pub life: Lifecycle,
    /// What one client may hold.
    pub guards: Guards,
    /// The `Info` answer: the engine's, with the connection bounds.
    pub info: Arc<pb::InfoResponse>,
}

/// What a session sends back: a message, or the status that ends the session.
pub type Outbound = Result<pb::CloudMessage, WireError>;

/// Counts a refusal on its way out (a status, or an in-stream `Error`).
pub fn count_refusal(metrics: &crate::metrics::Metrics, item: &Outbound) {
    match item {
        Err(e) => metrics.error(e.code),
        Ok(m) => count_message(metrics, m),
    }
}

/// Counts an in-stream `Error`, if `m` is one.
pub fn count_message(metrics: &crate::metrics::Metrics, m: &pb::CloudMessage) {
    if let Some(pb::cloud_message::Kind::Error(e)) = &m.kind {
        metrics.error(tonic::Code::from_i32(e.code));
    }
}

/// Wraps a message kind.
pub fn msg(kind: pb::cloud_message::Kind) -> pb::CloudMessage {
    pb::CloudMessage { kind: Some(kind) }
}

/// Frees the session's cache however the conversation ends.
struct CloseOnDrop<'a> {
    engine: &'a EngineHandle,
    id: u64,
}

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        tracing::debug!(session = self.id, "session closed");
        self.engine.close(self.id);
    }
}

/// The refusal of a session the server cannot serve because it is shutting down.
pub fn shutting_down() -> WireError {
    WireError::new(
        tonic::Code::Unavailable,
        "the verifier is shutting down: re-open the session elsewhere",
    )
}

/// Runs one session until the edge closes it, the stream breaks, or the server leaves
/// (see [`crate::lifecycle`]).
pub async fn run_session<S>(ctx: Serving, mut inbound: S, out: mpsc::Sender<Outbound>)
where
    S: Stream<Item = Result<pb::EdgeMessage, WireError>> + Unpin + Send,
{
    let Serving {
        engine,
        mut life,
        info,
        ..
    } = ctx;
    let _running = life.enter();
    let mut stop = life.clone();
    if life.phase() != Phase::Serving {
        let _ = out.send(Err(shutting_down())).await;
        return;
    }
    let first = tokio::select! {
        m = inbound.next() => m,
        _ = life.leaving() => {
            let _ = out.send(Err(shutting_down())).await;
            return;
        }
    };
    let open = match first {
        None => return,
        Some(Err(e)) => {
            let _ = out.send(Err(e)).await;
            return;
        }
        Some(Ok(pb::EdgeMessage {
            kind: Some(pb::edge_message::Kind::Open(open)),
        })) => open,
        Some(Ok(_)) => {
            let _ = out
                .send(Err(WireError::precondition(
                    "the first message of a session must be Open",
                )))
                .await;
            return;
        }
    };
    let (vocab, max_context) = (info.vocab_size as usize, info.max_context as usize);
    let early_exit = open.early_exit && !info.early_exit_layers.is_empty();
    let req =
        match engine
            .limits()
            .check_open(open, vocab, max_context, &info.tokenizer_fingerprint)
        {
            Ok(r) => r,
            Err(e) => {
                tracing::info!("Open refused: {e}");
                let _ = out.send(Err(e)).await;
                return;
            }
        };
    let stochastic = req.stochastic;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let generate = req.generate.then_some(events_tx);
    let is_generating = generate.is_some();
    let opened = tokio::select! {
        r = engine.open(req, generate) => r,
        _ = stop.stopped() => return,
    };
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            let _ = out.send(Err(e)).await;
            return;
        }
    };
    let id = opened.session_id;
    tracing::debug!(
        session = id,
        prompt = opened.committed_len - 1,
        generate = is_generating,
        stochastic,
        "session opened"
    );
    let _guard = CloseOnDrop {
        engine: &engine,
        id,
    };
    if out
        .send(Ok(msg(pb::cloud_message::Kind::Opened(opened))))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let incoming = tokio::select! {
            _ = life.leaving() => {
                if life.phase() == Phase::Draining {
                    let _ = out.send(Err(shutting_down())).await;
                }
                return;
            }
            ev = events.recv(), if is_generating => {
                let Some(kind) = ev else { return };
                let last = matches!(
                    kind,
                    pb::cloud_message::Kind::Finished(_) | pb::cloud_message::Kind::Error(_)
                );
                if out.send(Ok(msg(kind))).await.is_err() || last {
                    return;
                }
                continue;
            }
            m = inbound.next() => m,
        };
        let m = match incoming {
            None => return,
            Some(Err(e)) => {
                let _ = out.send(Err(e)).await;
                return;
            }
            Some(Ok(m)) => m,
        };
        let reply = match m.kind {
            Some(pb::edge_message::Kind::Draft(d)) if !is_generating => {
                let seq = d.seq;
                let answer = match engine.limits().check_draft(d, vocab, stochastic) {
                    Err(e) => Err(e),
                    Ok(block) if block.session_id != id => Err(WireError::new(
                        tonic::Code::NotFound,
                        format!(
                            "unknown session {} on this stream (it serves session {id})",
                            block.session_id
                        ),
                    )),
                    Ok(block) if early_exit => tokio::select! {
                        r = verify_early(&engine, id, block, &out) => match r {
                            Some(r) => r,
                            None => return,
                        },
                        _ = stop.stopped() => return,
                    },
                    Ok(block) => tokio::select! {
                        r = engine.verify(id, block) => r,
                        _ = stop.stopped() => return,
                    },
                };
                match answer {
                    Ok(v) => pb::cloud_message::Kind::Verdict(v),
                    Err(e) => {
                        tracing::debug!(session = id, seq, "block refused: {e}");
                        pb::cloud_message::Kind::Error(e.to_pb(seq))
                    }
                }
            }
            Some(pb::edge_message::Kind::Draft(d)) => pb::cloud_message::Kind::Error(
                WireError::precondition(
                    "this session generates alone (Open.generate); it takes no drafts",
                )
                .to_pb(d.seq),
            ),
            Some(pb::edge_message::Kind::Close(_)) => return,
            Some(pb::edge_message::Kind::Info(_)) => {
                pb::cloud_message::Kind::Info(info.as_ref().clone())
            }
            Some(pb::edge_message::Kind::Open(_)) => {
                let _ = out
                    .send(Err(WireError::precondition(
                        "this stream already has an open session; open another stream",
                    )))
                    .await;
                return;
            }
            None => {
                let _ = out
                    .send(Err(WireError::invalid("an EdgeMessage with no content")))
                    .await;
                return;
            }
        };
        if out.send(Ok(msg(reply))).await.is_err() {
            return;
        }
    }
}

/// Verifies a block, passing its provisional verdicts on to the edge as they come (see
/// [`crate::engine::early_exit`]) and counting, per exit layer, whether the final
/// verdict agreed. `None`: the edge is gone.
async fn verify_early(
    engine: &EngineHandle,
    id: u64,
    block: tandem_protocol::limits::DraftBlock,
    out: &mpsc::Sender<Outbound>,
) -> Option<Result<pb::Verdict, WireError>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let verdict = engine.verify_early(id, block, Some(tx));
    tokio::pin!(verdict);
    let mut heard = Vec::new();
    let result = loop {
        tokio::select! {
            biased;
            Some(p) = rx.recv() => pass_on(p, &mut heard, out).await?,
            r = &mut verdict => break r,
        }
    };
    // Every provisional verdict is sent before its pass's final one.
    while let Ok(p) = rx.try_recv() {
        pass_on(p, &mut heard, out).await?;
    }
    if let Ok(v) = &result {
        for (layer, accepted, next) in heard {
            let agreed = accepted == v.accepted && next == v.next_token;
            engine.metrics().provisional(layer, agreed);
        }
    }
    Some(result)
}

/// Sends a provisional verdict to the edge, noting its (layer, accepted, next token);
/// `None`: the edge is gone.
async fn pass_on(
    p: pb::ProvisionalVerdict,
    heard: &mut Vec<(u32, u32, u32)>,
    out: &mpsc::Sender<Outbound>,
) -> Option<()> {
    heard.push((p.layer, p.accepted, p.next_token));
    out.send(Ok(msg(pb::cloud_message::Kind::Provisional(p))))
        .await
        .ok()
}

/// Checks a bearer token in constant time. `expected` None: no token required.
pub fn check_token(expected: Option<&str>, got: Option<&str>) -> Result<(), WireError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let Some(got) = got.filter(|g| !g.is_empty()) else {
        return Err(WireError::unauthenticated(
            "this verifier requires a bearer token (gRPC: 'authorization: Bearer <token>' metadata; QUIC: Open.auth_token)",
        ));
    };
    let (a, b) = (expected.as_bytes(), got.as_bytes());
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    if diff == 0 {
        Ok(())
    } else {
        Err(WireError::unauthenticated("wrong bearer token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked() {
        assert!(check_token(None, None).is_ok());
        assert!(check_token(Some("s3cret"), Some("s3cret")).is_ok());
        for got in [
            None,
            Some(""),
            Some("s3cre"),
            Some("s3cret!"),
            Some("S3cret"),
        ] {
            let e = check_token(Some("s3cret"), got).unwrap_err();
            assert_eq!(e.code, tonic::Code::Unauthenticated, "{got:?}");
        }
    }
}
