//! A generic gRPC client can find its way: the standard health service says SERVING,
//! server reflection lists the Tandem service, and `Info` (on both transports) tells
//! the model, vocabulary, tokenizer and limits. The bearer token guards `Info` too.

mod common;

use common::*;
use tandem_models::LanguageModel;
use tandem_protocol::client::{Connection, Transport};
use tandem_protocol::{Limits, ProtocolError};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_info() {
    let limits = Limits {
        max_draft_tokens: 12,
        ..Limits::default()
    };
    let v = start_verifier(VerifierOptions {
        limits,
        ..VerifierOptions::default()
    })
    .await;
    let url = format!("http://{}", v.running.grpc_addr.unwrap());

    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "tandem.v1.Verifier"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"tandem.v1.Verifier".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    let want = target().model.info();
    for transport in [Transport::Grpc, Transport::Quic] {
        let t = v.target(transport, None);
        let info = Connection::connect(&t.endpoint, t.options)
            .await
            .unwrap()
            .info()
            .await
            .unwrap();
        assert_eq!(info.vocab_size as usize, want.vocab_size);
        assert_eq!(info.tokenizer_fingerprint, want.tokenizer_fingerprint);
        assert_eq!(info.max_context as usize, want.max_context);
        assert_eq!(info.bos_token_id, want.bos_token_id);
        assert_eq!(Limits::from(info.limits.unwrap()), limits);
    }
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_needs_the_token_when_one_is_set() {
    let v = start_verifier(VerifierOptions {
        auth_token: Some("tok".into()),
        ..VerifierOptions::default()
    })
    .await;
    for transport in [Transport::Grpc, Transport::Quic] {
        let mut t = v.target(transport, None);
        let conn = Connection::connect(&t.endpoint, t.options.clone())
            .await
            .unwrap();
        match conn.info().await {
            Err(ProtocolError::Refused(w)) => assert_eq!(w.code, Code::Unauthenticated),
            other => panic!("{transport:?}: expected UNAUTHENTICATED, got {other:?}"),
        }
        t.options.auth_token = Some("tok".into());
        let conn = Connection::connect(&t.endpoint, t.options).await.unwrap();
        assert!(conn.info().await.is_ok());
    }
    v.running.stop().await;
}

/// What a load balancer reads: NOT_SERVING while every session slot is taken, SERVING
/// again once one is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_a_full_verifier() {
    let v = start_verifier(VerifierOptions {
        limits: Limits {
            max_sessions: 1,
            ..Limits::default()
        },
        ..VerifierOptions::default()
    })
    .await;
    let url = format!("http://{}", v.running.grpc_addr.unwrap());
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut wait_for = async |want: ServingStatus| {
        for _ in 0..200 {
            let mut got = Vec::new();
            for service in ["", "tandem.v1.Verifier"] {
                let req = HealthCheckRequest {
                    service: service.into(),
                };
                got.push(health.check(req).await.unwrap().into_inner().status);
            }
            if got.iter().all(|&s| s == want as i32) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("health never became {want:?}");
    };
    wait_for(ServingStatus::Serving).await;
    let s = common::raw::open_session(&v).await;
    wait_for(ServingStatus::NotServing).await;
    drop(s);
    wait_for(ServingStatus::Serving).await;
    v.running.stop().await;
}
