//! Failovers at any moment between sources with any timestamps: whatever the
//! sources send, the spliced output's timestamps only go forward per track
//! and a video frame after a non-continuous join starts on a keyframe.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media_core::{Packet, Timestamp, TrackKind};
use relay::splice::{Join, Splicer, Standby};

fuzz_target!(|data: &[u8]| {
    let mut s = Splicer::new(true);
    let mut standby = Standby::default();
    let mut last = [i64::MIN; 2];
    let mut must_key = false;
    for op in data.chunks(4) {
        let [kind, a, b, c] = [
            op[0],
            *op.get(1).unwrap_or(&0),
            *op.get(2).unwrap_or(&0),
            *op.get(3).unwrap_or(&0),
        ];
        let dts = i64::from(i16::from_be_bytes([a, b])) * 10;
        let track = if kind & 1 == 0 {
            TrackKind::Video
        } else {
            TrackKind::Audio
        };
        let p = Packet {
            track,
            dts: Timestamp::from_millis(dts),
            pts: Timestamp::from_millis(dts + i64::from(c % 4) * 10),
            keyframe: kind & 2 != 0,
            payload: Bytes::from(vec![c; 1 + usize::from(c % 8)]),
        };
        let out = match kind >> 5 {
            // Mostly: the current source sends, the standby sees it too.
            0..=4 => s.pass(&p).into_iter().collect::<Vec<_>>(),
            5 | 6 => {
                standby.push(&p, true);
                Vec::new()
            }
            _ => {
                let (join, out) = s.switch(&standby);
                must_key = join != Join::Continuous;
                standby = Standby::default();
                out
            }
        };
        for o in out {
            let t = usize::from(o.track == TrackKind::Audio);
            assert!(o.dts.ticks() > last[t], "{:?} went back", o.track);
            last[t] = o.dts.ticks();
            if o.track == TrackKind::Video {
                if must_key {
                    assert!(o.keyframe, "resumed mid-GOP");
                }
                must_key = false;
            }
        }
    }
});
