//! The TCP transport: tokio tasks move frames between sockets and [`ServerSession`]s; the HE
//! work runs on blocking threads, at most `he_slots` frames at a time.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use client_core::wire::messages::{ClientFrame, ServerFrame};
use client_core::wire::{decode_payload, encode_frame, frame_len, ErrorCode, LEN_PREFIX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::session::{ServerSession, Service, SessionError};

/// Limits of the server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Sessions served at once; further connections get `Busy` and are closed.
    pub max_sessions: usize,
    /// Frames whose HE work runs at once (the blocking pool's share).
    pub he_slots: usize,
    /// Time allowed for the client's hello.
    pub handshake_timeout: Duration,
    /// Time allowed between two frames of a session.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 64,
            he_slots: 2,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Why reading a frame failed.
enum ReadError {
    Closed,
    Timeout,
    Bad(SessionError),
}

async fn read_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    wait: Duration,
) -> Result<ClientFrame, ReadError> {
    let mut prefix = [0u8; LEN_PREFIX];
    match timeout(wait, rd.read_exact(&mut prefix)).await {
        Err(_) => return Err(ReadError::Timeout),
        Ok(Err(_)) => return Err(ReadError::Closed),
        Ok(Ok(_)) => {}
    }
    let len = frame_len(prefix).map_err(|e| {
        ReadError::Bad(SessionError {
            code: ErrorCode::FrameTooLarge,
            message: e.to_string(),
        })
    })?;
    buf.clear();
    buf.resize(len, 0);
    match timeout(wait, rd.read_exact(buf)).await {
        Err(_) => return Err(ReadError::Timeout),
        Ok(Err(_)) => return Err(ReadError::Closed),
        Ok(Ok(_)) => {}
    }
    decode_payload(buf).map_err(|e| {
        ReadError::Bad(SessionError {
            code: ErrorCode::Malformed,
            message: e.to_string(),
        })
    })
}

async fn write_frames(wr: &mut OwnedWriteHalf, frames: &[ServerFrame]) -> io::Result<()> {
    let mut bytes = Vec::new();
    for f in frames {
        bytes.clear();
        encode_frame(f, &mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        wr.write_all(&bytes).await?;
    }
    wr.flush().await
}

async fn send_error(wr: &mut OwnedWriteHalf, code: ErrorCode, message: &str) {
    // The peer may be gone already; nothing more to do then.
    let _ = write_frames(wr, &[ServerFrame::error(code, message)]).await;
}

async fn handle(svc: &'static Service, stream: TcpStream, limits: Limits, he: Arc<Semaphore>) {
    let peer = stream.peer_addr().ok();
    let (mut rd, mut wr) = stream.into_split();
    let mut seed = [0u8; 32];
    if getrandom::fill(&mut seed).is_err() {
        send_error(&mut wr, ErrorCode::Internal, "no entropy").await;
        return;
    }
    let mut session = ServerSession::new(svc, seed);
    let mut buf = Vec::new();
    let mut first = true;
    let mut inferences = 0;
    loop {
        let wait = if first {
            limits.handshake_timeout
        } else {
            limits.idle_timeout
        };
        first = false;
        let frame = match read_frame(&mut rd, &mut buf, wait).await {
            Ok(f) => f,
            Err(ReadError::Closed) => break,
            Err(ReadError::Timeout) => {
                tracing::info!(?peer, "session timed out");
                send_error(&mut wr, ErrorCode::Timeout, "no frame in time").await;
                break;
            }
            Err(ReadError::Bad(e)) => {
                tracing::info!(?peer, code = ?e.code, "bad frame");
                send_error(&mut wr, e.code, &e.message).await;
                break;
            }
        };
        let Ok(permit) = he.clone().acquire_owned().await else {
            break;
        };
        let work = tokio::task::spawn_blocking(move || {
            let result = session.on_frame(frame);
            drop(permit);
            (session, result)
        });
        let Ok((s, result)) = work.await else {
            send_error(&mut wr, ErrorCode::Internal, "session task failed").await;
            break;
        };
        session = s;
        inferences = session.inferences;
        match result {
            Ok(frames) => {
                if write_frames(&mut wr, &frames).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::info!(?peer, code = ?e.code, message = %e.message, "session error");
                send_error(&mut wr, e.code, &e.message).await;
                break;
            }
        }
        if session.is_closed() {
            break;
        }
    }
    tracing::debug!(?peer, inferences, "session ended");
}

/// Accepts connections on `listener` until `shutdown` completes; sessions in progress are
/// dropped then. `svc` lives for the whole process.
pub async fn serve(
    svc: &'static Service,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let sessions = Arc::new(Semaphore::new(limits.max_sessions));
    let he = Arc::new(Semaphore::new(limits.he_slots.max(1)));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return Ok(());
            }
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let Ok(permit) = sessions.clone().try_acquire_owned() else {
                    let (_, mut wr) = stream.into_split();
                    send_error(&mut wr, ErrorCode::Busy, "too many sessions").await;
                    continue;
                };
                let he = he.clone();
                tokio::spawn(async move {
                    handle(svc, stream, limits, he).await;
                    drop(permit);
                });
            }
        }
    }
}
