//! Framing of the wire protocol: every message is one frame, a 4-byte little-endian length
//! followed by that many bytes of postcard. Frames are bounded by [`MAX_FRAME_LEN`], so a peer can
//! size its receive buffer once and reject anything longer before reading it; large objects
//! (ciphertexts, keys) are sent as several frames of one limb each.
//!
//! The functions here work on byte slices and on `embedded_io` streams, so the same code runs on
//! the microcontroller (UART) and on the host (TCP via an adapter).

use alloc::vec::Vec;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

pub mod assembled;
pub mod convert;
pub mod input;
pub mod messages;

/// Version of the wire protocol, exchanged in the handshake.
pub const PROTOCOL_VERSION: u16 = 5;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Largest payload of one frame: one limb at N = 2^14 (128 KiB) plus headroom for the fields
/// around it.
pub const MAX_FRAME_LEN: usize = 160 * 1024;

/// Stable error codes of error frames (defined with the crate's errors, which carry them).
pub use crate::error::ErrorCode;

/// Writes `msg` as one frame (prefix and payload) at the end of `out`.
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    let body = postcard::to_extend(msg, core::mem::take(out))
        .map_err(|_| Error::Decode("message does not serialise"))?;
    *out = body;
    let len = out.len() - start - LEN_PREFIX;
    if len == 0 || len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(Error::FrameTooLarge { len });
    }
    out[start..start + LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// The payload length announced by a prefix, checked against [`MAX_FRAME_LEN`].
pub fn frame_len(prefix: [u8; LEN_PREFIX]) -> Result<usize> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(Error::FrameTooLarge { len });
    }
    Ok(len)
}

/// Decodes one payload (without its prefix); trailing bytes are an error.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    match postcard::take_from_bytes(payload) {
        Ok((msg, [])) => Ok(msg),
        Ok(_) => Err(Error::Decode("trailing bytes after the message")),
        Err(_) => Err(Error::Decode("malformed frame")),
    }
}

/// Splits complete frames off the front of `buf`: returns the first frame's payload and the
/// rest, or `None` if `buf` does not hold a whole frame yet. A bad prefix is an error at once,
/// before the body has arrived.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], &[u8])>> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let mut p = [0; LEN_PREFIX];
    p.copy_from_slice(prefix);
    let len = frame_len(p)?;
    let rest = &buf[LEN_PREFIX..];
    if rest.len() < len {
        return Ok(None);
    }
    Ok(Some(rest.split_at(len)))
}

/// Sends `msg` as one frame on `w`, serialising it twice (once to count its bytes for the
/// length prefix, once onto `w`) so that no frame-sized buffer is needed. Returns the bytes
/// written, prefix included.
pub fn write_frame<W: embedded_io::Write, T: Serialize + ?Sized>(
    w: &mut W,
    msg: &T,
) -> Result<usize> {
    let len = postcard::serialize_with_flavor(msg, ByteCounter(0))
        .map_err(|_| Error::Decode("message does not serialise"))?;
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(Error::FrameTooLarge { len });
    }
    w.write_all(&(len as u32).to_le_bytes())
        .map_err(|_| Error::Io)?;
    let written = postcard::serialize_with_flavor(
        msg,
        WriterFlavor {
            w: &mut *w,
            buf: [0; WRITE_CHUNK],
            used: 0,
            total: 0,
        },
    )
    .map_err(|_| Error::Io)?;
    if written != len {
        return Err(Error::Decode("message serialised to two different lengths"));
    }
    w.flush().map_err(|_| Error::Io)?;
    Ok(LEN_PREFIX + len)
}

/// Counts serialised bytes.
struct ByteCounter(usize);

impl postcard::ser_flavors::Flavor for ByteCounter {
    type Output = usize;

    fn try_push(&mut self, _: u8) -> postcard::Result<()> {
        self.0 += 1;
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0 += data.len();
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.0)
    }
}

/// Small pieces (tags, varints) are gathered so a byte-at-a-time writer is not called per byte;
/// large ones (limb data) go straight through.
const WRITE_CHUNK: usize = 64;

/// Serialises onto an `embedded-io` writer.
struct WriterFlavor<'a, W: embedded_io::Write> {
    w: &'a mut W,
    buf: [u8; WRITE_CHUNK],
    used: usize,
    total: usize,
}

