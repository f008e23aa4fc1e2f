//! The clone stream on the wire: the backup tool's bytes in frames, closed by an explicit end
//! frame that only a successful backup sends. A truncated stream (donor killed, connection
//! cut) lacks the end frame and is refused, whatever the HTTP layer or the extractor said.
//!
//! ```text
//! stream := MAGIC frame*        frame := tag:u8 len:u32be payload[len]
//! 'D' data: backup bytes        'E' end: total bytes u64be, crc32 u32be of all data
//! 'X' failure: UTF-8 reason
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const MAGIC: &[u8; 8] = b"MSACLN01";
pub const HEADER_LEN: usize = 5;
const TAG_DATA: u8 = b'D';
const TAG_END: u8 = b'E';
const TAG_FAILED: u8 = b'X';
const END_LEN: usize = 12;
/// Far above any frame the donor sends; bounds what a corrupt length can make us buffer.
const MAX_FRAME: usize = 16 << 20;

/// Reserves room for a data frame header at the start of an empty buffer; the payload is
/// read in after it and [`seal_data`] fills the header in, so data is never copied.
pub fn begin_data(buf: &mut BytesMut) {
    debug_assert!(buf.is_empty());
    buf.put_bytes(0, HEADER_LEN);
}

pub fn seal_data(buf: &mut BytesMut) {
    let len = u32::try_from(buf.len() - HEADER_LEN).expect("frame fits u32");
    buf[0] = TAG_DATA;
    buf[1..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

pub fn end(total_bytes: u64, crc32: u32) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + END_LEN);
    buf.put_u8(TAG_END);
    buf.put_u32(END_LEN as u32);
    buf.put_u64(total_bytes);
    buf.put_u32(crc32);
    buf.freeze()
}

pub fn failed(reason: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + reason.len());
    buf.put_u8(TAG_FAILED);
    buf.put_u32(u32::try_from(reason.len()).unwrap_or(u32::MAX));
    buf.put_slice(reason.as_bytes());
    buf.freeze()
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Data(Bytes),
    /// The donor's backup tool exited 0 and every byte arrived intact.
    End {
        total_bytes: u64,
    },
    /// The donor says its backup failed.
    Failed(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("the response is not a clone stream (bad magic)")]
    BadMagic,
    #[error("unknown frame tag {0:#04x}")]
    UnknownTag(u8),
    #[error("frame of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("end frame is malformed")]
    BadEnd,
    #[error(
        "stream ended after {received} bytes without the donor's end-of-stream signal (truncated)"
    )]
    Truncated { received: u64 },
    #[error("donor sent {sent} bytes but {received} arrived")]
    LengthMismatch { sent: u64, received: u64 },
    #[error("checksum mismatch: the data was corrupted in transit")]
    ChecksumMismatch,
    #[error("data after the end of the stream")]
    TrailingData,
}

/// Incremental decoder: push what the network delivers, pull events.
#[derive(Default)]
pub struct Decoder {
    buf: BytesMut,
    magic_seen: bool,
    ended: bool,
    received: u64,
    crc: crc32fast::Hasher,
}

impl Decoder {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn next_event(&mut self) -> Result<Option<Event>, FrameError> {
        if !self.magic_seen {
            if self.buf.len() < MAGIC.len() {
                return Ok(None);
            }
            if &self.buf[..MAGIC.len()] != MAGIC {
                return Err(FrameError::BadMagic);
            }
            self.buf.advance(MAGIC.len());
            self.magic_seen = true;
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        if self.ended {
            return Err(FrameError::TrailingData);
        }
        let tag = self.buf[0];
        let len = u32::from_be_bytes(self.buf[1..HEADER_LEN].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let mut payload = self.buf.split_to(len);
        match tag {
            TAG_DATA => {
                self.received += len as u64;
                self.crc.update(&payload);
                Ok(Some(Event::Data(payload.freeze())))
            }
            TAG_END => {
                if len != END_LEN {
                    return Err(FrameError::BadEnd);
                }
                let sent = payload.get_u64();
                let crc = payload.get_u32();
                if sent != self.received {
                    return Err(FrameError::LengthMismatch {
                        sent,
                        received: self.received,
                    });
                }
                if crc != self.crc.clone().finalize() {
                    return Err(FrameError::ChecksumMismatch);
                }
                self.ended = true;
                Ok(Some(Event::End { total_bytes: sent }))
            }
            TAG_FAILED => Ok(Some(Event::Failed(
                String::from_utf8_lossy(&payload).into_owned(),
            ))),
            other => Err(FrameError::UnknownTag(other)),
        }
    }

    /// Call at the end of the HTTP body: only a stream closed by an end frame is complete.
    pub fn finish(&self) -> Result<(), FrameError> {
        if !self.ended {
            return Err(FrameError::Truncated {
                received: self.received,
            });
        }
        if !self.buf.is_empty() {
            return Err(FrameError::TrailingData);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(payload: &[u8]) -> Bytes {
        let mut buf = BytesMut::new();
        begin_data(&mut buf);
        buf.extend_from_slice(payload);
        seal_data(&mut buf);
        buf.freeze()
    }

    fn stream(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let mut crc = crc32fast::Hasher::new();
        let mut total = 0;
        for p in parts {
            out.extend_from_slice(&data(p));
            crc.update(p);
            total += p.len() as u64;
        }
        out.extend_from_slice(&end(total, crc.finalize()));
        out
    }

    /// Feeds the bytes in chunks of `chunk` and collects data until the end or an error.
    fn decode(bytes: &[u8], chunk: usize) -> Result<(Vec<u8>, Option<String>), FrameError> {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        let mut failure = None;
        for piece in bytes.chunks(chunk.max(1)) {
            decoder.push(piece);
            while let Some(event) = decoder.next_event()? {
                match event {
                    Event::Data(d) => out.extend_from_slice(&d),
                    Event::End { total_bytes } => assert_eq!(total_bytes, out.len() as u64),
                    Event::Failed(reason) => failure = Some(reason),
                }
            }
        }
        if failure.is_none() {
            decoder.finish()?;
        }
        Ok((out, failure))
    }

    #[test]
    fn round_trip_in_any_chunking() {
        let bytes = stream(&[b"hello ", b"", b"world"]);
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(decode(&bytes, chunk).unwrap().0, b"hello world");
        }
    }

    #[test]
    fn truncated_anywhere_is_refused() {
        let bytes = stream(&[b"hello ", b"world"]);
        for cut in 0..bytes.len() {
            let err = decode(&bytes[..cut], 4).unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { .. }),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn corruption_and_foreign_bodies_are_refused() {
        let mut bytes = stream(&[b"hello world"]);
        bytes[MAGIC.len() + HEADER_LEN] ^= 1;
        assert_eq!(decode(&bytes, 64), Err(FrameError::ChecksumMismatch));
        assert_eq!(
            decode(b"401 missing or wrong clone token", 64),
            Err(FrameError::BadMagic)
        );
        let mut trailing = stream(&[b"x"]);
        trailing.extend_from_slice(&data(b"late"));
        assert_eq!(decode(&trailing, 64), Err(FrameError::TrailingData));
    }

    #[test]
    fn donor_failure_is_reported() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&data(b"partial"));
        bytes.extend_from_slice(&failed("mariadb-backup exited with 1"));
        let (_, failure) = decode(&bytes, 5).unwrap();
        assert_eq!(failure.as_deref(), Some("mariadb-backup exited with 1"));
    }
}
