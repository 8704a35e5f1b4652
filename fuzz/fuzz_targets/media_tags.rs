//! FLV tag bodies (Enhanced RTMP's extended video header too), aggregate
//! messages, avcC, hvcC, av1C (and its sequence header OBU) and AudioSpecificConfig parsers on arbitrary bytes:
//! errors allowed, panics not.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media_core::codec::{
    AacConfig, Av1Config, AvcConfig, HevcConfig, hevc_sps_resolution, sps_resolution,
};
use rtmp::chunk::RawMessage;
use rtmp::message::{Message, split_aggregate};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let _ = rtmp::flv::parse_video(&body);
    let _ = rtmp::flv::parse_audio(&body);
    let _ = AvcConfig::parse(data);
    let _ = AacConfig::parse(data);
    if let Ok(av1) = Av1Config::parse(data) {
        assert!(av1.codec_string().starts_with("av01."));
        let _ = av1.resolution();
    }
    if let Ok(hevc) = HevcConfig::parse(data) {
        assert!(hevc.codec_string().starts_with("hvc1."));
    }
    let _ = sps_resolution(data);
    let _ = hevc_sps_resolution(data);
    for type_id in [1, 2, 3, 4, 5, 6, 15, 17, 18, 20, 22] {
        let raw = RawMessage {
            csid: 3,
            timestamp: 0,
            type_id,
            stream_id: 1,
            payload: body.clone(),
        };
        let _ = Message::parse(&raw);
        if type_id == 22 {
            if let Ok(parts) = split_aggregate(&raw) {
                assert!(parts.iter().map(|p| p.payload.len()).sum::<usize>() <= data.len());
            }
        }
    }
});