impl<W: embedded_io::Write> WriterFlavor<'_, W> {
    fn drain(&mut self) -> postcard::Result<()> {
        let used = core::mem::take(&mut self.used);
        self.w
            .write_all(&self.buf[..used])
            .map_err(|_| postcard::Error::SerializeBufferFull)
    }
}

impl<W: embedded_io::Write> postcard::ser_flavors::Flavor for WriterFlavor<'_, W> {
    type Output = usize;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        if self.used == WRITE_CHUNK {
            self.drain()?;
        }
        self.buf[self.used] = data;
        self.used += 1;
        self.total += 1;
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.used + data.len() <= WRITE_CHUNK {
            self.buf[self.used..self.used + data.len()].copy_from_slice(data);
            self.used += data.len();
        } else {
            self.drain()?;
            self.w
                .write_all(data)
                .map_err(|_| postcard::Error::SerializeBufferFull)?;
        }
        self.total += data.len();
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<usize> {
        self.drain()?;
        Ok(self.total)
    }
}

/// Reads one frame from `r` into `buf` (resized to the payload) and decodes it. The length is
/// checked before any of the body is read.
pub fn read_frame<R: embedded_io::Read, T: DeserializeOwned>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<T> {
    let mut prefix = [0; LEN_PREFIX];
    r.read_exact(&mut prefix).map_err(|_| Error::Io)?;
    let len = frame_len(prefix)?;
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).map_err(|_| Error::Io)?;
    decode_payload(buf)
}

/// Most bytes of strings one frame may carry (preset names, an error message), which a
/// streamed read keeps in a scratch buffer; everything else is decoded as it is read.
pub const STREAM_SCRATCH: usize = 1024;

/// What a streamed read of one frame gives.
pub struct Streamed<T> {
    /// The message.
    pub msg: T,
    /// Bytes read (length prefix included).
    pub bytes: usize,
    /// Ticks of the caller's clock spent inside the stream's reads (the rest is decoding).
    pub io_ticks: u64,
}

/// Reads one frame from `r` and decodes it as its bytes arrive, without a buffer for the frame
/// (a limb frame is about 6·N bytes): what a device with little RAM does. The frame must
/// decode to exactly its length. `clock`, if any, times the reads alone.
pub fn read_frame_streamed<R: embedded_io::Read, T: DeserializeOwned>(
    r: &mut R,
    clock: Option<fn() -> u64>,
) -> Result<Streamed<T>> {
    let bounded = Bounded::open(r, clock)?;
    let mut scratch = alloc::vec![0u8; STREAM_SCRATCH];
    let (msg, (bounded, _)) = postcard::from_eio::<T, _>((bounded, &mut scratch))
        .map_err(|_| Error::Decode("malformed frame"))?;
    bounded.finish(msg)
}

/// postcard's variant index of [`messages::ServerFrame::CiphertextLimb`] (its fourth variant;
/// a test checks it against postcard).
const CIPHERTEXT_LIMB_TAG: u8 = 3;

/// [`read_frame_streamed`] for server frames, with a bulk path for limb frames: their header
/// is read field by field and their packed words unpacked 64 bytes at a time, where postcard
/// would take them one byte at a time through serde (about 150 instructions a byte on a
/// Cortex-M4, against about 10). Every other frame goes through postcard. Accepts and refuses
/// exactly what postcard does for the frames a server sends (tested).
pub fn read_server_frame_streamed<R: embedded_io::Read>(
    r: &mut R,
    clock: Option<fn() -> u64>,
) -> Result<Streamed<messages::ServerFrame>> {
    let mut b = Bounded::open(r, clock)?;
    let malformed = Error::Decode("malformed frame");
    let tag = b.byte().ok_or(malformed.clone())?;
    let msg = if tag == CIPHERTEXT_LIMB_TAG {
        limb_frame(&mut b).ok_or(malformed)?
    } else {
        let mut scratch = alloc::vec![0u8; STREAM_SCRATCH];
        let prefixed = Prefixed {
            first: Some(tag),
            rest: &mut b,
        };
        postcard::from_eio::<messages::ServerFrame, _>((prefixed, &mut scratch))
            .map_err(|_| malformed)?
            .0
    };
    b.finish(msg)
}

