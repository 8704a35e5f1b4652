//! The one thing `ffmpeg-next` has no safe call for: giving a decoder its
//! codec config (avcC) as extradata.
#![allow(unsafe_code)]

use ffmpeg::ffi;
use ffmpeg_next as ffmpeg;

/// Copies `data` into the context's `extradata` (padded and zeroed as libavcodec
/// requires), replacing any there.
pub fn set_extradata(ctx: &mut ffmpeg::codec::Context, data: &[u8]) -> Result<(), ffmpeg::Error> {
    let size = i32::try_from(data.len()).map_err(|_| ffmpeg::Error::InvalidData)?;
    let padded = data.len() + ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: `ctx` owns a valid, not yet opened AVCodecContext. The buffer comes
    // from av_mallocz, so avcodec_free_context may free it; it is `padded` bytes
    // long, so the copy of `data.len()` bytes stays inside it and the padding
    // stays zero. An old extradata is freed with av_freep, which nulls the field.
    unsafe {
        let buf = ffi::av_mallocz(padded).cast::<u8>();
        if buf.is_null() {
            return Err(ffmpeg::Error::Other {
                errno: ffmpeg::util::error::ENOMEM,
            });
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        let raw = ctx.as_mut_ptr();
        if !(*raw).extradata.is_null() {
            ffi::av_freep(std::ptr::addr_of_mut!((*raw).extradata).cast());
        }
        (*raw).extradata = buf;
        (*raw).extradata_size = size;
    }
    Ok(())
}
