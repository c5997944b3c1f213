//! A blocking host client over TCP: the session, its host backend and a [`Link`] on a socket.

use std::net::TcpStream;
use std::string::{String, ToString};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use std::vec::Vec;

use embedded_io_adapters::std::FromStd;

use crate::client::{Backend, ClientSession, Event, HostBackend, KeySeed, Link};
use crate::keys::SecretKey;
use crate::ring::Context;
use crate::sampling::Csprng;
use crate::wire::ErrorCode;

/// Why a host client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be opened.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server ended the session with an error frame.
    #[error("server error {code:?}: {message}")]
    Refused {
        /// Its stable code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The connection broke, or the client or the server broke the protocol.
    #[error("{0}")]
    Protocol(crate::Error),
}

impl ClientError {
    /// True if trying again later may succeed: the connection failed or broke, or the server
    /// was busy, timed out or failed internally. Refusals of what the client sent (version,
    /// keys, ciphertexts) and a server that speaks nonsense would only repeat.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Protocol(crate::Error::Io) => true,
            ClientError::Refused { code, .. } => matches!(
                code,
                ErrorCode::Busy | ErrorCode::Timeout | ErrorCode::Internal
            ),
            ClientError::Protocol(_) => false,
        }
    }
}

/// Nanoseconds on a monotonic clock, for the link's I/O accounting.
fn nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A TCP socket as an `embedded-io` stream.
pub type TcpIo = FromStd<TcpStream>;

/// A connected client session.
pub struct Connection<B: Backend> {
    session: ClientSession<B>,
    link: Link<TcpIo>,
    /// Bytes of the key upload (0 if the server knew the keys).
    pub key_upload: u64,
    /// Round trips of the last inference.
    pub last_rounds: usize,
}

impl<'a> Connection<HostBackend<'a>> {
    /// Connects, says hello and uploads the keys unless the server holds the key id of `seed`
    /// (whose secret key is `sk`). Switching keys draw their randomness from `rng`.
    pub fn open(
        addr: &str,
        ctx: &'a Context,
        sk: &'a SecretKey,
        seed: &KeySeed,
        rng: &mut Csprng,
    ) -> Result<Self, ClientError> {
        let session = ClientSession::new(HostBackend::new(ctx, sk), seed.public_key_rng());
        Self::open_session(addr, session, rng)
    }
}

impl<B: Backend> Connection<B> {
    /// Connects `session` (not yet started) to `addr`, says hello and uploads the keys unless
    /// the server holds them.
    pub fn open_session(
        addr: &str,
        session: ClientSession<B>,
        rng: &mut Csprng,
    ) -> Result<Self, ClientError> {
        let connect = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let stream = TcpStream::connect(addr).map_err(connect)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(300)))
            .map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        let mut conn = Self {
            session,
            link: Link::new(FromStd::new(stream), true).with_clock(nanos),
            key_upload: 0,
            last_rounds: 0,
        };
        let (mut after_hello, mut upload) = (0, 0);
        let result = conn
            .link
            .connect(&mut conn.session, rng, |event, link| match event {
                Event::HelloSent => after_hello = link.bytes_up,
                Event::KeysSent { .. } => upload = link.bytes_up - after_hello,
                _ => {}
            });
        conn.check(result)?;
        conn.key_upload = upload;
        Ok(conn)
    }

    /// The session.
    pub fn session(&self) -> &ClientSession<B> {
        &self.session
    }

    /// Bytes sent and received so far (every frame, length prefixes included).
    pub fn traffic(&self) -> (u64, u64) {
        (self.link.bytes_up, self.link.bytes_down)
    }

    fn check<T>(&self, result: crate::Result<T>) -> Result<T, ClientError> {
        result.map_err(|e| match (e, self.session.refusal()) {
            (crate::Error::Refused(code), Some((_, message))) => ClientError::Refused {
                code,
                message: message.to_string(),
            },
            (e, _) => ClientError::Protocol(e),
        })
    }

    /// One private inference; returns the output values and the client's compute time (time
    /// outside reads and writes of the socket).
    pub fn infer(
        &mut self,
        x: &[f64],
        rng: &mut Csprng,
    ) -> Result<(Vec<f64>, Duration), ClientError> {
        self.infer_with(x, rng, || {})
    }

    /// Like [`Connection::infer`], calling `input_sent` once the encrypted input is on its way.
    pub fn infer_with(
        &mut self,
        x: &[f64],
        rng: &mut Csprng,
        mut input_sent: impl FnMut(),
    ) -> Result<(Vec<f64>, Duration), ClientError> {
        let start = nanos();
        let io_before = self.link.io_ticks;
        let mut rounds = 0;
        let result = self
            .link
            .infer(&mut self.session, x, rng, |event, _| match event {
                Event::InputSent => input_sent(),
                Event::RoundAnswered(_) => rounds += 1,
                _ => {}
            });
        let out = self.check(result)?;
        self.last_rounds = rounds;
        let busy = (nanos() - start).saturating_sub(self.link.io_ticks - io_before);
        Ok((out, Duration::from_nanos(busy)))
    }

    /// Says goodbye.
    pub fn close(mut self) -> Result<(), ClientError> {
        let sent = self.link.send(&crate::wire::messages::ClientFrame::Bye);
        self.check(sent)
    }
}