/// The rest of a `CiphertextLimb` frame after its tag, in postcard's layout: ct (varint),
/// component (byte), scale (8 bytes), limbs (varint), then the limb: index (varint), word
/// count (varint), bit width (byte), packed length (varint), packed bytes.
fn limb_frame<R: embedded_io::Read>(b: &mut Bounded<'_, R>) -> Option<messages::ServerFrame> {
    let ct = b.varint(3)?;
    let component = b.byte()?;
    let mut f = [0u8; 8];
    embedded_io::Read::read_exact(b, &mut f).ok()?;
    let scale = f64::from_le_bytes(f);
    let limbs = b.varint(3)?;
    let index = b.varint(3)?;
    let count = b.varint(5)?;
    let bits = b.byte()?;
    let packed = b.varint(5)?;
    let (ct, limbs, index) = (
        u16::try_from(ct).ok()?,
        u16::try_from(limbs).ok()?,
        u16::try_from(index).ok()?,
    );
    let (count, bits) = (count as usize, u32::from(bits));
    if count > crate::ring::serde_limbs::MAX_WORDS
        || bits > 64
        || packed as usize != crate::ring::serde_limbs::packed_len(count, bits)
    {
        return None;
    }
    let words = crate::ring::serde_limbs::unpack_chunks(count, bits, |buf| {
        embedded_io::Read::read(b, buf).ok()
    })?;
    Some(messages::ServerFrame::CiphertextLimb {
        ct,
        component,
        scale,
        limbs,
        limb: messages::Limb { index, words },
    })
}

/// A reader that gives back one byte already taken, then the rest.
struct Prefixed<'a, R> {
    first: Option<u8>,
    rest: &'a mut R,
}

impl<R: embedded_io::Read> embedded_io::ErrorType for Prefixed<'_, R> {
    type Error = embedded_io::ErrorKind;
}

impl<R: embedded_io::Read> embedded_io::Read for Prefixed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> core::result::Result<usize, Self::Error> {
        match (self.first.take(), buf.first_mut()) {
            (Some(b), Some(slot)) => {
                *slot = b;
                Ok(1)
            }
            (first, _) => {
                self.first = first;
                self.rest
                    .read(buf)
                    .map_err(|_| embedded_io::ErrorKind::Other)
            }
        }
    }
}

/// A reader that ends after `left` more bytes (one frame's body), timing its reads. It reads
/// ahead in chunks: postcard asks for one byte at a time, and timing every byte would cost more
/// than decoding it.
struct Bounded<'a, R> {
    r: &'a mut R,
    left: usize,
    clock: Option<fn() -> u64>,
    ticks: u64,
    ahead: [u8; READ_AHEAD],
    pos: usize,
    filled: usize,
    /// The body's length.
    len: usize,
}

/// Bytes read ahead by a streamed read.
const READ_AHEAD: usize = 64;

impl<'a, R: embedded_io::Read> Bounded<'a, R> {
    /// Reads a frame's length prefix and bounds the reader to its body.
    fn open(r: &'a mut R, clock: Option<fn() -> u64>) -> Result<Self> {
        let mut prefix = [0; LEN_PREFIX];
        let t = clock.map_or(0, |c| c());
        r.read_exact(&mut prefix).map_err(|_| Error::Io)?;
        let ticks = clock.map_or(0, |c| c()) - t;
        let left = frame_len(prefix)?;
        Ok(Self {
            r,
            left,
            clock,
            ticks,
            ahead: [0; READ_AHEAD],
            pos: 0,
            filled: 0,
            len: left,
        })
    }

    /// The frame's message, once its body is used up exactly.
    fn finish<T>(self, msg: T) -> Result<Streamed<T>> {
        if self.left != 0 || self.pos != self.filled {
            return Err(Error::Decode("frame longer than its message"));
        }
        Ok(Streamed {
            msg,
            bytes: LEN_PREFIX + self.len,
            io_ticks: self.ticks,
        })
    }

    fn byte(&mut self) -> Option<u8> {
        let mut b = [0u8; 1];
        embedded_io::Read::read_exact(self, &mut b).ok()?;
        Some(b[0])
    }

    /// An unsigned LEB128 varint of at most `max_bytes` bytes, as postcard writes them
    /// (a u16 takes up to 3, a u32 up to 5); bits past 32 are refused.
    fn varint(&mut self, max_bytes: u32) -> Option<u32> {
        let mut v = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(v).ok();
            }
        }
        None
    }
}

