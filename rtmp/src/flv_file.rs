//! FLV files (what `ffmpeg -f flv` writes), tag by tag: how tests and
//! benches feed recorded media to an origin faster than real time, or to the
//! packager without a network. A file whose writer was killed ends mid-tag;
//! the reader says so ([`FlvFileError::Truncated`]) after the last whole tag.

use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;

/// FLV tag type of audio.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type of video.
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type of script data (`onMetaData`).
pub const TAG_SCRIPT: u8 = 18;

/// One tag of a file: its type, its timestamp and its body (the RTMP
/// message payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileTag {
    /// [`TAG_AUDIO`], [`TAG_VIDEO`] or [`TAG_SCRIPT`].
    pub kind: u8,
    /// Milliseconds, with the extended byte folded in.
    pub timestamp: u32,
    /// The tag body.
    pub body: Bytes,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FlvFileError {
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The file does not start with an FLV header.
    #[error("not an FLV file")]
    NotFlv,
    /// The file ends inside a tag.
    #[error("the file ends inside a tag")]
    Truncated,
}

/// Reads tags one at a time from any reader, as a live input would arrive.
pub struct FlvFile<R> {
    reader: R,
    started: bool,
    done: bool,
}

impl<R: Read> FlvFile<R> {
    /// Wraps `reader`, positioned at the start of the file.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            started: false,
            done: false,
        }
    }

    fn skip_header(&mut self) -> Result<(), FlvFileError> {
        let mut head = [0u8; 9];
        read_all(&mut self.reader, &mut head)?
            .then_some(())
            .ok_or(FlvFileError::NotFlv)?;
        if &head[..3] != b"FLV" {
            return Err(FlvFileError::NotFlv);
        }
        // The header's length, then the first (zero) previous-tag size.
        let header_len = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) as u64;
        let skip = header_len.saturating_sub(9) + 4;
        let skipped = io::copy(&mut (&mut self.reader).take(skip), &mut io::sink())?;
        if skipped < skip {
            return Err(FlvFileError::Truncated);
        }
        Ok(())
    }

    fn next_tag(&mut self) -> Result<Option<FileTag>, FlvFileError> {
        if !self.started {
            self.started = true;
            self.skip_header()?;
        }
        let mut head = [0u8; 11];
        let mut got = 0;
        while got < head.len() {
            match self.reader.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(FlvFileError::Truncated),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let size = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
        let timestamp = u32::from_be_bytes([head[7], head[4], head[5], head[6]]);
        // The body, then its previous-tag size (which a killed writer may
        // not have written: the tag is whole without it).
        let mut body = vec![0u8; size];
        if !read_all(&mut self.reader, &mut body)? {
            return Err(FlvFileError::Truncated);
        }
        let mut trailer = [0u8; 4];
        let _ = read_all(&mut self.reader, &mut trailer)?;
        Ok(Some(FileTag {
            kind: head[0] & 0x1f,
            timestamp,
            body: Bytes::from(body),
        }))
    }
}

impl FlvFile<io::BufReader<std::fs::File>> {
    /// Every whole tag of the file at `path`; a tail cut inside a tag (the
    /// writer was killed) is left out.
    pub fn read_path(path: &Path) -> Result<Vec<FileTag>, FlvFileError> {
        let file = std::fs::File::open(path)?;
        let mut tags = Vec::new();
        for tag in FlvFile::new(io::BufReader::with_capacity(64 << 10, file)) {
            match tag {
                Ok(tag) => tags.push(tag),
                Err(FlvFileError::Truncated) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(tags)
    }
}

impl<R: Read> Iterator for FlvFile<R> {
    type Item = Result<FileTag, FlvFileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_tag().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

/// Fills `buf`; false if the reader ended first.
fn read_all(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tags: &[(u8, u32, &[u8])]) -> Vec<u8> {
        let mut out = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        for (kind, ts, body) in tags {
            let size = (body.len() as u32).to_be_bytes();
            let t = ts.to_be_bytes();
            out.extend_from_slice(&[*kind, size[1], size[2], size[3], t[1], t[2], t[3], t[0]]);
            out.extend_from_slice(&[0, 0, 0]);
            out.extend_from_slice(body);
            out.extend_from_slice(&((11 + body.len()) as u32).to_be_bytes());
        }
        out
    }

    #[test]
    fn tags_come_out_in_order_with_extended_timestamps() {
        let data = file(&[(9, 0, b"\x17\x00"), (8, 0x0100_0002, b"\xaf\x01x")]);
        let tags: Vec<_> = FlvFile::new(&data[..])
            .collect::<Result<_, _>>()
            .expect("reads");
        assert_eq!(tags.len(), 2);
        assert_eq!((tags[0].kind, tags[0].timestamp), (TAG_VIDEO, 0));
        assert_eq!((tags[1].kind, tags[1].timestamp), (TAG_AUDIO, 0x0100_0002));
        assert_eq!(&tags[1].body[..], b"\xaf\x01x");
    }

    #[test]
    fn a_cut_file_ends_with_truncated_after_its_whole_tags() {
        let data = file(&[(9, 0, b"\x17\x00"), (9, 40, b"\x27\x01abcdef")]);
        let cut = &data[..data.len() - 8];
        let got: Vec<_> = FlvFile::new(cut).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert!(matches!(got[1], Err(FlvFileError::Truncated)));
        // Without its last previous-tag size a tag is still whole.
        let tags: Vec<_> = FlvFile::new(&data[..data.len() - 4])
            .collect::<Result<_, _>>()
            .expect("whole");
        assert_eq!(tags.len(), 2);
    }

    #[test]
    fn other_files_are_refused() {
        assert!(matches!(
            FlvFile::new(&b"GIF89a..."[..]).next(),
            Some(Err(FlvFileError::NotFlv))
        ));
        assert!(matches!(
            FlvFile::new(&b"FL"[..]).next(),
            Some(Err(FlvFileError::NotFlv))
        ));
        assert!(FlvFile::new(&file(&[])[..]).next().is_none());
    }
}
