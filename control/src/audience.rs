//! The cluster's audience as a metric, read from the nodes' heartbeats at
//! each scrape (nothing to keep in step: the heartbeats are the state).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::Nodes;

/// `stream_audience{stream, protocol}`: people watching each stream, HLS
/// viewers (directors' count) and RTMP players (origins' and edges'),
/// summed over the nodes alive now; and `stream_variant_viewers{stream,
/// variant}`, HLS viewers per variant.
pub struct AudienceCollector(pub Arc<Nodes>);

impl std::fmt::Debug for AudienceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AudienceCollector")
    }
}

impl Collector for AudienceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let audience = self.0.audience();
        {
            let mut metric = encoder.encode_descriptor(
            "stream_audience",
            "People watching each stream by protocol (hls: viewers placed by directors; rtmp: players on origins and edges), from the nodes' heartbeats",
            None,
            MetricType::Gauge,
        )?;
            for (stream, a) in &audience {
                for (protocol, n) in [("hls", a.hls), ("rtmp", a.rtmp)] {
                    let labels = [("stream", stream.as_str()), ("protocol", protocol)];
                    let family = metric.encode_family(&labels)?;
                    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(family)?;
                }
            }
        }
        let mut metric = encoder.encode_descriptor(
            "stream_variant_viewers",
            "HLS viewers of each stream by the variant they follow (directors' count)",
            None,
            MetricType::Gauge,
        )?;
        for (stream, a) in &audience {
            for (variant, n) in &a.variants {
                let labels = [("stream", stream.as_str()), ("variant", variant.as_str())];
                let family = metric.encode_family(&labels)?;
                ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX)).encode(family)?;
            }
        }
        Ok(())
    }
}
