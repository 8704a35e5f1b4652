//! RTMPS both ways: ffmpeg publishes over `rtmps://` to Ferry's TLS listener
//! (a self-signed certificate made here) and the stream plays; a restream
//! task pushes to an RTMPS receiver whose certificate the sender trusts
//! (`SSL_CERT_FILE`) and to nginx-rtmp behind nginx's TLS terminator, and
//! one to a receiver it does not trust fails with a clear error; a plain
//! RTMP client on the TLS port is closed without harm.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::start_node;
use common::nginx::Nginx;
use common::*;

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files in `dir`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

async fn tls_server(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut ferry::config::Config),
) -> (TestServer, SocketAddr) {
    let (cert, key) = self_signed(dir, name);
    let s = start_with(|c| {
        c.rtmp.tls_listen = "127.0.0.1:0".into();
        c.rtmp.tls_cert = cert;
        c.rtmp.tls_key = key;
        c.hls.enabled = false;
        edit(c);
    })
    .await;
    let addr = s.running.rtmps_addr.expect("rtmps listening");
    (s, addr)
}

/// ffmpeg publishing over RTMPS to `tls`, once the stream is live on `s`.
async fn publish_over_rtmps(s: &TestServer, tls: SocketAddr) -> tokio::process::Child {
    let publisher = publish_background(&format!("rtmps://127.0.0.1:{}/live/{KEY}", tls.port()), 5);
    wait_for(
        "the stream live over rtmps",
        Duration::from_secs(15),
        || async { s.running.hub.is_live(STREAM) },
    )
    .await;
    publisher
}

