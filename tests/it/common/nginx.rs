//! nginx with the RTMP module, the peer several tests publish to or pull from.

use std::time::Duration;

use super::free_port;

/// nginx with the RTMP module on a loopback port, for as long as it lives.
pub struct Nginx {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// nginx-rtmp behind nginx's own TLS terminator (the stream module):
    /// RTMPS on the returned port, plain RTMP on [`Nginx::port`].
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> (Self, u16) {
        let tls_port = free_port();
        let stream = format!(
            "stream {{ server {{ listen 127.0.0.1:{tls_port} ssl; ssl_certificate {}; \
             ssl_certificate_key {}; proxy_pass 127.0.0.1:PORT; }} }}\n",
            cert.display(),
            key.display()
        );
        let nginx = Self::start_with(Some(stream));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (nginx, tls_port)
    }

    fn start_with(stream: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let conf = dir.path().join("nginx.conf");
        let (stream_module, stream) = match stream {
            Some(s) => (
                "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n",
                s.replace("PORT", &port.to_string()),
            ),
            None => ("", String::new()),
        };
        std::fs::write(
            &conf,
            format!(
                "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n{stream_module}\
                 worker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log warn;\n\
                 events {{ worker_connections 256; }}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n{stream}",
                dir = dir.path().display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .spawn()
            .expect("nginx (apt-get install nginx-light libnginx-mod-rtmp libnginx-mod-stream; scripts/setup.sh does)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so the master takes its worker down with it.
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
