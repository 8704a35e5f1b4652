//! The source decoder: AVCC packets in (with the avcC as extradata), frames out.

use bytes::Bytes;
use ffmpeg::{codec, decoder, frame};
use ffmpeg_next as ffmpeg;
use media_core::Packet;

use crate::TranscodeError;
use crate::ffi::set_extradata;

/// An H.264 decoder opened for one avcC.
pub struct Decoder {
    inner: decoder::Video,
    /// The avcC it was opened with.
    pub config: Bytes,
}

impl Decoder {
    /// Opens a decoder for streams described by `avcc`.
    pub fn open(avcc: Bytes) -> Result<Self, TranscodeError> {
        let codec =
            decoder::find(codec::Id::H264).ok_or(TranscodeError::NoCodec("h264 decoder"))?;
        let mut ctx = codec::Context::new_with_codec(codec);
        set_extradata(&mut ctx, &avcc)?;
        // One thread: the decoder has its own OS thread and frame threading
        // would add a frame of latency per thread.
        ctx.set_threading(codec::threading::Config::count(1));
        let mut video = ctx.decoder().video()?;
        video.set_packet_time_base((1, 1000));
        Ok(Self {
            inner: video,
            config: avcc,
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
