//! The source decoder: length-prefixed H.264 or HEVC packets in (with the
//! avcC or hvcC as extradata), frames out.

use bytes::Bytes;
use ffmpeg::{codec, decoder, frame};
use ffmpeg_next as ffmpeg;
use media_core::{Codec, Packet};

use crate::TranscodeError;
use crate::ffi::set_extradata;

/// A decoder opened for one decoder config (avcC or hvcC).
pub struct Decoder {
    inner: decoder::Video,
    /// The config it was opened with.
    pub config: Bytes,
}

impl Decoder {
    /// Opens a decoder for `kind` streams described by `config` (avcC, hvcC).
    pub fn open(config: Bytes, kind: Codec) -> Result<Self, TranscodeError> {
        let (id, name) = match kind {
            Codec::H265 => (codec::Id::HEVC, "hevc decoder"),
            Codec::Av1 => (codec::Id::AV1, "av1 decoder"),
            _ => (codec::Id::H264, "h264 decoder"),
        };
        let codec = decoder::find(id).ok_or(TranscodeError::NoCodec(name))?;
        let mut ctx = codec::Context::new_with_codec(codec);
        set_extradata(&mut ctx, &config)?;
        // One thread: the decoder has its own OS thread and frame threading
        // would add a frame of latency per thread.
        ctx.set_threading(codec::threading::Config::count(1));
        let mut video = ctx.decoder().video()?;
        video.set_packet_time_base((1, 1000));
        Ok(Self {
            inner: video,
            config,
        })
    }

    /// Decodes one packet; decoded frames (possibly none, possibly several after
    /// a B-frame run) are passed to `out` in presentation order.
    pub fn decode(
        &mut self,
        packet: &Packet,
        out: &mut impl FnMut(frame::Video),
    ) -> Result<(), TranscodeError> {
        // libavcodec needs padding after the data, so the payload is copied once.
        let mut p = ffmpeg::Packet::copy(&packet.payload);
        p.set_pts(Some(packet.pts.as_millis()));
        p.set_dts(Some(packet.dts.as_millis()));
        if packet.keyframe {
            p.set_flags(codec::packet::Flags::KEY);
        }
        self.inner.send_packet(&p)?;
        self.drain(out)
    }

    /// Returns the frames still held (B-frame reordering) at the end of a stream.
    pub fn finish(&mut self, out: &mut impl FnMut(frame::Video)) -> Result<(), TranscodeError> {
        self.inner.send_eof()?;
        self.drain(out)
    }

    /// Drops what the decoder holds, to restart at the next keyframe.
    pub fn reset(&mut self) {
        self.inner.flush();
    }

    fn drain(&mut self, out: &mut impl FnMut(frame::Video)) -> Result<(), TranscodeError> {
        loop {
            let mut frame = frame::Video::empty();
            match self.inner.receive_frame(&mut frame) {
                Ok(()) => out(frame),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    return Ok(());
                }
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
