//! The director's two caches, so that a reload's cost does not grow with the
//! viewers: playlists read from edges (kept per edge: edges may differ for a
//! moment, one a part behind, and a viewer must get its own edge's copy),
//! and playlists rewritten for one edge (shared by every viewer placed
//! there, while the source and the edge set are the same). Pure: times are
//! passed in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A playlist read from an edge, with what every reload needs of it worked
/// out once (not per viewer request).
#[derive(Debug)]
pub struct Fetched {
    /// When it was read.
    pub at: Instant,
    /// The playlist as text.
    pub text: String,
    /// Its hash: the version the rewrite cache is keyed on.
    pub version: u64,
    /// Media sequence number of the first segment, and the segment count.
    pub span: (u64, u64),
}

/// Playlists read from edges: by edge URL, then path (with query).
#[derive(Debug, Default)]
pub struct Fetches(HashMap<String, HashMap<String, Arc<Fetched>>>);

impl Fetches {
    /// `path` as read from the edge at `edge`, if younger than `ttl` at `now`.
    pub fn fresh(
        &self,
        edge: &str,
        path: &str,
        ttl: Duration,
        now: Instant,
    ) -> Option<Arc<Fetched>> {
        self.0
            .get(edge)
            .and_then(|by_path| by_path.get(path))
            .filter(|f| now.saturating_duration_since(f.at) < ttl)
            .cloned()
    }

    /// Keeps `fetched` as `path` of the edge at `edge`.
    pub fn insert(&mut self, edge: &str, path: &str, fetched: Arc<Fetched>) {
        self.0
            .entry(edge.to_owned())
            .or_default()
            .insert(path.to_owned(), fetched);
    }

    /// Drops what is older than `max_age` at `now`.
    pub fn expire(&mut self, max_age: Duration, now: Instant) {
        self.0.retain(|_, by_path| {
            by_path.retain(|_, f| now.saturating_duration_since(f.at) < max_age);
            !by_path.is_empty()
        });
    }
}

/// A rewritten playlist: the source's hash, the edge-set version, the text.
type Rewritten = (u64, u64, Arc<str>);

/// Playlists rewritten for one edge, by (path, edge id).
#[derive(Debug, Default)]
pub struct Rewrites(HashMap<(String, String), Rewritten>);

impl Rewrites {
    /// The rewrite of `path` for `edge` from source `version` under edge set
    /// `set_version`, if there is one.
    pub fn get(&self, path: &str, edge: &str, version: u64, set_version: u64) -> Option<Arc<str>> {
        self.0
            .get(&(path.to_owned(), edge.to_owned()))
            .filter(|(v, s, _)| *v == version && *s == set_version)
            .map(|(_, _, b)| b.clone())
    }

    /// Keeps `body` as that rewrite.
    pub fn insert(
        &mut self,
        path: &str,
        edge: &str,
        version: u64,
        set_version: u64,
        body: Arc<str>,
    ) {
        self.0.insert(
            (path.to_owned(), edge.to_owned()),
            (version, set_version, body),
        );
    }

    /// Drops rewrites made under another edge set.
    pub fn keep_set(&mut self, set_version: u64) {
        self.0.retain(|_, (_, v, _)| *v == set_version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(at: Instant, text: &str) -> Arc<Fetched> {
        Arc::new(Fetched {
            at,
            text: text.into(),
            version: 1,
            span: (0, 0),
        })
    }

    #[test]
    fn a_fetch_is_fresh_for_its_ttl_and_only_for_its_edge() {
        let now = Instant::now();
        let ttl = Duration::from_millis(300);
        let mut f = Fetches::default();
        f.insert("http://a", "/hls/s/i.m3u8", fetched(now, "#a"));
        assert!(f.fresh("http://a", "/hls/s/i.m3u8", ttl, now).is_some());
        assert!(f.fresh("http://b", "/hls/s/i.m3u8", ttl, now).is_none());
        assert!(f.fresh("http://a", "/hls/s/j.m3u8", ttl, now).is_none());
        let later = now + Duration::from_millis(301);
        assert!(f.fresh("http://a", "/hls/s/i.m3u8", ttl, later).is_none());
        f.expire(Duration::from_secs(3), later);
        assert!(!f.0.is_empty(), "kept within the max age");
        f.expire(Duration::from_secs(3), now + Duration::from_secs(4));
        assert!(f.0.is_empty());
    }

    #[test]
    fn a_rewrite_serves_only_its_source_version_and_edge_set() {
        let mut r = Rewrites::default();
        r.insert("/p", "a", 7, 1, "body".into());
        assert_eq!(r.get("/p", "a", 7, 1).as_deref(), Some("body"));
        assert!(r.get("/p", "a", 8, 1).is_none(), "a new playlist");
        assert!(r.get("/p", "a", 7, 2).is_none(), "a new edge set");
        assert!(r.get("/p", "b", 7, 1).is_none(), "another edge");
        r.keep_set(2);
        assert!(r.get("/p", "a", 7, 1).is_none());
    }
}
