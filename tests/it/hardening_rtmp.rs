//! What a public RTMP endpoint meets from hostile or broken clients: oversized
//! and forged names, ping floods, connection floods from one address, players
//! on made-up names, and encoders that keep talking after a refusal. Each test
//! failed on the code before the fix it guards.

use crate::common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use rtmp::amf0::Amf0Value;
use rtmp::chunk::ChunkEncoder;
use rtmp::message::{self, Message, type_id, user_control};
use rtmp::{Client, RtmpError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn refusal_of(r: Result<(), RtmpError>) -> (String, String) {
    match r {
        Err(RtmpError::Refused { code, description }) => (code, description),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn long_and_forged_names_are_refused_with_a_reason() {
    let server = start().await;
    let addr = server.running.rtmp_addr;
    let long = "k".repeat(100_000);
    let mut c = Client::connect(addr, "live").await.unwrap();
    let (code, why) = refusal_of(c.publish(&long).await);
    assert_eq!(code, "NetStream.Publish.BadName");
    assert!(why.contains("100000 bytes long, the limit is 128"), "{why}");
    assert!(
        why.len() < 200,
        "the name is not echoed back: {} bytes",
        why.len()
    );

    let mut c = Client::connect(addr, "live").await.unwrap();
    let (code, why) = refusal_of(c.play("demo\nINFO forged log line").await);
    assert_eq!(code, "NetStream.Play.Failed");
    assert!(why.contains("printable ASCII"), "{why}");

    match Client::connect(addr, &"a".repeat(5000)).await {
        Err(RtmpError::Refused { code, description }) => {
            assert_eq!(code, "NetConnection.Connect.Rejected");
            assert!(description.contains("limit is 128"), "{description}");
        }
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    assert_eq!(server.metric("ferry_rtmp_bad_names_total").await, 3.0);
    // A good key still publishes.
    let (ok, err) = publish_file(&server.rtmp_url(KEY), &sample("h264-aac-240p25.flv")).await;
    assert!(ok, "{err}");
}

/// Pings before `connect` from a client that never reads: replies pile up
/// unsent. The server must stop at its bound instead of buffering for ever.
#[tokio::test]
async fn ping_flood_from_a_client_that_never_reads_is_cut_off() {
    let server = start().await;
    let addr = server.running.rtmp_addr;
    let mut s = handshaken(addr).await;
    let mut flood = BytesMut::new();
    let enc = ChunkEncoder::new();
    for i in 0..20_000u32 {
        enc.write(
            &mut flood,
            2,
            0,
            type_id::USER_CONTROL,
            0,
            &message::user_control_body(user_control::PING_REQUEST, i),
        );
    }
    // The server may close before all of it is written.
    let _ = s.write_all(&flood).await;
    wait_for(
        "the flooder is disconnected",
        Duration::from_secs(5),
        || async { server.metric("ferry_rtmp_protocol_errors_total").await >= 1.0 },
    )
    .await;
    assert_closed_by_server(s, "ping flooder").await;
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share() {
    let server = start_with(|c| c.rtmp.max_connections_per_address = 3).await;
    let addr = server.running.rtmp_addr;
    let a = handshaken(addr).await;
    let _b = handshaken(addr).await;
    let _c = handshaken(addr).await;
    let fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_closed_by_server(fourth, "fourth connection from one address").await;
    assert_eq!(
        server
            .metric("ferry_rtmp_connections_rejected_address_total")
            .await,
        1.0
    );
    // A slot freed is a slot usable again.
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Client::connect(addr, "live").await.unwrap();
    c.publish(KEY).await.unwrap();
}

/// Players on made-up names fill every slot but the reserved ones: the real
/// encoder still gets in, another player does not.
#[tokio::test]
async fn players_cannot_take_the_slots_kept_for_publishers() {
    let server = start_with(|c| {
        c.rtmp.max_connections = 6;
        c.rtmp.reserved_publisher_slots = 2;
    })
    .await;
    let addr = server.running.rtmp_addr;
    let mut players = Vec::new();
    for i in 0..4 {
        let mut p = Client::connect(addr, "live").await.unwrap();
        p.play(&format!("made-up-{i}")).await.unwrap();
        players.push(p);
    }
    let mut extra = Client::connect(addr, "live").await.unwrap();
    let (code, why) = refusal_of(extra.play("made-up-x").await);
    assert_eq!(code, "NetStream.Play.Failed");
    assert!(why.contains("kept for publishers"), "{why}");
    let (ok, err) = publish_file(&server.rtmp_url(KEY), &sample("h264-aac-240p25.flv")).await;
    assert!(ok, "the publisher was locked out: {err}");
}

#[tokio::test]
async fn a_player_of_a_stream_that_never_goes_live_is_told_and_closed() {
    let server = start_with(|c| c.rtmp.player_wait_seconds = 3).await;
    let addr = server.running.rtmp_addr;
    let mut p = Client::connect(addr, "live").await.unwrap();
    p.play("nobody-publishes-this").await.unwrap();
    let started = Instant::now();
    let mut told = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(8), p.read()).await {
            Ok(Ok(Message::Command(cmd))) => {
                let code = cmd
                    .args
                    .get(1)
                    .and_then(|i| i.get("code"))
                    .and_then(Amf0Value::as_str);
                told |= code == Some("NetStream.Play.StreamNotFound");
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) => panic!("the player was left waiting"),
        }
    }
    assert!(told, "no StreamNotFound status");
    assert!(started.elapsed() >= Duration::from_millis(2800));
    assert_eq!(
        server.metric("ferry_rtmp_player_wait_expired_total").await,
        1.0
    );

    // A player that joins before the publisher and sees it go live stays (the
    // sample is made first, so ffmpeg starts within the wait).
    let _ = sample("h264-aac-720p30.flv");
    let mut early = Client::connect(addr, "live").await.unwrap();
    early.play(STREAM).await.unwrap();
    let publisher = publish_background(&server.rtmp_url(KEY), 3);
    let got_video = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Message::Video { .. } = early.read().await.unwrap() {
                return;
            }
        }
    })
    .await;
    assert!(got_video.is_ok(), "the early player got no video");
    drop(publisher);
}

/// OBS sends `FCUnpublish` and `deleteStream` after a refused publish; the
/// server reads them for a moment instead of resetting the connection.
#[tokio::test]
async fn a_refused_encoder_can_still_say_goodbye() {
    let server = start().await;
    let addr = server.running.rtmp_addr;
    let mut s = handshaken(addr).await;
    let app = Amf0Value::Object(vec![("app".into(), Amf0Value::String("live".into()))]);
    let mut hello = BytesMut::new();
    hello.extend_from_slice(&command(&message::command_body("connect", 1.0, &[app]), 0));
    hello.extend_from_slice(&command(
        &message::command_body("createStream", 2.0, &[Amf0Value::Null]),
        0,
    ));
    hello.extend_from_slice(&command(
        &message::command_body(
            "publish",
            0.0,
            &[Amf0Value::Null, Amf0Value::String("wrong-key".into())],
        ),
        1,
    ));
    s.write_all(&hello).await.unwrap();
    let mut seen = Vec::new();
    while !seen.windows(7).any(|w| w == b"BadName") {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the refusal");
        seen.extend_from_slice(&buf[..n]);
    }
    for name in ["FCUnpublish", "deleteStream"] {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let body = message::command_body(name, 3.0, &[Amf0Value::Null]);
        s.write_all(&command(&body, 1))
            .await
            .unwrap_or_else(|e| panic!("{name} after the refusal: {e}"));
    }
    assert_closed_by_server(s, "refused encoder").await;
}
