//! The RTMP server's threads: one single-threaded runtime per core, all
//! accepting on one socket.

use std::net::SocketAddr;
use std::sync::Arc;

use rtmp::Server;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::http;
use crate::running::StartError;

/// Serves RTMP on `count` threads, each with its own single-threaded runtime
/// accepting on the same socket (the kernel spreads connections, as across nginx
/// workers). A connection's reads, writes and pacing timers then stay on one
/// thread: measured, this costs far less CPU per player than one work-stealing
/// runtime, whose workers keep waking each other.
pub(crate) fn spawn_rtmp_threads(
    server: &Arc<Server>,
    listener: TcpListener,
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
    let mut threads = Vec::with_capacity(count);
    for i in 0..count.max(1) {
        let listener = listener.try_clone().map_err(bind_error)?;
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
                    match TcpListener::from_std(listener) {
                        Ok(listener) => server.run(listener, cancel).await,
                        Err(e) => warn!(error = %e, "cannot serve rtmp on this thread"),
                    }
                });
            })
            .map_err(bind_error)?;
        threads.push(thread);
    }
    Ok(threads)
}
