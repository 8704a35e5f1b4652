//! Ferry's configuration: one struct, filled from defaults, a TOML file, `FERRY_*`
//! environment variables and command-line flags (later ones win). Unknown keys
//! are errors, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::stream_settings::HlsContainer;
use crate::stream_settings::StreamSettings;

/// Everything `ferry serve` can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where Ferry keeps its state (generated keys, later the database and segments).
    pub data_dir: PathBuf,
    /// Log filter in `tracing` syntax, e.g. `info` or `info,rtmp=debug`.
    pub log: String,
    /// Threads serving network I/O; 0 means one per CPU core.
    pub worker_threads: usize,
    /// This node's id in the cluster (`FERRY_NODE_ID`); empty: one made
    /// once and kept in the data directory. Orchestrators set it to the pod
    /// name, which the Kubernetes autoscaler provider removes pods by.
    pub node_id: String,
    /// An operator token for the API and web UI (`FERRY_ADMIN_TOKEN`); with
    /// none, one is made on first start and printed once.
    pub admin_token: String,
    /// The RTMP ingest and playback server.
    pub rtmp: RtmpConfig,
    /// The HTTP server (metrics now; HLS and the API later).
    pub http: HttpConfig,
    /// HLS packaging of every live stream.
    pub hls: HlsConfig,
    /// Where segments and playlists are stored (the HLS origin).
    pub store: StoreConfig,
    /// The transcoding ladder (HLS renditions below the source).
    pub transcode: TranscodeConfig,
    /// The control plane.
    pub control: ControlConfig,
    /// The HLS caching edge (`ferry edge`).
    pub edge: edge_cache::EdgeConfig,
    /// The director (`ferry director`).
    pub director: director::DirectorConfig,
    /// Node-to-node media: origins' relay listener, edges' pulls.
    pub relay: relay::RelayConfig,
    /// The edge farm's autoscaler (run by the control plane).
    pub autoscale: autoscale::AutoscaleConfig,
    /// Streams that may be published, each with its secret key.
    pub streams: Vec<StreamConfig>,
}

/// Which backend holds the HLS origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Files under `DATA_DIR/hls` (the embedded default).
    Local,
    /// An S3-compatible bucket.
    S3,
}

/// The HLS origin store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `local` or `s3`.
    pub kind: StoreKind,
    /// S3 endpoint, e.g. `http://127.0.0.1:3900`; empty for AWS.
    pub s3_endpoint: String,
    /// S3 bucket.
    pub s3_bucket: String,
    /// S3 region (must match the server's, e.g. Garage's `s3_region`).
    pub s3_region: String,
    /// S3 access key id.
    pub s3_access_key_id: String,
    /// S3 secret key; prefer `FERRY_STORE__S3_SECRET_ACCESS_KEY` to the file.
    pub s3_secret_access_key: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Local,
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".into(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
        }
    }
}

/// HLS packaging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Package every live stream to `http://HOST:8080/hls/STREAM/master.m3u8`.
    pub enabled: bool,
    /// Segments are cut at the first keyframe after this many seconds.
    pub segment_seconds: f64,
    /// Segments listed in a media playlist.
    pub window: usize,
    /// Segments kept for upload while the store is down; older ones are dropped
    /// (and the gap marked) past this.
    pub upload_queue_segments: usize,
    /// Segment format for streams that do not choose: `ts` or `fmp4`.
    pub container: HlsContainer,
    /// Cut and name segments from the source's timestamps alone, so redundant
    /// origins fed by one encoder (`ffmpeg -f tee`, an encoder with two
    /// outputs) publish the same segment names, numbers and media, however
    /// late one joined; an edge may then take any segment from either. Needs
    /// a keyframe at least once per segment duration. Off: names carry a
    /// per-session id instead (never reused across restarts).
    pub aligned_segments: bool,
    /// Low-Latency HLS for streams that do not choose (`low_latency` in a
    /// `[[streams]]` entry or the stream's settings): partial segments,
    /// blocking playlist reloads and delta updates, served from the origin's
    /// memory (segments still go to the store). Implies fMP4 segments.
    pub low_latency: bool,
    /// The LL-HLS part target, seconds (clamped to 0.1..=2, and to half a
    /// segment).
    pub part_seconds: f64,
    /// LL-HLS requests (blocking reloads, hinted parts) held at once; more
    /// get 503 with `Retry-After`.
    pub max_held_requests: usize,
    /// LL-HLS requests held at once for one client address.
    pub max_held_per_address: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            segment_seconds: 2.0,
            window: 6,
            upload_queue_segments: 30,
            container: HlsContainer::Ts,
            aligned_segments: false,
            low_latency: false,
            part_seconds: 0.25,
            max_held_requests: 8192,
            max_held_per_address: 256,
        }
    }
}

