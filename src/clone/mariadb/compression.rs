//! Optional zstd compression of the clone stream, negotiated per request with HTTP's own
//! headers: the joiner asks (`Accept-Encoding: zstd`), the donor grants (`Content-Encoding:
//! zstd`) or sends the stream plain, as a donor of an older version does. The joiner decides by
//! the response alone. Frames, the end frame's byte count and checksum stay inside the
//! compression, so a cut or corrupt compressed stream is refused like a plain one.

use std::io::Write;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

/// The content coding's name, in `Accept-Encoding` and `Content-Encoding`.
pub const ZSTD: &str = "zstd";
/// zstd's fastest positive level: the backup tool, the compressor and the network share the
/// pod's CPU, and a higher level costs more CPU than it saves bytes on a fast link. A negative
/// one (-3, measured by benchmark 7 on sysbench data) halves the ratio (1.6 against 3.0) and is
/// no faster on a fast link, slower on a slow one.
const LEVEL: i32 = 1;
/// The most one decompression step produces: a small compressed chunk may expand a thousandfold.
const PIECE: usize = 256 * 1024;
/// The largest window (2^N bytes) the joiner decodes with: level 1 uses 2^19; the bound keeps
/// a stream that declares more from taking zstd's default 128 MiB.
const WINDOW_LOG_MAX: u32 = 23;

/// How the joiner asks for the clone stream (`--clone-compression`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Zstd,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Zstd => ZSTD,
        })
    }
}

/// What the donor sends for a request's `Accept-Encoding`: zstd when it is listed with a
/// quality above 0 (a wildcard does not count: only joiners that ask get it).
pub fn granted(accept_encoding: Option<&str>) -> Compression {
    let asks = accept_encoding
        .unwrap_or_default()
        .split(',')
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let quality = parts
                .find_map(|param| param.strip_prefix("q=").or(param.strip_prefix("Q=")))
                .map_or(Some(1.0), |q| q.parse::<f32>().ok());
            name.eq_ignore_ascii_case(ZSTD) && quality.is_some_and(|q| q > 0.0)
        });
    if asks {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// What the donor's body is, by its `Content-Encoding`; a coding this joiner cannot decode is
/// an error (it never asked for one).
pub fn received(content_encoding: Option<&str>) -> Result<Compression, String> {
    match content_encoding.map(str::trim) {
        None => Ok(Compression::None),
        Some(coding) if coding.is_empty() || coding.eq_ignore_ascii_case("identity") => {
            Ok(Compression::None)
        }
        Some(coding) if coding.eq_ignore_ascii_case(ZSTD) => Ok(Compression::Zstd),
        Some(coding) => Err(format!(
            "the donor sent the clone stream with Content-Encoding {coding}, which this joiner cannot decode"
        )),
    }
}

/// The joiner's decision, as its log line says it.
pub fn decision(asked: Compression, got: Compression) -> &'static str {
    match (asked, got) {
        (Compression::None, _) => "not asked for (--clone-compression none)",
        (Compression::Zstd, Compression::Zstd) => "asked for and granted by the donor",
        (Compression::Zstd, Compression::None) => {
            "asked for, but the donor sends the stream plain (an agent without compression)"
        }
    }
}

/// How many times smaller the stream went on the wire (`bytes` of backup in `wire_bytes`), to
/// two decimals.
pub fn ratio(bytes: u64, wire_bytes: u64) -> f64 {
    if wire_bytes == 0 {
        return 1.0;
    }
    (bytes as f64 / wire_bytes as f64 * 100.0).round() / 100.0
}

