//! A blocking host client over TCP: `client_core`'s state machine plus frames on a socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use client_core::encoding::Encoder;
use client_core::keys::{
    galois_element_for_rotation, KeyKind, PublicKey, SecretKey, SwitchingKeyGenerator,
};
use client_core::protocol::{ClientStep, InferenceClient, InputSpec};
use client_core::ring::Context;
use client_core::sampling::Csprng;
use client_core::wire::convert::{client_frames, public_key_frames, ServerMessageAssembler};
use client_core::wire::messages::{ClientFrame, KeyId, ServerFrame};
use client_core::wire::{
    decode_payload, encode_frame, frame_len, ErrorCode, LEN_PREFIX, PROTOCOL_VERSION,
};

/// The server ended the session with an error frame.
#[derive(Debug, thiserror::Error)]
#[error("server error {code:?}: {message}")]
pub struct ServerRefused {
    /// Its stable code.
    pub code: ErrorCode,
    /// Its message.
    pub message: String,
}

/// True if trying again later may succeed: the connection failed or broke, or the server was
/// busy, timed out or failed internally. Refusals of what the client sent (version, keys,
/// ciphertexts) and a server that speaks nonsense would only repeat.
pub fn is_retryable(err: &anyhow::Error) -> bool {
    if let Some(r) = err.downcast_ref::<ServerRefused>() {
        return matches!(
            r.code,
            ErrorCode::Busy | ErrorCode::Timeout | ErrorCode::Internal
        );
    }
    err.downcast_ref::<std::io::Error>().is_some()
}

/// Byte counts and times of a connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    /// Bytes sent.
    pub up: usize,
    /// Bytes received.
    pub down: usize,
}

/// A connected client with its keys.
pub struct Connection<'a> {
    ctx: &'a Context,
    encoder: &'a Encoder,
    sk: &'a SecretKey,
    stream: TcpStream,
    buf: Vec<u8>,
    input: InputSpec,
    /// Bytes so far.
    pub traffic: Traffic,
    /// Bytes of the key upload (0 if the server knew the keys).
    pub key_upload: usize,
    /// Round trips of the last inference (server messages before the output).
    pub last_rounds: usize,
}

impl<'a> Connection<'a> {
    /// Connects, says hello and uploads the keys unless the server knows `pk`'s key id.
    pub fn open(
        addr: &str,
        ctx: &'a Context,
        encoder: &'a Encoder,
        sk: &'a SecretKey,
        pk: &PublicKey,
        rng: &mut Csprng,
    ) -> Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        stream.set_nodelay(true)?;
        let mut conn = Self {
            ctx,
            encoder,
            sk,
            stream,
            buf: Vec::new(),
            input: InputSpec {
                len: 0,
                period: 1,
                shift: 0,
                copies: 1,
                scale: 1.0,
                level: 0,
                gather: None,
            },
            traffic: Traffic::default(),
            key_upload: 0,
            last_rounds: 0,
        };
        let key_id: KeyId = pk.key_id(ctx);
        conn.send(&[ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            presets: vec![ctx.params().name().into()],
            key_id: Some(key_id),
        }])?;
        let ServerFrame::Hello {
            input,
            rotations,
            keys_known,
            ..
        } = conn.receive()?
        else {
            bail!("expected the server's hello");
        };
        conn.input = input;
        if !keys_known {
            let before = conn.traffic.up;
            conn.upload(pk, &rotations, key_id, rng)?;
            conn.key_upload = conn.traffic.up - before;
        }
        Ok(conn)
    }

    fn send(&mut self, frames: &[ClientFrame]) -> Result<()> {
        let mut bytes = Vec::new();
        for f in frames {
            encode_frame(f, &mut bytes)?;
        }
        self.stream.write_all(&bytes)?;
        self.traffic.up += bytes.len();
        Ok(())
    }

    fn receive(&mut self) -> Result<ServerFrame> {
        let mut prefix = [0u8; LEN_PREFIX];
        self.stream
            .read_exact(&mut prefix)
            .context("connection closed by the server")?;
        let len = frame_len(prefix)?;
        self.buf.resize(len, 0);
        self.stream.read_exact(&mut self.buf)?;
        self.traffic.down += LEN_PREFIX + len;
        let frame: ServerFrame = decode_payload(&self.buf)?;
        frame.validate()?;
        if let ServerFrame::Error { code, message } = frame {
            return Err(ServerRefused { code, message }.into());
        }
        Ok(frame)
    }

    fn upload(
        &mut self,
        pk: &PublicKey,
        rotations: &[i64],
        key_id: KeyId,
        rng: &mut Csprng,
    ) -> Result<()> {
        let n = self.ctx.n();
        let limbs = public_key_frames(pk, n);
        self.send(&limbs)?;
        let mut kinds = vec![KeyKind::Relinearization];
        kinds.extend(
            rotations
                .iter()
                .map(|&r| KeyKind::Galois(galois_element_for_rotation(n, r))),
        );
        for kind in kinds {
            // One key at a time, one limb per frame: the client never holds a whole key.
            let g = SwitchingKeyGenerator::new(self.ctx, self.sk, kind, rng)?;
            self.send(&[ClientFrame::KeyBegin {
                kind,
                seed: g.seed(),
            }])?;
            for chunk in g.chunks() {
                self.send(&[ClientFrame::KeyChunk(chunk?)])?;
            }
        }
        self.send(&[ClientFrame::KeysDone { key_id }])?;
        match self.receive()? {
            ServerFrame::KeysAccepted => Ok(()),
            other => Err(anyhow!("expected the keys to be accepted, got {other:?}")),
        }
    }

    /// One private inference; returns the output values and the client's compute time.
    pub fn infer(&mut self, x: &[f64], rng: &mut Csprng) -> Result<(Vec<f64>, Duration)> {
        self.infer_with(x, rng, || {})
    }

    /// Like [`Connection::infer`], calling `input_sent` once the encrypted input is on its way.
    pub fn infer_with(
        &mut self,
        x: &[f64],
        rng: &mut Csprng,
        mut input_sent: impl FnMut(),
    ) -> Result<(Vec<f64>, Duration)> {
        let mut client = InferenceClient::new(self.ctx, self.encoder, self.sk);
        let t = Instant::now();
        let mut outgoing = client.start(x, &self.input, rng)?;
        let mut busy = t.elapsed();
        let mut first = true;
        self.last_rounds = 0;
        loop {
            let frames = client_frames(&outgoing, self.ctx.n())?;
            self.send(&frames)?;
            if std::mem::take(&mut first) {
                input_sent();
            }
            let mut asm = ServerMessageAssembler::default();
            let msg = loop {
                let frame = self.receive()?;
                if let Some(m) = asm.push(self.ctx, frame)? {
                    break m;
                }
            };
            let t = Instant::now();
            let step = client.handle(&msg, rng)?;
            busy += t.elapsed();
            match step {
                ClientStep::Done(out) => return Ok((out, busy)),
                ClientStep::Reply(r) => {
                    self.last_rounds += 1;
                    outgoing = r;
                }
            }
        }
    }

    /// Says goodbye.
    pub fn close(mut self) -> Result<()> {
        self.send(&[ClientFrame::Bye])
    }
}
