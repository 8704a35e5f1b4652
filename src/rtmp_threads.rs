//! The RTMP server's threads: one single-threaded runtime per core, all
//! accepting on one socket (and on the RTMPS socket, when there is one).

use std::net::SocketAddr;
use std::sync::Arc;

use rtmp::Server;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::http;
use crate::rtmps::RtmpsListener;
use crate::running::StartError;

/// Serves RTMP on `count` threads, each with its own single-threaded runtime
/// accepting on the same socket (the kernel spreads connections, as across nginx
/// workers). A connection's reads, writes and pacing timers then stay on one
/// thread: measured, this costs far less CPU per player than one work-stealing
/// runtime, whose workers keep waking each other.
pub(crate) fn spawn_rtmp_threads(
    server: &Arc<Server>,
    listener: TcpListener,
    rtmps: Option<RtmpsListener>,
    count: usize,
    cancel: &CancellationToken,
    runtimes: &http::Runtimes,
) -> Result<Vec<std::thread::JoinHandle<()>>, StartError> {
    let addr = listener.local_addr().ok();
    let bind_error = |source| StartError::Bind {
        what: "rtmp",
        addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        source,
    };
    let listener = listener.into_std().map_err(bind_error)?;
    let rtmps = match rtmps {
        Some(r) => Some((
            r.listener.into_std().map_err(bind_error)?,
            r.acceptor,
            r.rate,
        )),
        None => None,
    };
    let mut threads = Vec::with_capacity(count);
    for i in 0..count.max(1) {
        let listener = listener.try_clone().map_err(bind_error)?;
        let rtmps = match &rtmps {
            Some((l, acceptor, rate)) => Some((
                l.try_clone().map_err(bind_error)?,
                acceptor.clone(),
                rate.clone(),
            )),
            None => None,
        };
        let server = server.clone();
        let cancel = cancel.clone();
        let runtimes = runtimes.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rtmp-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(error = %e, "cannot start an rtmp thread");
                        return;
                    }
                };
                runtimes.add(runtime.handle().clone());
                runtime.block_on(async move {
                    let tls = async {
                        let Some((l, acceptor, rate)) = rtmps else {
                            return;
                        };
                        match TcpListener::from_std(l) {
                            Ok(l) => {
                                server
                                    .clone()
                                    .run_tls(l, acceptor, rate, cancel.clone())
                                    .await
                            }
                            Err(e) => warn!(error = %e, "cannot serve rtmps on this thread"),
                        }
                    };
                    let plain = async {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => server.clone().run(listener, cancel.clone()).await,
                            Err(e) => warn!(error = %e, "cannot serve rtmp on this thread"),
                        }
                    };
                    tokio::join!(plain, tls);
                });
            })
            .map_err(bind_error)?;
        threads.push(thread);
    }
    Ok(threads)
}
