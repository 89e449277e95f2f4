//! The HTTP server: tellify's own accept loop around hyper, so that no client can hold the
//! server's connections or file descriptors, with or without a token.
//!
//! Every connection goes through four bounds (`[http]`):
//!
//! - **A cap on open connections** (`max_connections`). A connection beyond it is answered
//!   at once with a fixed `503 Service Unavailable` (`Retry-After`, `Connection: close`)
//!   and closed, instead of piling up in the kernel or failing `accept` with "too many
//!   open files". The cap is lowered to fit the open-file limit, which start-up raises to
//!   the hard limit where the system allows.
//! - **An idle timeout** (`idle_timeout_secs`): a connection waiting for a request, fresh or
//!   kept alive after one, that receives nothing for this long is closed.
//! - **A header read timeout** (`header_read_timeout_secs`): once the first byte of a
//!   request arrives, its whole head must arrive within this time.
//! - **A request body timeout** (`body_timeout_secs`): the whole body must arrive within
//!   this time of the head; otherwise the request is answered `408` and the connection
//!   closed. Only the request side is timed: a response may stream for as long as it
//!   needs (`GET /api/v1/stream`).
//!
//! The idle and header timeouts live in [`TimedStream`], which sees every byte read, and
//! not in hyper's own `header_read_timeout`: hyper starts that timer as soon as it waits
//! for a head, so it would also cut idle keep-alive connections at the header timeout.
//! A request in progress is never timed by the stream: whether its handler is slow or its
//! response long, that is the handler's business.
//!
//! **Invariant:** the accept loop never waits on a client; a connection's work, including
//! a refusal, runs in a task of its own, and refusals are bounded too.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::telemetry;

/// `[http]`: limits on the connections of the HTTP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Seconds from the first byte of a request to the end of its head (1 to 300).
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may wait for a request without receiving a byte, when new or
    /// kept alive after a response (1 to 3600).
    pub idle_timeout_secs: u64,
    /// Seconds from a request's head to the end of its body (1 to 3600).
    pub body_timeout_secs: u64,
    /// Most connections open at once (1 to 1000000); more are answered 503 and closed.
    /// Lowered at start when the open-file limit cannot hold it.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            body_timeout_secs: 30,
            max_connections: 4096,
        }
    }
}

impl HttpSettings {
    /// Every setting out of its range, as `http.<key>: must be ...`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |name: &str, value: u64, low: u64, high: u64| {
            if !(low..=high).contains(&value) {
                problems.push(format!("http.{name}: must be {low} to {high} (is {value})"));
            }
        };
        check(
            "header_read_timeout_secs",
            self.header_read_timeout_secs,
            1,
            300,
        );
        check("idle_timeout_secs", self.idle_timeout_secs, 1, 3600);
        check("body_timeout_secs", self.body_timeout_secs, 1, 3600);
        check(
            "max_connections",
            u64::try_from(self.max_connections).unwrap_or(u64::MAX),
            1,
            1_000_000,
        );
        problems
    }
}

/// File descriptors kept free of connections, for the store, outbound requests and logs.
const RESERVED_FILES: u64 = 256;
/// Refusals (503 answers) in progress at once; beyond it a connection is closed unanswered.
const MAX_REFUSALS: usize = 256;
/// How long a refusal may take to write its answer and see the client close.
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// The pause after `accept` itself fails (out of memory or descriptors), so the loop does
/// not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Raises this process's open-file soft limit to its hard limit, where the system allows,
/// and returns the soft limit now in force (`None`: unlimited or unknown).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        let current = limit.current?;
        // An unlimited hard limit is not a value every kernel takes as a soft limit.
        let target = limit.maximum.unwrap_or(1 << 20);
        if current >= target {
            return Some(current);
        }
        let raised = Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = current, to = target, "raised the open-file limit");
                Some(target)
            }
            Err(error) => {
                tracing::debug!(%error, current, "cannot raise the open-file limit");
                Some(current)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap that fits `file_limit`, keeping [`RESERVED_FILES`] free.
fn connection_cap(configured: usize, file_limit: Option<u64>) -> usize {
    let Some(files) = file_limit else {
        return configured;
    };
    let fits = usize::try_from(files.saturating_sub(RESERVED_FILES))
        .unwrap_or(usize::MAX)
        .max(16);
    if configured > fits {
        tracing::warn!(
            configured,
            open_file_limit = files,
            lowered_to = fits,
            "http.max_connections does not fit the open-file limit; lowered"
        );
        return fits;
    }
    configured
}

#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
    body: Duration,
}

