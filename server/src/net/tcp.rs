//! The TCP transport: tokio tasks move frames between sockets and [`ServerSession`]s; the HE
//! work runs on blocking threads, at most `he_slots` frames at a time.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client_core::wire::messages::{ClientFrame, ServerFrame};
use client_core::wire::{decode_payload, encode_frame, frame_len, ErrorCode, LEN_PREFIX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{timeout, timeout_at};

use super::metrics::Metrics;
use super::session::{ServerSession, Service, SessionError, DEFAULT_MAX_MESSAGE_BYTES};

/// Limits of the server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Sessions served at once; further connections get `Busy` and are closed.
    pub max_sessions: usize,
    /// Frames whose HE work runs at once (the blocking pool's share).
    pub he_slots: usize,
    /// Time allowed for the client's hello.
    pub handshake_timeout: Duration,
    /// Time allowed between two frames of a session, and for writing one frame.
    pub idle_timeout: Duration,
    /// Time the client has to answer a round completely, from the moment it was sent.
    pub round_timeout: Duration,
    /// Largest ciphertext message held for a session (its bytes in flight).
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 64,
            he_slots: 2,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            round_timeout: Duration::from_secs(30),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// Why reading a frame failed.
enum ReadError {
    Closed,
    Timeout,
    Bad(SessionError),
}

/// Reads one frame, prefix and body, before `deadline`.
async fn read_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<ClientFrame, ReadError> {
    let read = async {
        let mut prefix = [0u8; LEN_PREFIX];
        rd.read_exact(&mut prefix)
            .await
            .map_err(|_| ReadError::Closed)?;
        let len = frame_len(prefix).map_err(|e| {
            ReadError::Bad(SessionError::new(ErrorCode::FrameTooLarge, e.to_string()))
        })?;
        buf.clear();
        buf.resize(len, 0);
        rd.read_exact(buf).await.map_err(|_| ReadError::Closed)?;
        Ok(())
    };
    match timeout_at(deadline.into(), read).await {
        Err(_) => return Err(ReadError::Timeout),
        Ok(r) => r?,
    }
    decode_payload(buf)
        .map_err(|e| ReadError::Bad(SessionError::new(ErrorCode::Malformed, e.to_string())))
}

async fn write_frames(
    wr: &mut OwnedWriteHalf,
    frames: &[ServerFrame],
    wait: Duration,
    metrics: &Metrics,
) -> io::Result<()> {
    let mut bytes = Vec::new();
    for f in frames {
        encode_frame(f, &mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    }
    // A peer that does not read cannot hold the session forever.
    timeout(wait, async {
        wr.write_all(&bytes).await?;
        wr.flush().await
    })
    .await
    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    metrics.bytes_sent.inc_by(bytes.len() as u64);
    Ok(())
}

async fn send_error(wr: &mut OwnedWriteHalf, e: &SessionError, metrics: &Metrics) {
    metrics.error(e.code);
    // The peer may be gone already; nothing more to do then.
    let _ = write_frames(wr, &[e.frame()], Duration::from_secs(5), metrics).await;
}

async fn send_code(wr: &mut OwnedWriteHalf, code: ErrorCode, message: &str, metrics: &Metrics) {
    send_error(wr, &SessionError::new(code, message), metrics).await;
}

/// Runs `f` on the session on a blocking thread, once an HE slot is free.
async fn on_blocking<T: Send + 'static>(
    he: &Arc<Semaphore>,
    mut session: ServerSession<'static>,
    f: impl FnOnce(&mut ServerSession<'static>) -> T + Send + 'static,
) -> Option<(ServerSession<'static>, T)> {
    let permit = he.clone().acquire_owned().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let out = f(&mut session);
        drop(permit);
        (session, out)
    })
    .await
    .ok()
}

struct Shared {
    svc: &'static Service,
    limits: Limits,
    he: Arc<Semaphore>,
    metrics: &'static Metrics,
}

