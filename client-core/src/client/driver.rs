//! Runs a [`ClientSession`] over a blocking byte stream (`embedded-io`): a UART on the device, a
//! TCP socket on the host. The one frame loop of the client: read a frame, hand it to the
//! session, write what it sends, report its events.

use alloc::vec::Vec;

use embedded_io::{Read, Write};
use rand_core::CryptoRng;

use super::backend::Backend;
use super::session::{ClientSession, Event};
use crate::error::{Error, Result};
use crate::wire::messages::ServerFrame;
use crate::wire::{read_frame, read_server_frame_streamed, write_frame};

/// A byte stream with frame counts, and the read buffer.
pub struct Link<T> {
    io: T,
    buf: Vec<u8>,
    keep_buffer: bool,
    clock: Option<fn() -> u64>,
    /// Clock ticks spent reading and writing the stream (with [`Link::with_clock`]).
    pub io_ticks: u64,
    /// Bytes written (length prefixes included).
    pub bytes_up: u64,
    /// Bytes read.
    pub bytes_down: u64,
}

impl<T: Read + Write> Link<T> {
    /// A link over `io`. With `keep_buffer` true frames are read into a buffer kept between
    /// frames and decoded from it (fast; a host). With it false each frame is decoded as its
    /// bytes arrive and no frame buffer exists ([`read_server_frame_streamed`]; a device).
    pub fn new(io: T, keep_buffer: bool) -> Self {
        Self {
            io,
            buf: Vec::new(),
            keep_buffer,
            clock: None,
            io_ticks: 0,
            bytes_up: 0,
            bytes_down: 0,
        }
    }

    /// Counts the ticks of `clock` (any monotonic counter: nanoseconds, instructions) spent in
    /// reads and writes, so that callers can tell computation from waiting.
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = Some(clock);
        self
    }

    fn now(&self) -> u64 {
        self.clock.map_or(0, |c| c())
    }

    /// The stream.
    pub fn io(&mut self) -> &mut T {
        &mut self.io
    }

    /// Gives the stream back.
    pub fn into_inner(self) -> T {
        self.io
    }

    /// Sends one frame.
    pub fn send<M: serde::Serialize>(&mut self, frame: &M) -> Result<()> {
        let t = self.now();
        let written = write_frame(&mut self.io, frame);
        self.io_ticks += self.now() - t;
        self.bytes_up += written? as u64;
        Ok(())
    }

    /// Receives one server frame.
    pub fn receive(&mut self) -> Result<ServerFrame> {
        if !self.keep_buffer {
            let got = read_server_frame_streamed(&mut self.io, self.clock)?;
            self.io_ticks += got.io_ticks;
            self.bytes_down += got.bytes as u64;
            return Ok(got.msg);
        }
        let t = self.now();
        let frame = read_frame(&mut self.io, &mut self.buf);
        self.io_ticks += self.now() - t;
        self.bytes_down += (crate::wire::LEN_PREFIX + self.buf.len()) as u64;
        if !self.keep_buffer {
            self.buf = Vec::new();
        }
        frame
    }

    /// Feeds received frames to `session` until one yields an event other than
    /// [`Event::Pending`], which `on_event` sees first.
    fn pump<B, R>(
        &mut self,
        session: &mut ClientSession<B>,
        rng: &mut R,
        on_event: &mut impl FnMut(&Event, &mut Self),
    ) -> Result<Event>
    where
        B: Backend,
        R: CryptoRng + ?Sized,
    {
        loop {
            let frame = self.receive()?;
            let event = session.on_frame(frame, rng, |f| self.send(f))?;
            if event != Event::Pending {
                on_event(&event, self);
                return Ok(event);
            }
        }
    }

    /// Says hello and uploads the keys if the server does not hold them; returns once the
    /// session is ready for inferences.
    pub fn connect<B, R>(
        &mut self,
        session: &mut ClientSession<B>,
        rng: &mut R,
        mut on_event: impl FnMut(&Event, &mut Self),
    ) -> Result<()>
    where
        B: Backend,
        R: CryptoRng + ?Sized,
    {
        let event = session.hello(|f| self.send(f))?;
        on_event(&event, self);
        loop {
            if self.pump(session, rng, &mut on_event)? == Event::Ready {
                return Ok(());
            }
        }
    }

    /// One private inference of `input`; returns the output values.
    pub fn infer<B, R>(
        &mut self,
        session: &mut ClientSession<B>,
        input: &[f64],
        rng: &mut R,
        mut on_event: impl FnMut(&Event, &mut Self),
    ) -> Result<Vec<f64>>
    where
        B: Backend,
        R: CryptoRng + ?Sized,
    {
        let event = session.start_inference(input, rng, |f| self.send(f))?;
        on_event(&event, self);
        loop {
            match self.pump(session, rng, &mut on_event)? {
                Event::Output(values) => return Ok(values),
                Event::RoundAnswered(_) => {}
                _ => return Err(Error::Decode("unexpected event during an inference")),
            }
        }
    }
}