/// Serves `router` on `listener` until `shutdown` turns true, then stops accepting, lets
/// in-flight requests finish (for up to `drain_limit`, the shutdown grace) and closes
/// every connection; open streams are closed at the limit.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &HttpSettings,
    file_limit: Option<u64>,
    drain_limit: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let timeouts = Timeouts {
        header: Duration::from_secs(settings.header_read_timeout_secs),
        idle: Duration::from_secs(settings.idle_timeout_secs),
        body: Duration::from_secs(settings.body_timeout_secs),
    };
    let cap = connection_cap(settings.max_connections, file_limit);
    let connections = Arc::new(Semaphore::new(cap));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let (force_close, force_closed) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // A connection reset before it was accepted is the client's business;
                // anything else (no descriptors, no memory) needs a pause.
                if !matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(serve_connection(
                    stream,
                    remote,
                    router.clone(),
                    timeouts,
                    permit,
                    shutdown.clone(),
                    force_closed.clone(),
                ));
            }
            Err(_) => {
                metrics::counter!(telemetry::HTTP_CONNECTIONS_REFUSED).increment(1);
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(refuse(stream, permit));
                }
            }
        }
    }
    drop(listener);
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain_limit, connections.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            limit_secs = drain_limit.as_secs(),
            "connections still busy at shutdown; closing them"
        );
        let _ = force_close.send(true);
    }
    Ok(())
}

/// Serves one connection until it ends, times out, or the server stops.
async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    timeouts: Timeouts,
    permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<bool>,
    mut force_closed: watch::Receiver<bool>,
) {
    let _permit = permit;
    metrics::gauge!(telemetry::HTTP_CONNECTIONS_OPEN).increment(1.0);
    // Small SSE writes must leave at once, not wait for Nagle's algorithm.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let state = Arc::new(ConnectionState::new());
    let io = TokioIo::new(TimedStream::new(stream, state.clone(), timeouts));
    let service = ConnectionService {
        router,
        remote,
        state,
        body_timeout: timeouts.body,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Off: `TimedStream` times heads (see the module documentation).
    builder.keep_alive(true).header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %remote, "connection ended");
                }
                break;
            }
            _ = shutdown.wait_for(|stop| *stop), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = force_closed.wait_for(|stop| *stop) => break,
        }
    }
    metrics::gauge!(telemetry::HTTP_CONNECTIONS_OPEN).decrement(1.0);
}