async fn handle(shared: Arc<Shared>, stream: TcpStream) {
    let Shared {
        svc,
        limits,
        ref he,
        metrics,
    } = *shared;
    let peer = stream.peer_addr().ok();
    let (mut rd, mut wr) = stream.into_split();
    let mut seed = [0u8; 32];
    if getrandom::fill(&mut seed).is_err() {
        send_code(&mut wr, ErrorCode::Internal, "no entropy", metrics).await;
        return;
    }
    let mut session =
        ServerSession::new(svc, seed).with_max_message_bytes(limits.max_message_bytes);
    let mut buf = Vec::new();
    let mut first = true;
    let mut round_deadline: Option<Instant> = None;
    let mut inference_start: Option<Instant> = None;
    let mut completed = 0;
    loop {
        let deadline = match round_deadline {
            Some(d) => d,
            None if first => Instant::now() + limits.handshake_timeout,
            None => Instant::now() + limits.idle_timeout,
        };
        first = false;
        let frame = match read_frame(&mut rd, &mut buf, deadline).await {
            Ok(f) => f,
            Err(ReadError::Closed) => break,
            Err(ReadError::Timeout) => {
                tracing::info!(?peer, "session timed out");
                send_code(&mut wr, ErrorCode::Timeout, "no frame in time", metrics).await;
                break;
            }
            Err(ReadError::Bad(e)) => {
                tracing::info!(?peer, code = ?e.code, "bad frame");
                send_error(&mut wr, &e, metrics).await;
                break;
            }
        };
        metrics
            .bytes_received
            .inc_by((LEN_PREFIX + buf.len()) as u64);
        let received = Instant::now();
        let (was_running, done_before) = (session.is_running(), session.inferences);
        let was_uploading = session.is_uploading_keys();
        let Some((s, result)) = on_blocking(he, session, move |s| s.on_frame(frame)).await else {
            send_code(&mut wr, ErrorCode::Internal, "session task failed", metrics).await;
            break;
        };
        session = s;
        let frames = match result {
            Ok(frames) => frames,
            Err(e) => {
                tracing::info!(?peer, code = ?e.code, message = %e.message, "session error");
                send_error(&mut wr, &e, metrics).await;
                break;
            }
        };
        if was_uploading && session.is_ready() {
            metrics.key_uploads.inc();
        }
        // An inference starts with the frame that completes its input.
        let started = !was_running && (session.is_running() || session.inferences > done_before);
        if started {
            inference_start = Some(received);
        }
        if write_frames(&mut wr, &frames, limits.idle_timeout, metrics)
            .await
            .is_err()
        {
            break;
        }
        if session.inferences > done_before {
            completed = session.inferences;
            metrics.inferences.inc();
            if let Some(t) = inference_start.take() {
                metrics.observe_latency(t.elapsed());
            }
        }
        round_deadline = match (session.is_running(), frames.is_empty()) {
            (false, _) => None,
            (true, false) => Some(Instant::now() + limits.round_timeout),
            (true, true) => round_deadline,
        };
        if session.is_closed() {
            break;
        }
        if session.wants_prepare() {
            // Frames arriving meanwhile wait in the socket buffer.
            match on_blocking(he, session, |s| s.prepare_next()).await {
                Some((s, ())) => session = s,
                None => break,
            }
        }
    }
    tracing::debug!(?peer, inferences = completed, "session ended");
}

/// Accepts connections on `listener` until `shutdown` completes; sessions in progress are
/// dropped then. `svc` and `metrics` live for the whole process.
pub async fn serve(
    svc: &'static Service,
    listener: TcpListener,
    limits: Limits,
    metrics: &'static Metrics,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let sessions = Arc::new(Semaphore::new(limits.max_sessions));
    let shared = Arc::new(Shared {
        svc,
        limits,
        he: Arc::new(Semaphore::new(limits.he_slots.max(1))),
        metrics,
    });
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
                    send_code(&mut wr, ErrorCode::Busy, "too many sessions", metrics).await;
                    continue;
                };
                let shared = shared.clone();
                metrics.sessions.inc();
                metrics.sessions_active.inc();
                tokio::spawn(async move {
                    handle(shared, stream).await;
                    metrics.sessions_active.dec();
                    drop(permit);
                });
            }
        }
    }
}

/// A server on a background thread with its own runtime: `hefun demo`, load runs and tests.
pub struct Background {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Background {
    /// Binds `bind` (e.g. `127.0.0.1:0`) and serves `svc` until [`Background::stop`] or drop.
    pub fn start(
        svc: &'static Service,
        bind: &str,
        limits: Limits,
        metrics: &'static Metrics,
    ) -> io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(bind)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hefun-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener)?;
                    serve(svc, listener, limits, metrics, async {
                        let _ = stopped.await;
                    })
                    .await
                })
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops accepting, drops the sessions and waits for the thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
