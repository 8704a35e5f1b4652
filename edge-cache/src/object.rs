//! What the edge keeps of an origin's answer, and how long it may serve it.

use std::time::{Duration, Instant};

use bytes::Bytes;

use hls::naming::ObjectKind;

use crate::cache_control::CacheControl;

/// The status line and headers of an origin's answer, as the edge passes them on.
#[derive(Clone, Debug)]
pub struct Head {
    /// 200 or 404 (other statuses are errors, never stored).
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`, passed on as the origin sent it.
    pub cache_control: Option<String>,
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
    /// `Access-Control-Allow-Origin`.
    pub allow_origin: Option<String>,
    /// `Content-Length`, when the origin announced it.
    pub content_length: Option<u64>,
    /// The origin's `Age`, added to the time the edge holds the object.
    pub age: Duration,
}

/// How long an object may be served, counted from when it was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// Served as a hit until then.
    pub fresh_for: Duration,
    /// After that, served stale while one refresh runs, until then
    /// (stale-while-revalidate; zero for everything but playlists).
    pub revalidate_for: Duration,
    /// When the origin cannot be reached, served stale until then (then 504).
    pub stale_if_error_for: Duration,
    /// Whether it may be stored at all.
    pub store: bool,
}

/// The defaults and bounds of freshness, from the edge's configuration.
#[derive(Clone, Copy, Debug)]
pub struct FreshnessPolicy {
    /// How long a 404 is kept (a live segment that does not exist yet must
    /// appear as soon as it does); zero keeps none.
    pub not_found: Duration,
    /// Segments without a `max-age`.
    pub segment: Duration,
    /// Playlists without a target duration and without a `max-age`.
    pub playlist: Duration,
    /// A playlist is served stale while the origin is unreachable for at
    /// most this many target durations.
    pub playlist_stale_targets: f64,
    /// Other objects without a `max-age`.
    pub other: Duration,
}

impl Default for FreshnessPolicy {
    fn default() -> Self {
        Self {
            not_found: Duration::from_secs(1),
            segment: Duration::from_secs(86_400),
            playlist: Duration::from_secs(1),
            playlist_stale_targets: 3.0,
            other: Duration::from_secs(10),
        }
    }
}

impl FreshnessPolicy {
    /// How long the answer `head` (with `body` when complete) for an object
    /// of `kind` stays usable.
    pub fn freshness(&self, kind: ObjectKind, head: &Head, body: &[u8]) -> Freshness {
        let cc = head
            .cache_control
            .as_deref()
            .map(CacheControl::parse)
            .unwrap_or_default();
        if head.status == 404 {
            return Freshness {
                fresh_for: self.not_found.min(cc.max_age.unwrap_or(self.not_found)),
                revalidate_for: Duration::ZERO,
                stale_if_error_for: Duration::ZERO,
                store: !cc.no_store && !self.not_found.is_zero(),
            };
        }
        let target = (kind == ObjectKind::Playlist)
            .then(|| target_duration(body))
            .flatten();
        let default = match kind {
            ObjectKind::Playlist => target.map_or(self.playlist, |t| t / 2),
            k if k.is_segment() => self.segment,
            _ => self.other,
        };
        let fresh_for = if cc.no_cache {
            Duration::ZERO
        } else {
            cc.max_age.unwrap_or(default).saturating_sub(head.age)
        };
        let (revalidate_for, stale_if_error_for) = match kind {
            ObjectKind::Playlist => {
                let target = target.unwrap_or(self.playlist * 2);
                // `no-cache` (an LL-HLS origin's live playlist, which changes
                // with every part): never served stale while a refresh runs,
                // or a player would start from a playlist a segment old and
                // stay that far behind; concurrent requests still share one
                // refresh.
                let revalidate = if cc.no_cache { Duration::ZERO } else { target };
                (
                    fresh_for + revalidate,
                    fresh_for + target.mul_f64(self.playlist_stale_targets.max(0.0)),
                )
            }
            _ => (fresh_for, fresh_for),
        };
        Freshness {
            fresh_for,
            revalidate_for,
            stale_if_error_for,
            store: !cc.no_store,
        }
    }
}

/// `#EXT-X-TARGETDURATION` of a media playlist (none for a multivariant one).
pub fn target_duration(playlist: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(playlist.get(..playlist.len().min(4096))?).ok()?;
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("#EXT-X-TARGETDURATION:"))?;
    let seconds: u64 = value.trim().parse().ok()?;
    (1..=3600)
        .contains(&seconds)
        .then(|| Duration::from_secs(seconds))
}

/// A complete answer in the cache.
#[derive(Clone, Debug)]
pub struct Object {
    /// Status and headers.
    pub head: Head,
    /// The body, one contiguous buffer shared by every response.
    pub body: Bytes,
    /// The `ETag` sent: the origin's, or one made from length and content.
    pub etag: String,
    /// When it was received.
    pub received: Instant,
    /// How long it may be served.
    pub freshness: Freshness,
}

/// Where an object stands at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staleness {
    /// Serve it.
    Fresh,
    /// Serve it and refresh it in the background.
    Revalidate,
    /// Refresh it first; serve it only if the origin cannot be reached.
    StaleIfError,
    /// Unusable.
    Expired,
}

