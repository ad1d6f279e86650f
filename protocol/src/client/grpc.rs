//! The client over gRPC: `Verifier.Info` and the bidirectional `Verifier.Session`
//! stream, on one HTTP/2 channel.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::{BoxFuture, ConnectOptions, Downlink, Endpoint, Wire, error_chain};
use crate::frame::Framing;
use crate::pb::{self, verifier_client::VerifierClient};
use crate::{AUTH_HEADER, ProtocolError, WireError};

/// One HTTP/2 channel to the verifier.
#[derive(Debug, Clone)]
pub(super) struct GrpcWire {
    client: VerifierClient<Channel>,
}

impl GrpcWire {
    /// Connects (within 5 s).
    pub(super) async fn connect(
        endpoint: &Endpoint,
        opts: &ConnectOptions,
        fail: impl Fn(String) -> ProtocolError,
    ) -> Result<Self, ProtocolError> {
        let host = if endpoint.host.contains(':') {
            format!("[{}]", endpoint.host)
        } else {
            endpoint.host.clone()
        };
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{host}:{}", endpoint.port))
                .map_err(|e| fail(e.to_string()))?
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                // A verifier that vanishes without a FIN or RST (a crash of its host,
                // a cut link) is noticed from unanswered PINGs, as over QUIC.
                .http2_keep_alive_interval(super::DEAD_PEER_AFTER)
                .keep_alive_timeout(super::DEAD_PEER_AFTER)
                .keep_alive_while_idle(true)
                .connect()
                .await
                .map_err(|e| fail(error_chain(&e)))?;
        Ok(Self {
            client: VerifierClient::new(channel)
                .max_decoding_message_size(opts.max_message())
                .max_encoding_message_size(usize::MAX),
        })
    }
}

/// Puts the bearer token (if any) in a request's metadata.
fn authorize<T>(req: &mut tonic::Request<T>, opts: &ConnectOptions) -> Result<(), ProtocolError> {
    if let Some(token) = &opts.auth_token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().map_err(|_| {
            ProtocolError::Auth(
                "the auth token is not valid header text (printable ASCII only)".into(),
            )
        })?;
        req.metadata_mut().insert(AUTH_HEADER, value);
    }
    Ok(())
}

/// A status on a session's stream as the edge sees it: the stream breaking (these codes,
/// or [`info_error`]'s test), or a refusal.
fn grpc_error(status: tonic::Status) -> ProtocolError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            ProtocolError::Disconnected(status.message().to_string())
        }
        _ => info_error(status),
    }
}

/// Whether tonic made this status out of the connection failing rather than read it from
/// the verifier. tonic keeps the transport's error (an h2 reset, a hyper or I/O error) as
/// the source of the status it makes from it, and gives it a code of its own choosing —
/// `INTERNAL: h2 protocol error` when the verifier dies mid-handshake — while a status the
/// verifier sent has no source. Such a status says nothing of the request: the link broke.
fn from_transport(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// `Info`'s failures: the link breaking, or the verifier's refusal (whatever its code).
fn info_error(status: tonic::Status) -> ProtocolError {
    if from_transport(&status) {
        ProtocolError::Disconnected(status.message().to_string())
    } else {
        WireError::from(status).into()
    }
}

impl Wire for GrpcWire {
    fn framing(&self) -> Framing {
        Framing::Grpc
    }

    fn info<'a>(
        &'a self,
        opts: &'a ConnectOptions,
    ) -> BoxFuture<'a, Result<pb::InfoResponse, ProtocolError>> {
        Box::pin(async move {
            let mut req = tonic::Request::new(pb::InfoRequest::default());
            authorize(&mut req, opts)?;
            let resp = self.client.clone().info(req).await.map_err(info_error)?;
            Ok(resp.into_inner())
        })
    }

    /// Nothing to wait for: the verifier sees the TCP connection close when the channel
    /// is dropped (or the process exits).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn open<'a>(
        &'a self,
        opts: &'a ConnectOptions,
        up: mpsc::Receiver<pb::EdgeMessage>,
        down: Downlink,
    ) -> BoxFuture<'a, Result<(), ProtocolError>> {
        Box::pin(async move {
            let mut req = tonic::Request::new(ReceiverStream::new(up));
            authorize(&mut req, opts)?;
            let mut client = self.client.clone();
            tokio::spawn(async move {
                let mut stream = match client.session(req).await {
                    Ok(resp) => resp.into_inner(),
                    Err(status) => {
                        let _ = down.send(Err(grpc_error(status))).await;
                        return;
                    }
                };
                loop {
                    let item = match stream.message().await {
                        Ok(Some(m)) => Ok(m),
                        Ok(None) => Err(ProtocolError::Disconnected(
                            "the verifier ended the session".into(),
                        )),
                        Err(status) => Err(grpc_error(status)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_that_is_not_header_text_is_an_auth_error() {
        let opts = ConnectOptions {
            auth_token: Some("line\nbreak".into()),
            ..ConnectOptions::default()
        };
        let e = authorize(&mut tonic::Request::new(()), &opts).unwrap_err();
        assert!(matches!(e, ProtocolError::Auth(_)), "{e}");
        assert!(e.to_string().starts_with("authentication:"), "{e}");
    }

    /// What tonic makes of an h2 error on the channel (the verifier killed mid-stream).
    fn h2_failure(reason: h2::Reason) -> tonic::Status {
        tonic::Status::from_error(Box::new(h2::Error::from(reason)))
    }

    #[test]
    fn a_status_made_from_a_broken_connection_is_a_disconnection_whatever_its_code() {
        let status = h2_failure(h2::Reason::PROTOCOL_ERROR);
        assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
        assert!(matches!(grpc_error(status), ProtocolError::Disconnected(_)));
        let status = h2_failure(h2::Reason::INTERNAL_ERROR);
        assert!(matches!(info_error(status), ProtocolError::Disconnected(_)));
    }

    #[test]
    fn a_status_the_verifier_sent_stays_its_refusal() {
        for code in [tonic::Code::Internal, tonic::Code::InvalidArgument] {
            let refused = grpc_error(tonic::Status::new(code, "no"));
            assert!(
                matches!(&refused, ProtocolError::Refused(w) if w.code == code),
                "{refused:?}"
            );
        }
        let shutting_down = || tonic::Status::unavailable("the verifier is shutting down");
        assert!(matches!(
            grpc_error(shutting_down()),
            ProtocolError::Disconnected(_)
        ));
        assert!(matches!(
            info_error(shutting_down()),
            ProtocolError::Refused(w) if w.code == tonic::Code::Unavailable
        ));
    }
}