/// Transcoding: which streams get a ladder and what it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeConfig {
    /// Transcode every stream that does not say otherwise (`transcode` in its
    /// `[[streams]]` entry). Off by default: a 1080p ladder needs several cores.
    pub enabled: bool,
    /// The ladder: rungs and x264 settings.
    pub ladder: transcode::LadderConfig,
}

/// Segment durations Ferry accepts (seconds); `segment_seconds` is clamped to them.
pub const SEGMENT_SECONDS: std::ops::RangeInclusive<f64> = 0.5..=60.0;

impl Config {
    /// The HLS segment duration, within [`SEGMENT_SECONDS`].
    pub fn segment_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(
            self.hls
                .segment_seconds
                .clamp(*SEGMENT_SECONDS.start(), *SEGMENT_SECONDS.end()),
        )
    }

    /// What stream `name`'s `[[streams]]` entry overrides (nothing when it has none).
    fn configured_settings(&self, name: &str) -> StreamSettings {
        self.streams
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.settings.clone())
            .unwrap_or_default()
    }

    /// The ladder for stream `name`, with `settings` (from the API) over its
    /// `[[streams]]` entry over `[transcode]`.
    pub fn ladder_with(
        &self,
        name: &str,
        settings: &StreamSettings,
    ) -> Option<transcode::LadderConfig> {
        let s = settings.over(self.configured_settings(name));
        if !s.transcode.unwrap_or(self.transcode.enabled) {
            return None;
        }
        let mut ladder = self.transcode.ladder.clone();
        if let Some(rungs) = s.rungs {
            ladder.rungs = rungs;
        }
        Some(ladder)
    }

    /// The HLS segment format of stream `name`, with `settings` over its
    /// `[[streams]]` entry over `[hls]`.
    pub fn container_with(&self, name: &str, settings: &StreamSettings) -> hls::Container {
        let s = settings.over(self.configured_settings(name));
        s.hls_container.unwrap_or(self.hls.container).into()
    }

    /// Stream `name`'s LL-HLS part target, `None` when LL-HLS is off for it:
    /// `settings` (from the API) over its `[[streams]]` entry over `[hls]`.
    pub fn part_target_with(
        &self,
        name: &str,
        settings: &StreamSettings,
    ) -> Option<std::time::Duration> {
        let s = settings.over(self.configured_settings(name));
        let on = s.low_latency.unwrap_or(self.hls.low_latency);
        on.then(|| {
            let most = (self.segment_duration().as_secs_f64() / 2.0).max(0.1);
            std::time::Duration::from_secs_f64(self.hls.part_seconds.clamp(0.1, 2.0).min(most))
        })
    }

    /// Checks what the types cannot: names that become paths and hub names.
    pub fn validate(&self) -> Result<(), String> {
        if !self.admin_token.is_empty() {
            control::secret::check_token(&self.admin_token)?;
        }
        if self.autoscale.enabled {
            self.autoscale.validate()?;
        }
        let url = &self.http.public_url;
        let scheme = url.starts_with("http://") || url.starts_with("https://");
        if !url.is_empty() && (!scheme || url.contains(['?', '#', ' ', '"'])) {
            return Err(format!(
                "[http] public_url {url:?}: an http:// or https:// URL without query or fragment"
            ));
        }
        for r in &self.transcode.ladder.rungs {
            transcode::check_rung(r)?;
        }
        for s in &self.streams {
            control::secret::check_key(&s.key).map_err(|e| format!("stream {:?}: {e}", s.name))?;
            if !media_core::path::valid_name(&s.name) {
                return Err(format!(
                    "stream name {:?}: {}",
                    s.name,
                    media_core::path::NAME_RULE
                ));
            }
            s.settings
                .check()
                .map_err(|e| format!("stream {:?}: {e}", s.name))?;
        }
        Ok(())
    }
}

/// The control plane in `ferry serve`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Run tasks (restreams) in this process. Turn off when separate
    /// `ferry worker` processes run them.
    pub local_worker: bool,
    /// Another process's control plane (`ferry control`), e.g.
    /// `http://10.0.0.2:8080`: this process is then an origin only, asking it
    /// to authorise publishers (with `admin_token`) and reporting its live
    /// streams to it. Empty: the control plane runs here. Several URLs,
    /// comma-separated (control processes sharing one PostgreSQL): nodes
    /// use the first that answers and move on when it stops answering.
    pub url: String,
    /// The control plane's state in PostgreSQL
    /// (`postgres://user:password@host:5432/ferry`), shared by every
    /// `ferry control` process given the same URL. Empty: SQLite, the
    /// file `control.db` in the data directory.
    pub database_url: String,
    /// Nodes that sent no heartbeat for this many seconds are removed from
    /// the registry.
    pub node_prune_seconds: u64,
    /// An edge silent for this many milliseconds is dead: the director sends
    /// it no viewers.
    pub edge_dead_ms: u64,
    /// Seconds between two points of the streams' and nodes' history
    /// (`GET /api/v1/history/...`, the web UI's charts); an hour of points
    /// is kept as sampled, then one a minute for a day.
    pub history_seconds: f64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            local_worker: true,
            url: String::new(),
            database_url: String::new(),
            node_prune_seconds: control::nodes::DEFAULT_NODE_PRUNE.as_secs(),
            edge_dead_ms: control::nodes::DEFAULT_EDGE_DEAD.as_millis() as u64,
            history_seconds: 5.0,
        }
    }
}