/// Answers a connection beyond the cap with a fixed 503 and closes it. The answer goes out
/// before the request is read; the client's request is then read and dropped until it
/// closes, because closing with unread input would reset the connection and could discard
/// the answer before the client reads it.
async fn refuse(mut stream: TcpStream, permit: OwnedSemaphorePermit) {
    let _permit = permit;
    let body = r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many connections; try again shortly"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

/// What a connection is doing, shared by its stream (which times reads) and its service
/// (which sees requests begin and end).
struct ConnectionState {
    phase: Mutex<Phase>,
}

struct Phase {
    /// Requests whose response has not been sent in full.
    in_flight: u32,
    /// When the connection last became idle: accepted, or a response finished.
    idle_since: Instant,
    /// When the first byte of the next request's head arrived.
    head_started: Option<Instant>,
    /// The task of a read that found nothing while a request was in progress, and so
    /// armed no timer: woken when the request ends, so the idle timer starts then. (hyper
    /// does not read again on its own after a response when its last read was blocked.)
    parked_reader: Option<Waker>,
}

impl ConnectionState {
    fn new() -> ConnectionState {
        ConnectionState {
            phase: Mutex::new(Phase {
                in_flight: 0,
                idle_since: Instant::now(),
                head_started: None,
                parked_reader: None,
            }),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bytes_read(&self) {
        let mut phase = self.phase();
        if phase.in_flight == 0 && phase.head_started.is_none() {
            phase.head_started = Some(Instant::now());
        }
    }

    /// When a read that finds nothing must give up, and why; `None` while a request is in
    /// progress, when `reader` is kept to be woken at its end.
    fn read_deadline(
        &self,
        timeouts: &Timeouts,
        reader: &Waker,
    ) -> Option<(Instant, &'static str)> {
        let mut phase = self.phase();
        if phase.in_flight > 0 {
            phase.parked_reader = Some(reader.clone());
            return None;
        }
        Some(match phase.head_started {
            Some(started) => (started + timeouts.header, "header"),
            None => (phase.idle_since + timeouts.idle, "idle"),
        })
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        let mut phase = self.phase();
        phase.in_flight += 1;
        phase.head_started = None;
        RequestGuard(self.clone())
    }
}

/// Marks a request finished when dropped: with its response body, or with the request's
/// future when the connection goes away first.
struct RequestGuard(Arc<ConnectionState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let reader = {
            let mut phase = self.0.phase();
            phase.in_flight = phase.in_flight.saturating_sub(1);
            phase.idle_since = Instant::now();
            phase.head_started = None;
            phase.parked_reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

/// A TCP stream whose reads fail with `TimedOut` when a connection waiting for a request
/// stays idle, or a started head does not complete, in time. hyper then closes it.
struct TimedStream {
    stream: TcpStream,
    state: Arc<ConnectionState>,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
}

impl TimedStream {
    fn new(stream: TcpStream, state: Arc<ConnectionState>, timeouts: Timeouts) -> TimedStream {
        let timer = Box::pin(tokio::time::sleep(timeouts.idle));
        TimedStream {
            stream,
            state,
            timeouts,
            timer,
        }
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.bytes_read();
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => {}
        }
        let Some((deadline, reason)) = this.state.read_deadline(&this.timeouts, cx.waker()) else {
            return Poll::Pending;
        };
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                metrics::counter!(telemetry::HTTP_CONNECTIONS_TIMED_OUT, "reason" => reason)
                    .increment(1);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{reason} timeout"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Hands each request to the router with the client's address (`ConnectInfo`) and a body
/// that must arrive within the body timeout.
struct ConnectionService {
    router: Router,
    remote: SocketAddr,
    state: Arc<ConnectionState>,
    body_timeout: Duration,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: Request<Incoming>) -> ServiceFuture {
        let guard = self.state.request_started();
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + self.body_timeout;
        let body_timeout = self.body_timeout;
        let mut request = request.map(|incoming| {
            Body::new(DeadlineBody {
                inner: incoming,
                deadline,
                timer: None,
                timed_out: timed_out.clone(),
            })
        });
        request.extensions_mut().insert(ConnectInfo(self.remote));
        let router = self.router.clone();
        Box::pin(async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let response = if timed_out.load(Ordering::Relaxed) {
                body_timeout_response(body_timeout)
            } else {
                response
            };
            Ok(response.map(|body| TrackedBody {
                inner: body,
                guard: Some(guard),
            }))
        })
    }
}

/// `408` for a body that did not arrive in time; the connection is closed after it, since
/// the rest of the body may still be on its way. Written here as fixed problem+json, like
/// the 503 of [`refuse`], so the accept loop needs nothing from the HTTP API layer.
fn body_timeout_response(limit: Duration) -> Response<Body> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Request Timeout",
        "status": 408,
        "detail": format!(
            "the request body did not arrive within {} s (http.body_timeout_secs)",
            limit.as_secs()
        ),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline passes; the failure is noted so the
/// answer can be a 408 whatever the handler made of the error.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Made on the first wait, so a body that is already there costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                return Poll::Ready(frame.map(|result| result.map_err(axum::BoxError::from)))
            }
            Poll::Pending => {}
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out.store(true, Ordering::Relaxed);
                metrics::counter!(telemetry::HTTP_CONNECTIONS_TIMED_OUT, "reason" => "body")
                    .increment(1);
                Poll::Ready(Some(Err(axum::BoxError::from(BodyTimedOut))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks its request finished when it ends or is dropped, so the
/// connection's idle timer starts only after the whole response went out.
pub struct TrackedBody {
    inner: Body,
    guard: Option<RequestGuard>,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_all_named() {
        assert!(HttpSettings::default().problems().is_empty());
        let settings = HttpSettings {
            header_read_timeout_secs: 0,
            idle_timeout_secs: 3601,
            body_timeout_secs: 30,
            max_connections: 0,
        };
        assert_eq!(
            settings.problems(),
            vec![
                "http.header_read_timeout_secs: must be 1 to 300 (is 0)",
                "http.idle_timeout_secs: must be 1 to 3600 (is 3601)",
                "http.max_connections: must be 1 to 1000000 (is 0)",
            ]
        );
    }

    #[test]
    fn the_cap_fits_the_open_file_limit() {
        assert_eq!(connection_cap(4096, None), 4096);
        assert_eq!(connection_cap(4096, Some(1 << 20)), 4096);
        assert_eq!(connection_cap(4096, Some(1024)), 768);
        assert_eq!(connection_cap(4096, Some(100)), 16);
    }
}
