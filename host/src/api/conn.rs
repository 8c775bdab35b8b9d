//! The HTTP/1 edge between the listener and the router: accepting, capping and timing out
//! connections.
//!
//! Owns what one connection may cost the host: how many may be open at once, how long a
//! request head and a request body may take to arrive, how long a connection may sit idle,
//! and how large a request head may be. A client that trickles or goes silent loses its
//! connection; it can never hold a file descriptor indefinitely, so the listener keeps
//! accepting for everyone else.
//!
//! It never looks inside a request (routes and status codes are the router's) and never
//! cuts a request whose handler is running: the idle timer and shutdown wait for it. Only a
//! body that misses its deadline ends a request early, as a body error the handler answers
//! (`408` on intake).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// How long a request head may take, from its first byte to its last: 10 s. A sender on a
/// working network sends a head (at most [`DEFAULT_MAX_HEADER_BYTES`]) in milliseconds; 10 s
/// forgives a congested link or a paused sender, while a client trickling a head byte by
/// byte holds a connection slot for no longer than this.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request body may take to arrive, from the end of its head: 30 s. Intake bodies
/// are at most 300 KiB, so this asks at least 10 KiB/s of the sender, far below any
/// server-to-server link; a slower body is a trickle, and it pins its partial buffer and a
/// connection slot for no longer than this.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection may stay open with no request being handled and nothing read or
/// written: 75 s. Keep-alive spares senders a TCP (and TLS) handshake per post, so idle
/// connections are worth keeping for a while; 75 s outlasts the 60 s idle timeout of common
/// load balancers, so a balancer in front closes its pooled connections before the host
/// does (the other order races a reused connection against the host's close). Each idle
/// connection costs a descriptor and a few KiB until then.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// Connections served at once: 512. Every connection holds a file descriptor; a connection
/// over the cap is answered `503` and closed at once, where without a cap `accept` itself
/// would start failing (`Too many open files`) for everyone. Keep it below the process's
/// open-file limit (`ulimit -n`) less what the host needs besides (the store file,
/// outbound connections to Salesforce, about one per syncing installation); raise both
/// together for more concurrent senders.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// The largest request head (request line and headers) accepted: 16 KiB, answered `431`
/// beyond. A bearer token, a content type and tracing headers take well under 2 KiB; the
/// cap bounds the memory a head can pin while it is parsed (the HTTP library's own default
/// is about 400 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// What one connection may cost; see the constants for each default's reasoning.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// [`DEFAULT_HEADER_READ_TIMEOUT`]
    pub header_read_timeout: Duration,
    /// [`DEFAULT_BODY_TIMEOUT`]
    pub body_timeout: Duration,
    /// [`DEFAULT_IDLE_TIMEOUT`]
    pub idle_timeout: Duration,
    /// [`DEFAULT_MAX_CONNECTIONS`]; at least 1.
    pub max_connections: usize,
    /// [`DEFAULT_MAX_HEADER_BYTES`]
    pub max_header_bytes: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// The error a request body yields once it misses [`ConnLimits::body_timeout`]; handlers
/// find it with [`is_body_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimedOut(pub Duration);

/// Whether a body error (or any error in its source chain) is [`BodyTimedOut`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        next = error.source();
    }
    false
}

