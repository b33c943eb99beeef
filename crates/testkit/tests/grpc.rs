//! The gRPC test server and client, directly (no proxy in between).
#![allow(clippy::unwrap_used)]

use testkit::{BIDI, CLIENT_STREAM, GRPC_STATUS_HEADER, GrpcEcho, GrpcStream, SERVER_STREAM};

fn text(m: Option<bytes::Bytes>) -> Option<String> {
    m.map(|m| String::from_utf8_lossy(&m).into_owned())
}

#[tokio::test]
async fn bidi_answers_each_message_before_the_next_is_sent() {
    let server = GrpcEcho::start("g").unwrap();
    let mut call = GrpcStream::start(server.addr(), BIDI, &[(GRPC_STATUS_HEADER, "3")])
        .await
        .unwrap();
    assert_eq!(call.header("x-upstream"), Some("g"));
    for i in 0..3 {
        call.send(format!("{i}").as_bytes()).await.unwrap();
        assert_eq!(text(call.recv().await.unwrap()), Some(format!("echo:{i}")));
    }
    call.close_send();
    assert_eq!(call.recv().await.unwrap(), None);
    assert_eq!(call.status(), (Some("3".to_owned()), None));
}

#[tokio::test]
async fn server_and_client_streaming() {
    let server = GrpcEcho::start("g").unwrap();
    let mut call = GrpcStream::start(server.addr(), SERVER_STREAM, &[])
        .await
        .unwrap();
    call.send(b"2").await.unwrap();
    assert_eq!(text(call.recv().await.unwrap()).as_deref(), Some("1"));
    assert_eq!(text(call.recv().await.unwrap()).as_deref(), Some("2"));
    call.close_send();
    assert_eq!(call.recv().await.unwrap(), None);
    assert_eq!(call.status().0.as_deref(), Some("0"));

    let mut call = GrpcStream::start(server.addr(), CLIENT_STREAM, &[])
        .await
        .unwrap();
    call.send(b"a").await.unwrap();
    call.send(b"b").await.unwrap();
    call.close_send();
    let all = call.recv_all().await.unwrap();
    assert_eq!(all, vec![bytes::Bytes::from_static(b"a,b")]);
    assert_eq!(call.status().0.as_deref(), Some("0"));
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn unknown_methods_get_a_trailers_only_unimplemented() {
    let server = GrpcEcho::start("g").unwrap();
    let mut call = GrpcStream::start(server.addr(), "/x.Y/Z", &[])
        .await
        .unwrap();
    assert_eq!(call.recv().await.unwrap(), None);
    assert!(call.trailers().is_none());
    assert_eq!(
        call.status(),
        (
            Some("12".to_owned()),
            Some("unknown method /x.Y/Z".to_owned())
        )
    );
}