impl<R: embedded_io::Read> embedded_io::ErrorType for Bounded<'_, R> {
    type Error = embedded_io::ErrorKind;
}

impl<R: embedded_io::Read> embedded_io::Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> core::result::Result<usize, Self::Error> {
        if self.pos == self.filled {
            let take = READ_AHEAD.min(self.left);
            if take == 0 {
                return Ok(0);
            }
            let t = self.clock.map_or(0, |c| c());
            self.r
                .read_exact(&mut self.ahead[..take])
                .map_err(|_| embedded_io::ErrorKind::Other)?;
            self.ticks += self.clock.map_or(0, |c| c()) - t;
            self.left -= take;
            (self.pos, self.filled) = (0, take);
        }
        let n = buf.len().min(self.filled - self.pos);
        buf[..n].copy_from_slice(&self.ahead[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Hello { version: u16 },
        Limb(Vec<u64>),
        Error { code: ErrorCode, message: String },
    }

    #[test]
    fn the_bulk_limb_path_decodes_as_postcard_does() {
        use messages::{Limb, ServerFrame};
        use ErrorCode as Code;
        let limb = |bits: u32, n: u64| ServerFrame::CiphertextLimb {
            ct: 300,
            component: 1,
            scale: 2f64.powi(116),
            limbs: 3,
            limb: Limb {
                index: 2,
                words: (0..n)
                    .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits.max(1)))
                    .map(|w| if bits == 0 { 0 } else { w })
                    .collect(),
            },
        };
        let mut frames = vec![
            ServerFrame::KeysAccepted,
            ServerFrame::Error {
                code: Code::Busy,
                message: "x".repeat(200),
            },
        ];
        for bits in [0, 1, 13, 43, 56, 57, 61, 64] {
            frames.push(limb(bits, 1000));
        }
        frames.push(limb(43, 0));
        for f in &frames {
            let mut bytes = Vec::new();
            encode_frame(f, &mut bytes).unwrap();
            assert_eq!(
                bytes[4] == CIPHERTEXT_LIMB_TAG,
                matches!(f, ServerFrame::CiphertextLimb { .. })
            );
            let got = read_server_frame_streamed(&mut bytes.as_slice(), None).unwrap();
            assert_eq!(&got.msg, f);
            assert_eq!(got.bytes, bytes.len());
            // Every corruption of a limb frame: the bulk path and postcard agree on refusing.
            if matches!(f, ServerFrame::CiphertextLimb { .. }) {
                for at in [5, 6, 7, 16, 17, 18, 19, 20, 21, 22, bytes.len() - 1] {
                    if at >= bytes.len() {
                        continue;
                    }
                    for flip in [0x01u8, 0x80, 0xff] {
                        let mut bad = bytes.clone();
                        bad[at] ^= flip;
                        let ours = read_server_frame_streamed(&mut bad.as_slice(), None).ok();
                        let theirs = decode_payload::<ServerFrame>(&bad[4..]).ok();
                        assert_eq!(ours.map(|s| s.msg), theirs, "byte {at} ^ {flip:#x}");
                    }
                }
            }
        }
    }

    #[test]
    fn streamed_reads_decode_frames_without_a_frame_buffer() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Limbed {
            index: u16,
            #[serde(with = "crate::ring::serde_limbs")]
            words: Vec<u64>,
            note: String,
        }
        let msgs = [
            Limbed {
                index: 3,
                words: (0..8192u64)
                    .map(|i| (i * 0x9e37_79b9) % (1 << 43))
                    .collect(),
                note: "x".repeat(200),
            },
            Limbed {
                index: 0,
                words: vec![0; 16],
                note: String::new(),
            },
        ];
        let mut stream = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut stream).unwrap();
        }
        let mut rest = &stream[..];
        for m in &msgs {
            let got = read_frame_streamed::<_, Limbed>(&mut rest, None).unwrap();
            assert_eq!(&got.msg, m);
        }
        assert!(rest.is_empty());
        // A frame whose body is longer than its message, and one cut short.
        let mut long = stream.clone();
        let len = u32::from_le_bytes(long[..4].try_into().unwrap()) + 1;
        long[..4].copy_from_slice(&len.to_le_bytes());
        long.insert(4 + len as usize - 1, 0);
        assert!(read_frame_streamed::<_, Limbed>(&mut &long[..], None).is_err());
        assert!(read_frame_streamed::<_, Limbed>(&mut &stream[..100], None).is_err());
    }

    #[test]
    fn frames_round_trip_and_split() {
        let msgs = [
            Msg::Hello { version: 1 },
            Msg::Limb((0..16384).collect()),
            Msg::Error {
                code: ErrorCode::BadKey,
                message: "digit 2 missing".into(),
            },
        ];
        let mut stream = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut stream).unwrap();
        }
        let mut rest = &stream[..];
        for m in &msgs {
            let (payload, tail) = split_frame(rest).unwrap().unwrap();
            assert_eq!(&decode_payload::<Msg>(payload).unwrap(), m);
            rest = tail;
        }
        assert!(rest.is_empty());
        // Every proper prefix of a frame is incomplete, not an error.
        let mut one = Vec::new();
        encode_frame(&msgs[1], &mut one).unwrap();
        for cut in [0, 3, 4, 100, one.len() - 1] {
            assert_eq!(split_frame(&one[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn hostile_frames_are_errors() {
        // Over the limit, and zero, are rejected from the prefix alone.
        let big = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes();
        assert!(matches!(
            split_frame(&big),
            Err(Error::FrameTooLarge { .. })
        ));
        assert!(matches!(
            frame_len([0; 4]),
            Err(Error::FrameTooLarge { len: 0 })
        ));
        // Garbage and trailing bytes.
        let mut f = Vec::new();
        encode_frame(&Msg::Hello { version: 1 }, &mut f).unwrap();
        let mut trailing = f[LEN_PREFIX..].to_vec();
        trailing.push(0);
        assert!(decode_payload::<Msg>(&trailing).is_err());
        assert!(decode_payload::<Msg>(&[0xff, 0xff, 0xff]).is_err());
        // A message too large for one frame is refused when encoding, leaving `out` as it was.
        let mut out = vec![7u8];
        let err = encode_frame(&Msg::Limb(vec![u64::MAX; MAX_FRAME_LEN / 8]), &mut out);
        assert!(matches!(err, Err(Error::FrameTooLarge { .. })));
        assert_eq!(out, [7]);
    }

    #[test]
    fn streams_read_and_write_frames() {
        let mut wire: Vec<u8> = Vec::new();
        write_frame(&mut wire, &Msg::Hello { version: 1 }).unwrap();
        write_frame(&mut wire, &Msg::Limb(vec![1, 2, 3])).unwrap();
        // Streaming writes the bytes `encode_frame` builds in memory, small pieces and a limb
        // larger than the writer's chunk alike.
        let big = Msg::Limb((0..1000u64).map(|i| i * 0x0123_4567_89ab).collect());
        let mut streamed: Vec<u8> = Vec::new();
        write_frame(&mut streamed, &big).unwrap();
        let mut built = Vec::new();
        encode_frame(&big, &mut built).unwrap();
        assert_eq!(streamed, built);
        let mut refused: Vec<u8> = Vec::new();
        let err = write_frame(&mut refused, &Msg::Limb(vec![u64::MAX; MAX_FRAME_LEN / 8]));
        assert!(matches!(err, Err(Error::FrameTooLarge { .. })));
        assert!(refused.is_empty());
        let mut reader = &wire[..];
        let mut buf = Vec::new();
        assert_eq!(
            read_frame::<_, Msg>(&mut reader, &mut buf).unwrap(),
            Msg::Hello { version: 1 }
        );
        assert_eq!(
            read_frame::<_, Msg>(&mut reader, &mut buf).unwrap(),
            Msg::Limb(vec![1, 2, 3])
        );
        // The stream ends: an I/O error, not a panic.
        assert_eq!(read_frame::<_, Msg>(&mut reader, &mut buf), Err(Error::Io));
        // A truncated frame is an I/O error too.
        let mut cut = &wire[..wire.len() - 2];
        read_frame::<_, Msg>(&mut cut, &mut buf).unwrap();
        assert_eq!(read_frame::<_, Msg>(&mut cut, &mut buf), Err(Error::Io));
    }
}