/// After a failed `accept` (the descriptor table is full, the kernel is out of buffers),
/// wait this long before the next: retrying at once would spin a core while the cause
/// lasts, and a longer pause leaves pending connections waiting for no gain.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets every
/// connection finish its in-flight request, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = Arc::new(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut saturated = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        if saturated {
                            saturated = false;
                            tracing::info!("connections are below the cap again");
                        }
                        connections.spawn(serve_connection(
                            stream,
                            peer,
                            router.clone(),
                            limits.clone(),
                            stopping.clone(),
                            permit,
                        ));
                    }
                    Err(_) => {
                        if !saturated {
                            saturated = true;
                            tracing::warn!(
                                max_connections = limits.max_connections,
                                "connection cap reached: refusing new connections with 503 \
                                 (raise --max-connections, and `ulimit -n` with it)"
                            );
                        }
                        refuse(stream, peer);
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    // New connections are refused by the kernel from here on; open ones finish their
    // request and close.
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

/// Answers a connection over the cap with `503` and closes it. The write is best effort and
/// never waits: a client that is not reading gets the close alone.
fn refuse(stream: TcpStream, peer: SocketAddr) {
    const BODY: &str = r#"{"error":"too_many_connections","message":"the host serves its maximum number of connections; retry shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(response.as_bytes());
    tracing::debug!(%peer, "connection refused: over the cap");
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Arc<ConnLimits>,
    mut stopping: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        let body_timeout = limits.body_timeout;
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let handling = activity.request_started();
            let request = request.map(|body| TimedBody::new(body, body_timeout));
            let mut router = router.clone();
            async move {
                let response = router.call(request).await;
                drop(handling);
                response
            }
        })
    };
    let mut builder = http1::Builder::new();
    // hyper's own header timer starts when the connection begins waiting for a head, so it
    // would also close idle kept-alive connections at the header timeout; the watchdog
    // below times heads from their first byte and idleness separately.
    builder
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut shutting_down = *stopping.borrow();
    if shutting_down {
        connection.as_mut().graceful_shutdown();
    }
    let mut deadline = Instant::now() + limits.header_read_timeout.min(limits.idle_timeout);
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = stopping.changed(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(deadline) => {
                match activity.check(Instant::now(), &limits) {
                    Check::Until(next) => deadline = next,
                    Check::Expired(why) => {
                        tracing::debug!(%peer, why, "closing connection");
                        return;
                    }
                }
            }
        }
    }
}

/// What a connection is doing, as the watchdog sees it. Times are nanoseconds since
/// `origin`; everything is touched from the connection's own task, so relaxed atomics
/// suffice (they are atomics only because the service must be `Send`).
struct Activity {
    origin: Instant,
    /// The last byte read or written, or the end of the last handler.
    last_io: AtomicU64,
    /// The first byte read while no request was being handled (a head is arriving), or
    /// [`NOT_STARTED`].
    head_started: AtomicU64,
    /// Requests whose handler is running.
    in_flight: AtomicUsize,
}

const NOT_STARTED: u64 = u64::MAX;

enum Check {
    /// Nothing expired; look again then.
    Until(Instant),
    Expired(&'static str),
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            last_io: AtomicU64::new(0),
            head_started: AtomicU64::new(NOT_STARTED),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(NOT_STARTED - 1)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.head_started.compare_exchange(
                NOT_STARTED,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn request_started(self: &Arc<Self>) -> Handling {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NOT_STARTED, Ordering::Relaxed);
        Handling(self.clone())
    }

    fn check(&self, now: Instant, limits: &ConnLimits) -> Check {
        // A head may start at any moment without waking the watchdog, so it looks again
        // within one header timeout: a head that started meanwhile is then cut off exactly
        // at its own deadline.
        let soonest = now + limits.header_read_timeout.min(limits.idle_timeout);
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            // The handler's own deadlines (the body timeout) apply.
            return Check::Until(soonest);
        }
        let idle_until = self.at(self.last_io.load(Ordering::Relaxed)) + limits.idle_timeout;
        if now >= idle_until {
            return Check::Expired("idle timeout");
        }
        match self.head_started.load(Ordering::Relaxed) {
            NOT_STARTED => Check::Until(idle_until.min(soonest)),
            started => {
                let head_until = self.at(started) + limits.header_read_timeout;
                if now >= head_until {
                    Check::Expired("request head timeout")
                } else {
                    Check::Until(head_until.min(idle_until))
                }
            }
        }
    }
}

/// A running handler; dropping it (the response is ready, or the client went away) makes
/// the connection idle from that moment.
struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.wrote();
    }
}

/// The socket, reporting every byte that moves to the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request body with a deadline: once it passes, the next read yields [`BodyTimedOut`]
/// instead of waiting for more bytes. The deadline's timer is armed only when the body is
/// first read, so requests without a body cost no timer.
struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        TimedBody {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
