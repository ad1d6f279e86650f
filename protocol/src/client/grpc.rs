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

/// A status as the edge sees it: the stream breaking, or a refusal.
fn grpc_error(status: tonic::Status) -> ProtocolError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            ProtocolError::Disconnected(status.message().to_string())
        }
        _ => WireError::from(status).into(),
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
            let resp = self
                .client
                .clone()
                .info(req)
                .await
                .map_err(WireError::from)?;
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
}
