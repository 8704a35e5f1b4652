//! Removing an edge without failing a viewer: the edge is marked draining
//! (the director stops naming it in playlists within one poll), and it is
//! stopped only once it has served nothing for a while, so players that
//! still hold a playlist naming it finish their fetches there.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::AutoscaleConfig;

/// An edge on its way out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Removal {
    /// Node id.
    pub id: String,
    /// Unix ms the drain began.
    pub since_ms: i64,
    /// Unix ms of the last report in which it served a request.
    pub last_request_ms: i64,
}

/// What to do with a draining edge now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Keep waiting.
    Wait,
    /// Quiet for long enough: stop it.
    Quiet,
    /// Drained for the longest allowed: stop it anyway.
    TimedOut,
    /// It stopped reporting: stop whatever is left of it.
    Gone,
}

/// The edges being drained.
#[derive(Debug, Default)]
pub struct Drains {
    removals: BTreeMap<String, Removal>,
}

impl Drains {
    /// Starts draining `id` at `now_ms` (again: keeps the first start).
    pub fn begin(&mut self, id: &str, now_ms: i64) {
        self.removals.entry(id.to_owned()).or_insert(Removal {
            id: id.to_owned(),
            since_ms: now_ms,
            last_request_ms: now_ms,
        });
    }

    /// Takes `id` back into the farm (load rose again while it drained: a
    /// warm edge beats a cold new one). False if it was not draining.
    pub fn cancel(&mut self, id: &str) -> bool {
        self.removals.remove(id).is_some()
    }

    /// Whether `id` is draining.
    pub fn contains(&self, id: &str) -> bool {
        self.removals.contains_key(id)
    }

    /// The edges draining now, oldest drain first.
    pub fn list(&self) -> Vec<Removal> {
        let mut v: Vec<Removal> = self.removals.values().cloned().collect();
        v.sort_by_key(|r| r.since_ms);
        v
    }

    /// Records `id`'s report at `now_ms`: `requests` served since its last one.
    pub fn report(&mut self, id: &str, requests: u64, now_ms: i64) {
        if let Some(r) = self.removals.get_mut(id)
            && requests > 0
        {
            r.last_request_ms = now_ms;
        }
    }

    /// What to do with each draining edge at `now_ms`; `reporting(id)` says
    /// whether it still reports. Edges given a verdict other than
    /// [`Verdict::Wait`] are forgotten: the caller stops them.
    pub fn due(
        &mut self,
        now_ms: i64,
        config: &AutoscaleConfig,
        reporting: impl Fn(&str) -> bool,
    ) -> Vec<(String, Verdict)> {
        let ms = |s: f64| (s * 1000.0) as i64;
        let mut out = Vec::new();
        for r in self.removals.values() {
            let age = now_ms - r.since_ms;
            let quiet = now_ms - r.last_request_ms;
            let verdict = if !reporting(&r.id) && age >= ms(config.drain_min_seconds) {
                Verdict::Gone
            } else if age >= ms(config.drain_max_seconds) {
                Verdict::TimedOut
            } else if age >= ms(config.drain_min_seconds) && quiet >= ms(config.drain_quiet_seconds)
            {
                Verdict::Quiet
            } else {
                Verdict::Wait
            };
            if verdict != Verdict::Wait {
                out.push((r.id.clone(), verdict));
            }
        }
        for (id, _) in &out {
            self.removals.remove(id);
        }
        out
    }
}

/// The `n` edges to remove from `candidates` (`(id, viewers)`): fewest
/// viewers first (the fewest players move), then the youngest id order for
/// a stable choice.
pub fn victims(candidates: &[(String, u64)], n: usize) -> Vec<String> {
    let mut c: Vec<&(String, u64)> = candidates.iter().collect();
    c.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
    c.into_iter().take(n).map(|(id, _)| id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AutoscaleConfig {
        AutoscaleConfig {
            drain_quiet_seconds: 6.0,
            drain_min_seconds: 8.0,
            drain_max_seconds: 60.0,
            ..AutoscaleConfig::default()
        }
    }

    #[test]
    fn an_edge_is_stopped_only_after_its_last_viewer_went_quiet() {
        let (c, mut d) = (config(), Drains::default());
        d.begin("e1", 0);
        // Players holding old playlists still fetch from it for 10 s.
        for t in (1..=10).map(|s| s * 1000) {
            d.report("e1", 3, t);
            assert!(d.due(t, &c, |_| true).is_empty(), "{t}");
        }
        for t in (11..16).map(|s| s * 1000) {
            d.report("e1", 0, t);
            assert!(d.due(t, &c, |_| true).is_empty(), "{t}");
        }
        d.report("e1", 0, 16_000);
        assert_eq!(
            d.due(16_000, &c, |_| true),
            [("e1".to_owned(), Verdict::Quiet)]
        );
        assert!(!d.contains("e1"), "forgotten once due");
    }

    #[test]
    fn a_quiet_edge_still_waits_the_minimum_and_a_busy_one_the_maximum() {
        let (c, mut d) = (config(), Drains::default());
        d.begin("idle", 0);
        d.begin("busy", 0);
        for t in (1..60).map(|s| s * 1000) {
            d.report("busy", 1, t);
            d.report("idle", 0, t);
            let due = d.due(t, &c, |_| true);
            if t < 8000 {
                assert!(due.is_empty(), "{t}: {due:?}");
            }
            if t == 8000 {
                assert_eq!(due, [("idle".to_owned(), Verdict::Quiet)]);
            }
            if t > 8000 {
                assert!(due.is_empty(), "{t}: {due:?}");
            }
        }
        assert_eq!(
            d.due(60_000, &c, |_| true),
            [("busy".to_owned(), Verdict::TimedOut)]
        );
    }

    #[test]
    fn a_silent_edge_is_gone_and_a_cancelled_drain_is_not_stopped() {
        let (c, mut d) = (config(), Drains::default());
        d.begin("dead", 0);
        d.begin("back", 0);
        assert!(d.cancel("back"));
        assert!(!d.cancel("never"));
        assert_eq!(
            d.due(8000, &c, |id| id != "dead"),
            [("dead".to_owned(), Verdict::Gone)]
        );
        assert!(d.list().is_empty());
    }

    #[test]
    fn victims_are_the_edges_with_fewest_viewers() {
        let c = [
            ("a".to_owned(), 40),
            ("b".to_owned(), 3),
            ("c".to_owned(), 12),
            ("d".to_owned(), 3),
        ];
        assert_eq!(victims(&c, 2), ["d", "b"]);
        assert_eq!(victims(&c, 9).len(), 4);
        assert!(victims(&c, 0).is_empty());
    }
}