/// The RTMP listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Application name in `rtmp://HOST/APP/KEY`.
    pub app: String,
    /// Connections held at once; more are closed on accept.
    pub max_connections: usize,
    /// Connections one client address may hold at once.
    pub max_connections_per_address: usize,
    /// Of `max_connections`, slots only publishers may take.
    pub reserved_publisher_slots: usize,
    /// Seconds a player may wait for a stream that is not live yet; 0 waits for ever.
    pub player_wait_seconds: u64,
    /// Players write at most every this many milliseconds (1..=1000): more
    /// means less CPU per player and that much more latency.
    pub write_interval_ms: u64,
    /// RTMPS: a second listener taking RTMP inside TLS (e.g.
    /// `0.0.0.0:443`), with the same auth and limits; empty: none.
    pub tls_listen: String,
    /// RTMPS: the certificate chain (PEM); re-read when it changes.
    pub tls_cert: PathBuf,
    /// RTMPS: the private key (PEM); re-read when it changes.
    pub tls_key: PathBuf,
    /// RTMPS handshakes started per second (bursts of twice that); more
    /// connections are closed before theirs. 0: no limit.
    pub tls_handshakes_per_second: f64,
}

/// The HTTP listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Connections held at once; more are closed on accept.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers.
    pub header_read_timeout_seconds: u64,
    /// Seconds a connection may move no byte before it is closed.
    pub idle_timeout_seconds: u64,
    /// A bearer token `GET /metrics` needs; empty: metrics are public.
    pub metrics_token: String,
    /// The URL other nodes reach this one at (e.g. `http://10.0.0.5:8080`),
    /// reported to the control plane: edges that follow control fetch from
    /// the origins' URLs. Empty: the bound address, unless it is a wildcard
    /// (`0.0.0.0`), which no other machine can use.
    pub public_url: String,
}

impl HttpConfig {
    /// What this node reports as its URL when bound to `bound`: the public
    /// URL, else the bound address if it is not a wildcard, else `-`.
    pub fn advertised_url(&self, bound: SocketAddr) -> String {
        if !self.public_url.is_empty() {
            self.public_url.trim_end_matches('/').to_owned()
        } else if bound.ip().is_unspecified() {
            "-".into()
        } else {
            format!("http://{bound}")
        }
    }
}

/// A publishable stream: encoders publish to `KEY`, players play `NAME`.
/// Its overrides are the very settings the API stores ([`StreamSettings`]),
/// so the file and the API cannot drift apart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The public name players use.
    pub name: String,
    /// The secret the encoder uses as its stream key.
    pub key: String,
    /// Overrides of `[hls]` and `[transcode]` for this stream.
    #[serde(flatten)]
    pub settings: StreamSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("ferry-data"),
            log: "info".into(),
            worker_threads: 0,
            node_id: String::new(),
            admin_token: String::new(),
            rtmp: RtmpConfig::default(),
            http: HttpConfig::default(),
            hls: HlsConfig::default(),
            store: StoreConfig::default(),
            transcode: TranscodeConfig::default(),
            control: ControlConfig::default(),
            edge: edge_cache::EdgeConfig::default(),
            director: director::DirectorConfig::default(),
            relay: relay::RelayConfig::default(),
            autoscale: autoscale::AutoscaleConfig::default(),
            streams: Vec::new(),
        }
    }
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            app: "live".into(),
            max_connections: rtmp::limits::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: rtmp::limits::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            reserved_publisher_slots: rtmp::limits::DEFAULT_RESERVED_PUBLISHER_SLOTS,
            player_wait_seconds: rtmp::limits::DEFAULT_PLAYER_WAIT.as_secs(),
            write_interval_ms: rtmp::limits::PLAYER_FLUSH_INTERVAL.as_millis() as u64,
            tls_listen: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_handshakes_per_second: 100.0,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_connections: 8192,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            metrics_token: String::new(),
            public_url: String::new(),
        }
    }
}

