//! The in-process transport: a [`ClientSession`] on a host backend, talking to a server in the
//! same process that thinks in whole messages (the server's `Inference`). Every message crosses
//! as the frames TCP would carry, each encoded and decoded with the wire's framing, so the byte
//! counts are the wire's and the client code is the one every transport runs.

use alloc::vec::Vec;

use rand_core::CryptoRng;

use super::backend::HostBackend;
use super::session::{ClientSession, Event, ServerInfo};
use crate::error::{Error, Result};
use crate::keys::SecretKey;
use crate::ring::Context;
use crate::sampling::Csprng;
use crate::wire::assembled::{ClientMessage, ServerMessage};
use crate::wire::convert::{server_frames, ClientMessageAssembler};
use crate::wire::messages::{ClientFrame, ServerFrame};
use crate::wire::{decode_payload, encode_frame, split_frame};

/// What the client does next.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientStep {
    /// Send this to the server.
    Reply(ClientMessage),
    /// The inference is over: the output values.
    Done(Vec<f64>),
}

/// A host client session behind whole-message calls, counting the frames' bytes.
pub struct InProcessClient<'a> {
    session: ClientSession<HostBackend<'a>>,
    ctx: &'a Context,
    /// Bytes of the frames sent (length prefixes included).
    pub bytes_up: usize,
    /// Bytes of the frames received.
    pub bytes_down: usize,
    clock: Option<fn() -> u64>,
    /// Ticks of the clock ([`InProcessClient::with_clock`]) spent building, encoding, decoding
    /// and assembling frames: the transport's share, not the client's.
    pub transport_ticks: u64,
}

/// Encodes `frame` as the wire does and decodes it again: what the peer receives.
fn through_wire<T>(frame: &T, bytes: &mut usize) -> Result<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut buf = Vec::new();
    encode_frame(frame, &mut buf)?;
    *bytes += buf.len();
    let (payload, _) = split_frame(&buf)?.ok_or(Error::Decode("incomplete frame"))?;
    decode_payload(payload)
}

impl<'a> InProcessClient<'a> {
    /// A client with keys `sk` for a server whose hello says `server` and which holds the keys.
    pub fn new(ctx: &'a Context, sk: &'a SecretKey, server: ServerInfo) -> Self {
        // The public key is not sent in-process; its generator is never drawn from.
        let unused = <Csprng as rand_core::SeedableRng>::from_seed([0; 32]);
        Self {
            session: ClientSession::ready(HostBackend::new(ctx, sk), unused, server),
            ctx,
            bytes_up: 0,
            bytes_down: 0,
            clock: None,
            transport_ticks: 0,
        }
    }

    /// Counts the ticks of `clock` (any monotonic counter) spent on frames, so that callers can
    /// tell the client's work from the in-process transport's.
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = Some(clock);
        self
    }

    fn now(&self) -> u64 {
        self.clock.map_or(0, |c| c())
    }

    /// The session underneath.
    pub fn session(&self) -> &ClientSession<HostBackend<'a>> {
        &self.session
    }

    /// Encrypts the input; returns the message the server receives.
    pub fn start<R: CryptoRng + ?Sized>(
        &mut self,
        input: &[f64],
        rng: &mut R,
    ) -> Result<ClientMessage> {
        let mut frames = Vec::new();
        self.session
            .start_inference(input, rng, |f| Self::collect(&mut frames, f))?;
        self.assemble(frames)?
            .ok_or(Error::Decode("the input did not form a message"))
    }

    /// Handles a server message; returns the reply or the output.
    pub fn handle<R: CryptoRng + ?Sized>(
        &mut self,
        msg: &ServerMessage,
        rng: &mut R,
    ) -> Result<ClientStep> {
        let mut frames = Vec::new();
        let t = self.now();
        let server = server_frames(msg, self.ctx.n())?;
        self.transport_ticks += self.now() - t;
        for frame in server {
            let t = self.now();
            let frame: ServerFrame = through_wire(&frame, &mut self.bytes_down)?;
            self.transport_ticks += self.now() - t;
            let event = self
                .session
                .on_frame(frame, rng, |f| Self::collect(&mut frames, f))?;
            match event {
                Event::Output(values) => return Ok(ClientStep::Done(values)),
                Event::RoundAnswered(_) => {
                    let reply = self
                        .assemble(core::mem::take(&mut frames))?
                        .ok_or(Error::Decode("the reply did not form a message"))?;
                    return Ok(ClientStep::Reply(reply));
                }
                _ => {}
            }
        }
        Err(Error::Decode(
            "the server's message ended without a reply or output",
        ))
    }

    fn collect(frames: &mut Vec<ClientFrame>, f: &ClientFrame) -> Result<()> {
        frames.push(f.clone());
        Ok(())
    }

    fn assemble(&mut self, frames: Vec<ClientFrame>) -> Result<Option<ClientMessage>> {
        let t = self.now();
        let msg = self.assemble_untimed(frames);
        self.transport_ticks += self.now() - t;
        msg
    }

    fn assemble_untimed(&mut self, frames: Vec<ClientFrame>) -> Result<Option<ClientMessage>> {
        let mut asm = ClientMessageAssembler::default();
        let mut msg = None;
        for f in frames {
            let f: ClientFrame = through_wire(&f, &mut self.bytes_up)?;
            if let Some(m) = asm.push(self.ctx, f)? {
                msg = Some(m);
            }
        }
        Ok(msg)
    }
}