impl Object {
    /// Where this object stands now.
    pub fn staleness(&self, now: Instant) -> Staleness {
        let held = now.saturating_duration_since(self.received);
        let f = &self.freshness;
        if held < f.fresh_for {
            Staleness::Fresh
        } else if held < f.revalidate_for {
            Staleness::Revalidate
        } else if held < f.stale_if_error_for {
            Staleness::StaleIfError
        } else {
            Staleness::Expired
        }
    }

    /// The `Age` to send: the origin's plus the time held here.
    pub fn age(&self, now: Instant) -> Duration {
        self.head.age + now.saturating_duration_since(self.received)
    }

    /// Seconds of freshness left (negative once stale), for `Cache-Status: ttl`.
    pub fn ttl_seconds(&self, now: Instant) -> i64 {
        let held = now.saturating_duration_since(self.received).as_secs_f64();
        (self.freshness.fresh_for.as_secs_f64() - held).floor() as i64
    }
}

/// A strong validator made from the body when the origin sent none.
pub fn make_etag(body: &[u8]) -> String {
    // FNV-1a over the bytes: cheap, stable across processes and edges (so a
    // client moving between edges keeps its validator).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{:x}-{hash:016x}\"", body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, cc: Option<&str>) -> Head {
        Head {
            status,
            content_type: None,
            cache_control: cc.map(str::to_owned),
            etag: None,
            last_modified: None,
            allow_origin: None,
            content_length: None,
            age: Duration::ZERO,
        }
    }

    #[test]
    fn origin_max_age_wins_and_age_counts() {
        let p = FreshnessPolicy::default();
        let f = p.freshness(ObjectKind::Playlist, &head(200, Some("max-age=1")), b"");
        assert_eq!(f.fresh_for, Duration::from_secs(1));
        assert_eq!(f.revalidate_for, Duration::from_secs(3));
        assert_eq!(f.stale_if_error_for, Duration::from_secs(7));
        let mut h = head(200, Some("max-age=10"));
        h.age = Duration::from_secs(4);
        assert_eq!(
            p.freshness(ObjectKind::Mp4Segment, &h, b"").fresh_for,
            Duration::from_secs(6)
        );
        assert!(
            !p.freshness(ObjectKind::Mp4Segment, &head(200, Some("private")), b"")
                .store
        );
    }

    #[test]
    fn defaults_by_kind() {
        let p = FreshnessPolicy::default();
        let media = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\na.ts\n";
        let f = p.freshness(ObjectKind::Playlist, &head(200, None), media);
        assert_eq!(f.fresh_for, Duration::from_secs(2));
        assert_eq!(f.revalidate_for, Duration::from_secs(6));
        assert_eq!(f.stale_if_error_for, Duration::from_secs(14));
        let f = p.freshness(ObjectKind::Mp4Segment, &head(200, None), b"");
        assert_eq!(f.fresh_for, Duration::from_secs(86_400));
        assert_eq!(f.revalidate_for, f.fresh_for);
    }

    #[test]
    fn a_no_cache_playlist_is_never_served_stale_while_refreshing() {
        let p = FreshnessPolicy::default();
        let body = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n";
        let f = p.freshness(
            ObjectKind::Playlist,
            &head(200, Some("max-age=0, no-cache")),
            body,
        );
        assert_eq!(f.fresh_for, Duration::ZERO);
        assert_eq!(f.revalidate_for, Duration::ZERO);
        assert_eq!(f.stale_if_error_for, Duration::from_secs(6));
    }

    #[test]
    fn not_found_is_kept_at_most_the_policy() {
        let mut p = FreshnessPolicy::default();
        let f = p.freshness(ObjectKind::Mp4Segment, &head(404, Some("max-age=600")), b"");
        assert_eq!(f.fresh_for, Duration::from_secs(1));
        assert!(f.store);
        p.not_found = Duration::ZERO;
        assert!(
            !p.freshness(ObjectKind::Mp4Segment, &head(404, None), b"")
                .store
        );
    }

    #[test]
    fn staleness_over_time() {
        let p = FreshnessPolicy::default();
        let h = head(200, Some("max-age=1"));
        let now = Instant::now();
        let o = Object {
            freshness: p.freshness(ObjectKind::Playlist, &h, b"#EXT-X-TARGETDURATION:2\n"),
            head: h,
            body: Bytes::new(),
            etag: make_etag(b""),
            received: now,
        };
        assert_eq!(o.staleness(now), Staleness::Fresh);
        let at = |ms| now + Duration::from_millis(ms);
        assert_eq!(o.staleness(at(1500)), Staleness::Revalidate);
        assert_eq!(o.staleness(at(3500)), Staleness::StaleIfError);
        assert_eq!(o.staleness(at(7500)), Staleness::Expired);
        assert_eq!(o.ttl_seconds(at(2500)), -2);
    }

    #[test]
    fn kinds_and_targets() {
        assert_eq!(
            ObjectKind::of("demo/source/index.m3u8"),
            ObjectKind::Playlist
        );
        assert_eq!(
            ObjectKind::of("demo/source/ab-1.m4s"),
            ObjectKind::Mp4Segment
        );
        assert_eq!(ObjectKind::of("demo/x.json"), ObjectKind::Other);
        assert_eq!(target_duration(b"#EXT-X-TARGETDURATION:0\n"), None);
        assert_eq!(target_duration(b"#EXT-X-TARGETDURATION:x\n"), None);
        assert_ne!(make_etag(b"a"), make_etag(b"b"));
    }
}