/// Compresses what arrives on `frames` into `out` until `frames` closes, then ends the zstd
/// frame; returns the compressed bytes sent. Run on a blocking thread: it is CPU work beside the
/// donor's reading of the backup. When no frame waits, what is buffered is flushed, so a
/// backup that pauses does not hold data back from the joiner (whose stall timeout runs).
pub fn compress(
    mut frames: mpsc::Receiver<Bytes>,
    out: &mpsc::Sender<Bytes>,
) -> std::io::Result<u64> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), LEVEL)?;
    let mut sent = 0u64;
    let mut send = |compressed: Vec<u8>| {
        if compressed.is_empty() {
            return Ok(());
        }
        sent += compressed.len() as u64;
        out.blocking_send(Bytes::from(compressed))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    };
    loop {
        let frame = match frames.try_recv() {
            Ok(frame) => frame,
            Err(TryRecvError::Empty) => {
                encoder.flush()?;
                send(std::mem::take(encoder.get_mut()))?;
                match frames.blocking_recv() {
                    Some(frame) => frame,
                    None => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        encoder.write_all(&frame)?;
        send(std::mem::take(encoder.get_mut()))?;
    }
    send(encoder.finish()?)?;
    Ok(sent)
}

/// The joiner's decompressor: takes the body's chunks as they come and gives their
/// decompressed bytes back in pieces of at most [`PIECE`], so memory stays bounded however well
/// the data compressed.
pub struct Inflater {
    decoder: Decoder<'static>,
    piece: Vec<u8>,
    /// The zstd frame ended and everything in it was given back.
    complete: bool,
}

impl Inflater {
    pub fn new() -> std::io::Result<Self> {
        let mut decoder = Decoder::new()?;
        decoder.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))?;
        Ok(Inflater {
            decoder,
            piece: vec![0; PIECE],
            complete: false,
        })
    }

    /// The next piece of `chunk`'s data, from `*consumed` on (which it advances); empty once the
    /// chunk is used up and nothing of it is left inside the decoder.
    pub fn next_piece(&mut self, chunk: &[u8], consumed: &mut usize) -> std::io::Result<&[u8]> {
        let mut input = InBuffer::around(&chunk[*consumed..]);
        let mut output = OutBuffer::around(self.piece.as_mut_slice());
        let hint = self.decoder.run(&mut input, &mut output)?;
        *consumed += input.pos();
        let produced = output.pos();
        if hint == 0 && produced < PIECE {
            self.complete = true;
        } else if produced > 0 || input.pos() > 0 {
            self.complete = false;
        }
        Ok(&self.piece[..produced])
    }

    /// Whether the zstd frame ended, and everything in it was given back.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// At the end of the body: whether the compressed stream ended where its zstd frame does.
    pub fn finish(&self) -> Result<(), String> {
        if self.complete {
            Ok(())
        } else {
            Err("the compressed stream ended inside its zstd frame (truncated)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_donor_grants_zstd_only_when_asked() {
        for asked in [
            "zstd",
            "gzip, zstd",
            "ZSTD",
            "br;q=0.5, zstd;q=0.8",
            " zstd ; q=1",
        ] {
            assert_eq!(granted(Some(asked)), Compression::Zstd, "{asked}");
        }
        for not_asked in [
            "",
            "gzip",
            "*",
            "zstd;q=0",
            "zstd;q=0.0",
            "zstdx",
            "zstd;q=x",
        ] {
            assert_eq!(granted(Some(not_asked)), Compression::None, "{not_asked}");
        }
        assert_eq!(granted(None), Compression::None);
    }

    #[test]
    fn the_joiner_decides_by_the_response_alone() {
        assert_eq!(received(None), Ok(Compression::None));
        assert_eq!(received(Some("identity")), Ok(Compression::None));
        assert_eq!(received(Some("zstd")), Ok(Compression::Zstd));
        assert_eq!(received(Some(" Zstd ")), Ok(Compression::Zstd));
        let gzip = received(Some("gzip")).unwrap_err();
        assert!(gzip.contains("gzip"), "{gzip}");
        assert_eq!(
            decision(Compression::Zstd, Compression::None),
            "asked for, but the donor sends the stream plain (an agent without compression)"
        );
        assert!(decision(Compression::None, Compression::None).contains("not asked"));
    }

    #[test]
    fn the_ratio_is_backup_bytes_per_wire_byte() {
        assert_eq!(ratio(1000, 250), 4.0);
        assert_eq!(ratio(1000, 3000), 0.33);
        assert_eq!(ratio(0, 0), 1.0);
    }

    /// Compresses `frames` as the donor does, on a blocking thread.
    fn compressed(frames: Vec<Bytes>) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (tx, rx) = mpsc::channel(2);
            let (out, mut wire) = mpsc::channel(2);
            let compressor = tokio::task::spawn_blocking(move || compress(rx, &out));
            let feeder = tokio::spawn(async move {
                for frame in frames {
                    tx.send(frame).await.unwrap();
                }
            });
            let mut bytes = Vec::new();
            while let Some(chunk) = wire.recv().await {
                bytes.extend_from_slice(&chunk);
            }
            feeder.await.unwrap();
            assert_eq!(compressor.await.unwrap().unwrap(), bytes.len() as u64);
            bytes
        })
    }

    /// Decompresses `bytes` fed in chunks of `chunk`, checking each piece's bound.
    fn inflated(bytes: &[u8], chunk: usize) -> Result<Vec<u8>, String> {
        let mut inflater = Inflater::new().unwrap();
        let mut out = Vec::new();
        for chunk in bytes.chunks(chunk) {
            let mut consumed = 0;
            loop {
                let piece =
                    (inflater.next_piece(chunk, &mut consumed)).map_err(|e| e.to_string())?;
                assert!(piece.len() <= PIECE);
                if piece.is_empty() {
                    break;
                }
                out.extend_from_slice(piece);
            }
            assert_eq!(consumed, chunk.len());
        }
        inflater.finish()?;
        Ok(out)
    }

    #[test]
    fn a_stream_round_trips_in_bounded_pieces() {
        let zeros = Bytes::from(vec![0u8; 3 << 20]);
        let text = Bytes::from("row 1, row 2, row 3; ".repeat(20_000));
        let plain: Vec<u8> = [zeros.clone(), text.clone()].concat();
        let bytes = compressed(vec![zeros, Bytes::new(), text]);
        assert!(bytes.len() * 20 < plain.len(), "{} bytes", bytes.len());
        for chunk in [1, 7, 4096, 1 << 20] {
            assert_eq!(inflated(&bytes, chunk).unwrap(), plain, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_cut_or_corrupt_compressed_stream_is_refused() {
        let bytes = compressed(vec![Bytes::from("some backup bytes ".repeat(1000))]);
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(inflated(&bytes[..cut], 64).is_err(), "cut at {cut}");
        }
        let mut corrupt = bytes.clone();
        corrupt[0] ^= 0xff;
        assert!(inflated(&corrupt, 64).is_err());
    }
}
