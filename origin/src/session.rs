//! Publish sessions: every publish session of a stream names its segments
//! with an id of its own, so a name is never reused for other bytes, and what
//! earlier sessions left in the store is removed.

use std::time::SystemTime;

use hls::naming::ObjectKind;
use origin_store::OriginStore;
use tracing::{info, warn};

/// A new publish session's id: the wall clock in milliseconds, base 36, and
/// never the same twice in this process (a restart sees a later clock). It
/// goes into every segment name, so names are never reused for other bytes.
pub fn session_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let prev = LAST.fetch_max(now, Ordering::Relaxed);
    let id = if prev >= now {
        // Same millisecond (or a clock step back): take the next free value.
        LAST.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        now
    };
    base36(id)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Deletes what earlier publish sessions of `stream` left in the store:
/// segments and init segments of other sessions, and playlists of variants
/// this session does not have (its own playlists replace the others).
pub async fn remove_stale(
    store: OriginStore,
    stream: String,
    session: String,
    variants: Vec<String>,
) {
    let keys = match store.list(&stream).await {
        Ok(keys) => keys,
        Err(e) => {
            warn!(stream, error = %e, "cannot list old segments to clean up");
            return;
        }
    };
    let own = format!("{session}-");
    let mut removed = 0usize;
    for key in keys {
        let Some(rest) = key.strip_prefix(&format!("{stream}/")) else {
            continue;
        };
        let (variant, file) = rest.split_once('/').unwrap_or(("", rest));
        let stale = match ObjectKind::of(file) {
            ObjectKind::TsSegment | ObjectKind::Mp4Segment => !file.starts_with(&own),
            ObjectKind::Playlist => !variant.is_empty() && !variants.iter().any(|v| v == variant),
            ObjectKind::OtherSegment | ObjectKind::Other => false,
        };
        if stale && store.delete(&key).await.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        info!(
            stream,
            removed, "removed what earlier sessions left in the store"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_never_repeat_and_are_path_safe() {
        let ids: Vec<String> = (0..1000).map(|_| session_id()).collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "same-millisecond sessions collide");
        assert!(
            ids.iter()
                .all(|i| i.bytes().all(|b| b.is_ascii_alphanumeric()))
        );
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }

    #[tokio::test]
    async fn stale_objects_of_other_sessions_are_removed() {
        let store = OriginStore::memory();
        for key in [
            "s/source/old-1.ts",
            "s/source/new-1.ts",
            "s/source/old-init1.mp4",
            "s/source/index.m3u8",
            "s/720p/index.m3u8",
            "s/720p/old-3.ts",
            "s/master.m3u8",
            "t/source/old-1.ts",
        ] {
            store
                .put(key, bytes::Bytes::from_static(b"x"))
                .await
                .expect("put");
        }
        remove_stale(
            store.clone(),
            "s".into(),
            "new".into(),
            vec!["source".into()],
        )
        .await;
        let mut left = store.list("s").await.expect("list");
        left.sort();
        assert_eq!(
            left,
            ["s/master.m3u8", "s/source/index.m3u8", "s/source/new-1.ts"]
        );
        assert_eq!(store.list("t").await.expect("list"), ["t/source/old-1.ts"]);
    }
}
