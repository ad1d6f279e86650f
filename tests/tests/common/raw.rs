//! Raw clients for tests that speak the protocol by hand: a gRPC session stream and a
//! QUIC connection, and the messages they send.

use std::net::SocketAddr;
use std::path::Path;

use prost::bytes::Bytes;
use tandem_models::LanguageModel;
use tandem_protocol::pb::verifier_client::VerifierClient;
use tandem_protocol::pb::{self, cloud_message::Kind as Down, edge_message::Kind as Up};
use tandem_protocol::{frame, tls};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::{PROMPTS, Verifier, prompt_ids, target};

/// An `Open` of the counting prompt (greedy, 32 new tokens) with `token` for QUIC.
pub fn open_msg(fingerprint: &str, token: &str) -> pb::EdgeMessage {
    pb::EdgeMessage {
        kind: Some(Up::Open(pb::Open {
            prompt_ids: prompt_ids(PROMPTS[1]),
            tokenizer_fingerprint: fingerprint.into(),
            max_new_tokens: 32,
            mode: pb::AcceptanceMode::Greedy as i32,
            auth_token: token.into(),
            ..Default::default()
        })),
    }
}

/// The shipped target's tokenizer fingerprint.
pub fn fingerprint() -> String {
    target().model.info().tokenizer_fingerprint.clone()
}

/// A greedy `Draft`.
pub fn draft_msg(
    session_id: u64,
    base_len: u32,
    anchor: u32,
    tokens: Vec<u32>,
    seq: u64,
) -> pb::EdgeMessage {
    pb::EdgeMessage {
        kind: Some(Up::Draft(pb::Draft {
            session_id,
            base_len,
            anchor,
            tokens,
            q: vec![],
            seq,
            parents: vec![],
        })),
    }
}

/// A raw gRPC session: the stream's sender and receiver.
pub struct Raw {
    pub tx: mpsc::Sender<pb::EdgeMessage>,
    pub rx: tonic::Streaming<pb::CloudMessage>,
}

/// Opens a session stream (nothing sent yet), with `token` as bearer if given.
pub async fn raw_grpc(v: &Verifier, token: Option<&str>) -> Result<Raw, tonic::Status> {
    let addr = v.running.grpc_addr.unwrap();
    let mut client = VerifierClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let rx = client.session(req).await?.into_inner();
    Ok(Raw { tx, rx })
}

/// A gRPC session opened by hand (no token), held open while the `Raw` lives.
pub async fn open_session(v: &Verifier) -> Raw {
    let mut s = raw_grpc(v, None).await.unwrap();
    let opened = s.ask(open_msg(&fingerprint(), "")).await.unwrap();
    assert!(matches!(opened, Down::Opened(_)), "{opened:?}");
    s
}

impl Raw {
    /// Sends `m` and reads the answer (a status ends the stream).
    pub async fn ask(&mut self, m: pb::EdgeMessage) -> Result<Down, tonic::Status> {
        self.tx.send(m).await.unwrap();
        self.next().await
    }

    /// Reads the next answer.
    pub async fn next(&mut self) -> Result<Down, tonic::Status> {
        let m = self.rx.message().await?.expect("an answer");
        Ok(m.kind.unwrap())
    }
}

/// A raw QUIC connection to the verifier.
pub async fn raw_quic(v: &Verifier) -> quinn::Connection {
    quic_to(
        v.running.quic_addr.unwrap(),
        v.running.cert_path.as_ref().unwrap(),
    )
    .await
}

/// A raw QUIC connection to a verifier at `addr` whose certificate is `cert`.
pub async fn quic_to(addr: SocketAddr, cert: &Path) -> quinn::Connection {
    let cfg = tls::quic_client_config(cert).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(cfg);
    ep.connect(addr, "localhost").unwrap().await.unwrap()
}

/// Reads one frame from a QUIC stream.
pub async fn read(recv: &mut quinn::RecvStream) -> Down {
    let m: pb::CloudMessage = frame::read(recv, 1 << 20).await.unwrap().unwrap();
    m.kind.unwrap()
}

