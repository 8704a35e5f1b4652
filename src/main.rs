//! `ferry`: the live media server's command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry::config::{Config, EdgeOverrides, HttpOverrides, Overrides, RtmpOverrides};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Live media server: RTMP origin, HLS, edges"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process on embedded defaults.
    Serve(ServeArgs),
    /// Print the effective configuration (file + environment + flags) as TOML.
    Config(ServeArgs),
    /// Run the control plane alone (API, web UI, state); origins point at it
    /// with `[control] url`, workers with `ferry worker --control`.
    Control(ServeArgs),
    /// Run tasks (restreams) for a control plane, reading streams from an origin.
    Worker(WorkerArgs),
    /// Run an HLS caching edge in front of origins: viewers fetch
    /// /hls/STREAM/... from it; each object comes from an origin once.
    Edge(EdgeArgs),
    /// Run a director: viewers ask it for playlists and are spread over the
    /// live edges that the control plane knows.
    Director(DirectorArgs),
}

#[derive(clap::Args)]
struct DirectorArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// The control API, e.g. http://10.0.0.2:8080.
    #[arg(long, env = "FERRY_CONTROL_URL")]
    control: Option<String>,
    /// A token for the control API (a node token is enough).
    #[arg(long, env = "FERRY_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args)]
struct EdgeArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Origins in order of preference, comma-separated: http://HOST:PORT of a
    /// Ferry origin (or any server holding /hls/...), or s3://BUCKET. With
    /// --rtmp-listen, RTMP players are served too, each stream pulled from
    /// the Ferry origins' relays.
    #[arg(long, value_delimiter = ',')]
    origins: Vec<String>,
    /// The URL viewers reach this edge at (reported to the control plane).
    #[arg(long)]
    public_url: Option<String>,
}

/// Which role `run_server` starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Serve,
    Control,
    Edge,
    Director,
}

#[derive(clap::Args)]
struct WorkerArgs {
    /// The control API, e.g. http://10.0.0.2:8080.
    #[arg(long, env = "FERRY_CONTROL_URL")]
    control: String,
    /// An operator token for the control API.
    #[arg(long, env = "FERRY_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// The origin's RTMP address and app, e.g. rtmp://10.0.0.2:1935/live.
    #[arg(long, env = "FERRY_ORIGIN_RTMP")]
    origin: String,
    /// This worker's id (letters, digits, '_', '-'); by default a stable id
    /// kept in --data-dir.
    #[arg(long)]
    id: Option<String>,
    /// Where the worker keeps its node id.
    #[arg(long, default_value = "ferry-worker-data")]
    data_dir: PathBuf,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML); see ferry.example.toml.
    #[arg(long, env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for Ferry's state.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// RTMP listen address, e.g. 0.0.0.0:1935.
    #[arg(long)]
    rtmp_listen: Option<std::net::SocketAddr>,
    /// HTTP listen address, e.g. 0.0.0.0:8080.
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
}

impl ServeArgs {
    fn load(&self) -> anyhow::Result<Config> {
        self.load_with(EdgeOverrides::default())
    }

    fn load_with(&self, edge: EdgeOverrides) -> anyhow::Result<Config> {
        let overrides = Overrides {
            edge,
            data_dir: self.data_dir.clone(),
            rtmp: RtmpOverrides {
                listen: self.rtmp_listen,
            },
            http: HttpOverrides {
                listen: self.http_listen,
            },
        };
        Ok(Config::load(self.config.as_deref(), &overrides)?)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(args) => {
            let mut config = args.load()?;
            // Secrets are shown masked; stream keys are the operator's own file.
            for secret in [
                &mut config.admin_token,
                &mut config.store.s3_secret_access_key,
            ] {
                if !secret.is_empty() {
                    *secret = media_core::auth::mask_key(secret);
                }
            }
            print!(
                "{}",
                toml::to_string(&config).context("rendering the configuration")?
            );
            Ok(())
        }
        Command::Worker(args) => worker(args),
        Command::Serve(args) => run_server(&args.load()?, Role::Serve),
        Command::Control(args) => run_server(&args.load()?, Role::Control),
        Command::Edge(args) => {
            let edge = EdgeOverrides {
                origins: (!args.origins.is_empty()).then_some(args.origins),
                public_url: args.public_url,
                rtmp: args.serve.rtmp_listen.is_some().then_some(true),
            };
            run_server(&args.serve.load_with(edge)?, Role::Edge)
        }
        Command::Director(args) => {
            let mut config = args.serve.load()?;
            if let Some(url) = args.control {
                config.control.url = url;
            }
            if let Some(token) = args.token {
                config.admin_token = token;
            }
            run_server(&config, Role::Director)
        }
    }
}

/// `ferry serve` (every role, or an origin with `[control] url`), `ferry
/// control` or `ferry edge`; until ctrl-c.
fn run_server(config: &Config, role: Role) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .context("invalid log filter")?;
    tracing_subscriber::fmt().with_env_filter(filter).init();
    if role == Role::Edge {
        ferry::allocator::return_large_blocks();
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        runtime.worker_threads(config.worker_threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let running = match role {
            Role::Serve => ferry::serve::start(config).await?,
            Role::Control => ferry::serve::start_control(config).await?,
            Role::Edge => ferry::edge_role::start_edge(config).await?,
            Role::Director => ferry::director_role::start_director(config).await?,
        };
        shutdown_signal().await?;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(())
    })
}

/// Ctrl-c or SIGTERM (what service managers and Kubernetes send).
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let rest = args
        .origin
        .strip_prefix("rtmp://")
        .context("--origin must be rtmp://HOST:PORT/APP")?;
    let (hostport, app) = rest
        .split_once('/')
        .context("--origin must be rtmp://HOST:PORT/APP")?;
    let id = match args.id {
        Some(id) => id,
        None => ferry::node::stable_id(&args.data_dir)
            .with_context(|| format!("node id in {}", args.data_dir.display()))?,
    };
    let leases = std::sync::Arc::new(
        control_client::ControlClient::new(&args.control, &args.token)
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let addr = tokio::net::lookup_host(hostport)
            .await
            .with_context(|| format!("resolving {hostport}"))?
            .next()
            .with_context(|| format!("{hostport} has no address"))?;
        let cancel = tokio_util::sync::CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        tokio::spawn(ferry::node::heartbeat(
            ferry::node::NodeInfo {
                id: id.clone(),
                role: "worker",
                address: "-".into(),
                edge: None,
                relay: None,
                viewers: None,
                audience: None,
            },
            ferry::node::ControlPlane::Remote(leases.clone()),
            None,
            cancel.clone(),
        ));
        worker::run(
            id,
            leases,
            worker::Media::Origin {
                addr,
                app: app.to_owned(),
            },
            worker::TaskTypes::builtin(),
            cancel,
        )
        .await;
        Ok(())
    })
}
