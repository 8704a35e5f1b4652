//! How one publish of a stream is packaged: its container, its LL-HLS part
//! target and its ladder, resolved once per publish from the config file and
//! the stream's settings, and handed to the packager, the LL-HLS view and
//! the ladder alike. Asked separately, a settings change landing between two
//! asks could make the packager list rungs the ladder does not make.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use media_core::Hub;
use transcode::LadderConfig;

/// What one publish of a stream is packaged as.
#[derive(Clone, Debug, Default)]
pub struct StreamPolicy {
    /// The segment format (fMP4 whenever LL-HLS is on).
    pub container: hls::Container,
    /// The LL-HLS part target; `None` when LL-HLS is off.
    pub part_target: Option<Duration>,
    /// The transcoding ladder; `None` when the stream is not transcoded.
    pub ladder: Option<LadderConfig>,
}

/// Resolves a stream's policy from the file and its settings (the binary's
/// part: it knows both).
pub type PolicyLookup = Arc<dyn Fn(&str) -> StreamPolicy + Send + Sync>;

/// Each live stream's policy, resolved on the first ask of a publish and
/// the same for every later ask of that publish.
pub struct Policies {
    lookup: PolicyLookup,
    resolved: Mutex<HashMap<String, (SystemTime, Arc<StreamPolicy>)>>,
}

impl Policies {
    /// Policies resolved by `lookup`.
    pub fn new(lookup: PolicyLookup) -> Arc<Self> {
        Arc::new(Self {
            lookup,
            resolved: Mutex::default(),
        })
    }

    /// The policy of the publish of `name` live in `hub` now.
    pub fn for_publish(&self, hub: &Hub, name: &str) -> Arc<StreamPolicy> {
        let since = hub.info(name).filter(|i| i.live).and_then(|i| i.since);
        let mut resolved = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = since
            && let Some((at, policy)) = resolved.get(name)
            && *at == since
        {
            return policy.clone();
        }
        let policy = Arc::new(fix((self.lookup)(name)));
        if let Some(since) = since {
            resolved.insert(name.to_owned(), (since, policy.clone()));
        }
        policy
    }
}

/// Parts are CMAF fragments: LL-HLS means fMP4.
fn fix(mut p: StreamPolicy) -> StreamPolicy {
    if p.part_target.is_some() {
        p.container = hls::Container::Fmp4;
    }
    p
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn one_publish_is_resolved_once_and_the_next_publish_afresh() {
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let policies = Policies::new(Arc::new(move |_: &str| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            StreamPolicy {
                part_target: (n == 0).then_some(Duration::from_millis(500)),
                ..StreamPolicy::default()
            }
        }));
        let hub = Hub::new();
        let first = hub.publish("s").expect("publish");
        let a = policies.for_publish(&hub, "s");
        let b = policies.for_publish(&hub, "s");
        assert!(
            Arc::ptr_eq(&a, &b),
            "the packager and the ladder see one policy"
        );
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(a.container, hls::Container::Fmp4, "LL-HLS means fMP4");
        drop(first);
        std::thread::sleep(Duration::from_millis(2));
        let _second = hub.publish("s").expect("publish again");
        let c = policies.for_publish(&hub, "s");
        assert_eq!(asked.load(Ordering::SeqCst), 2, "a new publish asks again");
        assert_eq!(c.part_target, None);
    }

    #[test]
    fn a_stream_that_is_not_live_is_asked_every_time() {
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let policies = Policies::new(Arc::new(move |_: &str| {
            counter.fetch_add(1, Ordering::SeqCst);
            StreamPolicy::default()
        }));
        let hub = Hub::new();
        policies.for_publish(&hub, "gone");
        policies.for_publish(&hub, "gone");
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }
}