/// Command-line overrides; `None` leaves the value to the file and environment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--rtmp-listen` and friends live under `rtmp`.
    #[serde(skip_serializing_if = "RtmpOverrides::is_empty")]
    pub rtmp: RtmpOverrides,
    /// `--http-listen` lives under `http`.
    #[serde(skip_serializing_if = "HttpOverrides::is_empty")]
    pub http: HttpOverrides,
    /// `ferry edge --origins --public-url`.
    #[serde(skip_serializing_if = "EdgeOverrides::is_empty")]
    pub edge: EdgeOverrides,
}

/// Command-line overrides of the edge section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EdgeOverrides {
    /// `--origins`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<String>>,
    /// `--public-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// `--rtmp-listen` given to `ferry edge`: serve RTMP players.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp: Option<bool>,
}

impl EdgeOverrides {
    fn is_empty(&self) -> bool {
        self.origins.is_none() && self.public_url.is_none() && self.rtmp.is_none()
    }
}

/// Command-line overrides of the RTMP section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RtmpOverrides {
    /// `--rtmp-listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

impl RtmpOverrides {
    fn is_empty(&self) -> bool {
        self.listen.is_none()
    }
}

/// Command-line overrides of the HTTP section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpOverrides {
    /// `--http-listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

impl HttpOverrides {
    fn is_empty(&self) -> bool {
        self.listen.is_none()
    }
}

/// A configuration that cannot be used, with the key and source at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl Config {
    /// Merges defaults, `file` (if given), `FERRY_*` variables (nested keys with
    /// `__`, e.g. `FERRY_RTMP__LISTEN`) and `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(Env::prefixed("FERRY_").split("__").ignore(&["config"]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_sample_config_equals_the_defaults() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("ferry.example.toml");
        let parsed: Config =
            toml::from_str(&std::fs::read_to_string(sample).expect("sample exists"))
                .expect("sample parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Config>("[rtmp]\nlisten = \"0.0.0.0:1935\"\nlisen = 1\n");
        assert!(err.is_err_and(|e| e.to_string().contains("lisen")));
    }

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f.toml");
        std::fs::write(
            &file,
            "data_dir = \"/x\"\n[rtmp]\nlisten = \"127.0.0.1:1\"\n[[streams]]\nname = \"demo\"\nkey = \"k\"\n",
        )
        .expect("write");
        let overrides = Overrides {
            rtmp: RtmpOverrides {
                listen: Some("127.0.0.1:2".parse().expect("addr")),
            },
            ..Overrides::default()
        };
        let c = Config::load(Some(&file), &overrides).expect("valid");
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.rtmp.listen.port(), 2);
        assert_eq!(c.streams.len(), 1);
        assert_eq!(c.http, HttpConfig::default());
    }

    #[test]
    fn config_file_rungs_follow_the_api_s_rule() {
        let with = |rung: &str| {
            toml::from_str::<Config>(&format!(
                "[[streams]]\nname = \"s\"\nkey = \"a-long-secret\"\nrungs = [{rung}]\n"
            ))
            .expect("parses")
            .validate()
        };
        let good = with(r#"{ name = "360p", height = 360, video_kbps = 700 }"#);
        assert!(good.is_ok(), "{good:?}");
        for bad in [
            r#"{ name = "source", height = 360, video_kbps = 700 }"#,
            r#"{ name = "tiny", height = 8, video_kbps = 700 }"#,
            r#"{ name = "flood", height = 360, video_kbps = 500000 }"#,
        ] {
            let err = with(bad).expect_err(bad);
            assert!(err.contains("rung"), "{err}");
        }
    }

    #[test]
    fn a_stream_entry_carries_the_api_s_settings_and_nothing_else() {
        let c: Config = toml::from_str(
            "[[streams]]\nname = \"s\"\nkey = \"a-long-secret\"\nlow_latency = true\nhls_container = \"fmp4\"\n",
        )
        .expect("parses");
        assert_eq!(c.streams[0].settings.low_latency, Some(true));
        assert_eq!(
            c.container_with("s", &StreamSettings::default()),
            hls::Container::Fmp4
        );
        let api = StreamSettings {
            hls_container: Some(HlsContainer::Ts),
            ..StreamSettings::default()
        };
        assert_eq!(c.container_with("s", &api), hls::Container::Ts);
        assert!(c.part_target_with("s", &api).is_some());
        let err = toml::from_str::<Config>(
            "[[streams]]\nname = \"s\"\nkey = \"a-long-secret\"\nlow_latncy = true\n",
        )
        .expect_err("a misspelt setting is refused");
        assert!(err.to_string().contains("low_latncy"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(
            Config::load(
                Some(Path::new("/nonexistent/ferry.toml")),
                &Overrides::default()
            )
            .is_err()
        );
    }
}