fn codecs(url: &str) -> String {
    probe_streams(url, "codec_name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_over_rtmps_and_the_stream_plays() {
    let dir = tempfile::tempdir().unwrap();
    let (s, tls) = tls_server(dir.path(), "ingest", |_| {}).await;
    // A wrong key gets the same clear refusal as over plain RTMP.
    let (ok, err) = publish_file(
        &format!("rtmps://127.0.0.1:{}/live/not-a-key", tls.port()),
        &sample("h264-aac-240p25.flv"),
    )
    .await;
    assert!(!ok && err.contains("unknown stream key"), "{err}");
    let _publisher = publish_over_rtmps(&s, tls).await;
    let info = s.running.hub.info(STREAM).unwrap();
    assert!(info.source.is_some());
    let got = codecs(&s.rtmp_url(STREAM));
    assert!(got.contains("h264") && got.contains("aac"), "{got}");
    // A plain RTMP client on the TLS port: closed, nothing else disturbed.
    let plain = tokio::net::TcpStream::connect(tls).await.unwrap();
    assert_closed_by_server_after_c0c1(plain).await;
    assert!(s.running.hub.is_live(STREAM));
    // Players may use RTMPS too (ffprobe with its own TLS, no verification).
    let got = codecs(&format!("rtmps://127.0.0.1:{}/live/{STREAM}", tls.port()));
    assert!(got.contains("h264"), "{got}");
}

/// Sends an RTMP C0+C1 where a TLS ClientHello belongs, and expects the
/// server to close the connection.
async fn assert_closed_by_server_after_c0c1(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    let _ = s.write_all(&c0c1).await;
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the TLS listener did not close a plain RTMP client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restream_over_rtmps_verifies_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = |c: &mut ferry::config::Config| {
        c.streams = vec![ferry::config::StreamConfig {
            name: "mirror".into(),
            key: "mirrorkey".into(),
            settings: Default::default(),
        }];
    };
    let (trusted, trusted_tls) = tls_server(dir.path(), "trusted", mirror).await;
    let (untrusted, untrusted_tls) = tls_server(dir.path(), "untrusted", mirror).await;
    // nginx-rtmp behind nginx's TLS terminator, with a certificate of its own.
    let (nginx_cert, nginx_key) = self_signed(dir.path(), "nginx");
    let (nginx, nginx_tls) = Nginx::start_tls(&nginx_cert, &nginx_key);
    // The sender trusts the first receiver's and nginx's certificates only.
    let roots = dir.path().join("roots.pem");
    let mut bundle = std::fs::read(dir.path().join("trusted.crt")).unwrap();
    bundle.extend(std::fs::read(&nginx_cert).unwrap());
    std::fs::write(&roots, bundle).unwrap();
    let sender = start_node(&[("SSL_CERT_FILE", roots.display().to_string())], |data| {
        let config = data.join("ferry.toml");
        std::fs::write(
            &config,
            format!("[hls]\nenabled = false\n[[streams]]\nname = \"{STREAM}\"\nkey = \"{KEY}\"\n"),
        )
        .unwrap();
        vec![
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ]
    })
    .await;
    let good = add_restream_task(
        sender.http,
        STREAM,
        &format!("rtmps://127.0.0.1:{}/live/mirrorkey", trusted_tls.port()),
    )
    .await;
    let bad = add_restream_task(
        sender.http,
        STREAM,
        &format!("rtmps://127.0.0.1:{}/live/mirrorkey", untrusted_tls.port()),
    )
    .await;
    let to_nginx = add_restream_task(
        sender.http,
        STREAM,
        &format!("rtmps://127.0.0.1:{nginx_tls}/live/fromferry"),
    )
    .await;
    let _publisher = publish_background(&format!("rtmp://{}/live/{KEY}", sender.rtmp), 10);
    wait_for(
        "the restream to arrive over rtmps",
        Duration::from_secs(30),
        || async { trusted.running.hub.is_live("mirror") },
    )
    .await;
    let got = codecs(&trusted.rtmp_url("mirror"));
    assert!(got.contains("h264") && got.contains("aac"), "{got}");
    // nginx-rtmp got it through its TLS terminator.
    let got = codecs(&format!("rtmp://127.0.0.1:{}/live/fromferry", nginx.port));
    assert!(got.contains("h264") && got.contains("aac"), "nginx: {got}");
    // The untrusted receiver never gets the stream, and the task says why.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let error = loop {
        let (_, tasks) = api(sender.http, "GET", "/tasks", Some(ADMIN), None).await;
        let row = tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"].as_i64() == Some(bad))
            .cloned()
            .unwrap();
        let error = row["last_error"].as_str().unwrap_or_default().to_owned();
        if !error.is_empty() {
            break error;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the task reported no error: {row}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("untrusted receiver: {error}");
    assert!(
        error.contains("tls") && error.to_lowercase().contains("certificate"),
        "{error}"
    );
    assert!(!untrusted.running.hub.is_live("mirror"));
    // The masked key is all the API shows of either URL.
    let (_, tasks) = api(sender.http, "GET", "/tasks", Some(ADMIN), None).await;
    assert!(!tasks.to_string().contains("mirrorkey"), "{tasks}");
    let good_row = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"].as_i64() == Some(good))
        .unwrap();
    assert!(good_row["last_error"].is_null(), "{good_row}");
    let nginx_row = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"].as_i64() == Some(to_nginx))
        .unwrap();
    assert!(nginx_row["last_error"].is_null(), "{nginx_row}");
}

/// SHA-256 fingerprint of the certificate a TLS listener serves now.
fn served_fingerprint(addr: SocketAddr) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (s, tls) = tls_server(dir.path(), "renewed", |_| {}).await;
    let before = served_fingerprint(tls);
    assert!(before.contains("Fingerprint"), "{before:?}");
    // Renew: new files in place (as certbot's deploy hook would copy them).
    let (cert, key) = self_signed(dir.path(), "next");
    std::fs::copy(&cert, dir.path().join("renewed.crt")).unwrap();
    // A key that does not parse is not taken: the old pair stays in use.
    std::fs::write(dir.path().join("renewed.key"), "not a key").unwrap();
    tokio::time::sleep(rtmp::tls::RELOAD_CHECK + Duration::from_secs(1)).await;
    assert_eq!(
        served_fingerprint(tls),
        before,
        "a broken pair replaced the old one"
    );
    std::fs::copy(&key, dir.path().join("renewed.key")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = served_fingerprint(tls);
        if now != before && now.contains("Fingerprint") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still serving the old certificate"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(s.running.rtmps_addr.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tls_handshakes_is_cut_at_the_rate_and_ingest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (s, tls) = tls_server(dir.path(), "rate", |c| {
        c.rtmp.tls_handshakes_per_second = 2.0
    })
    .await;
    // Forty connections at once, each starting a handshake: past the
    // burst (twice the rate), they are closed before theirs.
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(tokio::spawn(async move {
            let _ = tokio::task::spawn_blocking(move || served_fingerprint(tls)).await;
        }));
    }
    for f in flood {
        let _ = f.await;
    }
    let refused = s.metric("ferry_rtmp_tls_handshakes_refused_total").await;
    println!("40 handshakes at once at 2/s: {refused} refused");
    assert!(refused >= 30.0, "{refused}");
    // The rate refills: a real encoder gets in a moment later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _publisher = publish_over_rtmps(&s, tls).await;
}