/// Sends `bytes` on a new QUIC stream of `conn`, ends it, and reads the answer.
pub async fn quic_bytes(conn: &quinn::Connection, bytes: &[u8]) -> Down {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    read(&mut recv).await
}

/// Asserts `got` is an in-stream `Error` with `code`, `seq`, and `needle` in its message.
pub fn expect_error(got: Down, code: Code, seq: u64, needle: &str) {
    match got {
        Down::Error(e) => {
            assert_eq!(Code::from_i32(e.code), code, "{}", e.message);
            assert_eq!(e.seq, seq);
            assert!(
                e.message.contains(needle),
                "{:?} lacks {needle:?}",
                e.message
            );
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// A gRPC codec that sends messages as raw bytes (for bytes that are not protobuf) and
/// reads `CloudMessage`s.
struct RawCodec;

struct RawEncoder;

struct DownDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for DownDecoder {
    type Item = pb::CloudMessage;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<pb::CloudMessage>, tonic::Status> {
        prost::Message::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = pb::CloudMessage;
    type Encoder = RawEncoder;
    type Decoder = DownDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> DownDecoder {
        DownDecoder
    }
}

/// Sends `bytes` as the one message of a gRPC session stream (with `authorization`
/// set to `auth` if given) and returns the status that ends it.
pub async fn grpc_bytes(v: &Verifier, auth: Option<&str>, bytes: Vec<u8>) -> tonic::Status {
    let addr = v.running.grpc_addr.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut req = tonic::Request::new(tokio_stream::once(bytes));
    if let Some(a) = auth {
        req.metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/tandem.v1.Verifier/Session");
    match grpc.streaming(req, path, RawCodec).await {
        Err(status) => status,
        Ok(resp) => {
            let mut rx = resp.into_inner();
            match rx.message().await {
                Err(status) => status,
                Ok(m) => panic!("expected a status, got {m:?}"),
            }
        }
    }
}

/// An HTTP/2 connection to a verifier's gRPC port at `addr`, spoken by hand.
pub async fn h2_to(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    send
}

/// Starts a `Session` call and sends `body` (raw gRPC framing, or part of it) without
/// ending the stream.
pub async fn h2_session(
    send: &mut h2::client::SendRequest<Bytes>,
    body: Vec<u8>,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let req = http::Request::post(format!("http://{}/tandem.v1.Verifier/Session", "localhost"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut ready = send.clone().ready().await.unwrap();
    let (resp, mut stream) = ready.send_request(req, false).unwrap();
    if !body.is_empty() {
        stream.send_data(Bytes::from(body), false).unwrap();
    }
    (resp, stream)
}

/// The gRPC status that ends a response (trailers-only or in the trailers).
pub async fn h2_status(resp: h2::client::ResponseFuture) -> (Code, String) {
    let resp = resp.await.unwrap();
    let read = |h: &http::HeaderMap| {
        h.get("grpc-status").map(|c| {
            let code = Code::from_i32(c.to_str().unwrap().parse().unwrap());
            let msg = h
                .get("grpc-message")
                .map(|m| m.to_str().unwrap().to_string())
                .unwrap_or_default();
            (code, msg)
        })
    };
    if let Some(s) = read(resp.headers()) {
        return s;
    }
    let mut body = resp.into_body();
    while let Some(d) = body.data().await {
        let _ = d.unwrap();
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    read(&trailers).expect("grpc-status")
}

/// gRPC's prefix of a message of `len` bytes.
pub fn grpc_prefix(len: u32) -> Vec<u8> {
    let mut p = vec![0];
    p.extend_from_slice(&len.to_be_bytes());
    p
}

/// A QUIC stream on `conn` that has sent `bytes` and stays open.
pub async fn quic_partial(
    conn: &quinn::Connection,
    bytes: &[u8],
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    (send, recv)
}

/// A QUIC length prefix announcing `len` bytes.
pub fn quic_prefix(len: u64) -> Vec<u8> {
    let mut p = Vec::new();
    prost::encode_length_delimiter(len as usize, &mut p).unwrap();
    p
}
