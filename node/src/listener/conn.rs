//! One API connection: the TLS handshake under a deadline, then HTTP/1 or
//! HTTP/2 with a watchdog that closes the connection when the client is
//! too slow to send a request head or leaves it idle too long.
//!
//! The watchdog is the one place these rules live, for both protocols:
//! hyper's own HTTP/1 `header_read_timeout` starts counting when the
//! connection goes idle, which would make the idle keep-alive time and the
//! header time one and the same; and nothing in hyper bounds the wait for
//! the first bytes of a connection (the protocol sniffing of the `auto`
//! builder).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::body::{MinRate, MinRateBody};
use super::slots::Slot;
use crate::config::LimitsConfig;
use crate::log_every;

/// How long an idle connection gets to finish closing politely (HTTP/2
/// GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Everything the connections of one listener share.
pub(super) struct Shared {
    pub acceptor: TlsAcceptor,
    pub router: Router,
    pub limits: Arc<LimitsConfig>,
    pub body_rate: Option<MinRate>,
    pub http: auto::Builder<TokioExecutor>,
}

impl Shared {
    pub fn new(tls: Arc<rustls::ServerConfig>, router: Router, limits: LimitsConfig) -> Self {
        let mut http = auto::Builder::new(TokioExecutor::new());
        // The watchdog below owns the header and idle deadlines; no hyper timer.
        http.http1().header_read_timeout(None);
        http.http2()
            .max_concurrent_streams(limits.http2_max_concurrent_streams);
        crate::http_limits::tune_hyper(&mut http, limits.max_header_bytes);
        Self {
            acceptor: TlsAcceptor::from(tls),
            router,
            body_rate: MinRate::new(limits.min_body_bytes_per_sec, limits.body_rate_window()),
            limits: Arc::new(limits),
            http,
        }
    }
}

/// Serves one accepted connection until it ends; `slot` is released then.
pub(super) async fn serve(
    shared: Arc<Shared>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
) {
    let _slot = slot;
    let _ = tcp.set_nodelay(true);
    let handshake = shared.acceptor.accept(tcp);
    let tls = match tokio::time::timeout(shared.limits.tls_handshake_timeout(), handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let protocol = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        // HTTP/1.1, or no ALPN at all (the auto builder still detects an
        // HTTP/2 preface; such a client only gets HTTP/1's stricter reading
        // of "idle").
        _ => Protocol::Http1,
    };
    let activity = Arc::new(Activity::new(protocol));
    let io = TokioIo::new(Watched {
        inner: tls,
        activity: activity.clone(),
    });
    let service = ConnService {
        router: shared.router.clone(),
        peer,
        limits: shared.limits.clone(),
        body_rate: shared.body_rate,
        activity: activity.clone(),
    };
    let conn = shared.http.serve_connection(io, service);
    tokio::pin!(conn);
    let limits = &shared.limits;
    let expired = tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                note_connection_error(peer, &*e);
            }
            return;
        }
        expired = activity.expired(limits.header_read_timeout(), limits.idle_timeout()) => expired,
    };
    match expired {
        Expired::Head => {
            tracing::debug!(%peer, "no complete request head in time; connection closed");
        }
        Expired::Idle => {
            tracing::debug!(%peer, "idle connection closed");
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        }
    }
}

/// Logs why a connection ended with an error: at debug level, except an
/// HTTP/2 peer cut off for abuse (rapid resets and the like), which is worth
/// a warning — one per interval, however many connections do it.
fn note_connection_error(peer: SocketAddr, error: &(dyn std::error::Error + 'static)) {
    if let Some(h2) = crate::error_chain::find_cause::<h2::Error>(error) {
        if h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) && !h2.is_remote() {
            log_every!(
                super::LOG_INTERVAL,
                warn,
                %peer,
                "HTTP/2 connection closed for abuse (too many reset streams)"
            );
            return;
        }
    }
    tracing::debug!(%peer, error = %error, "connection ended with an error");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Which deadline closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expired {
    /// A request head (or the first request) did not arrive in time.
    Head,
    /// No request for the idle timeout.
    Idle,
}

/// What the watchdog knows of a connection, updated by the I/O wrapper and
/// the service. Times are milliseconds since `epoch`.
struct Activity {
    epoch: Instant,
    protocol: Protocol,
    /// Requests whose handler has not answered yet.
    in_flight: AtomicUsize,
    /// 1 + when the request head being read started; 0 when none is. Starts
    /// at 1 (the handshake's end): a connection's first request is due within
    /// the header timeout, whatever the protocol.
    head_since: AtomicU64,
    /// When the last request was answered.
    idle_since: AtomicU64,
    changed: Notify,
}

impl Activity {
    fn new(protocol: Protocol) -> Self {
        Self {
            epoch: Instant::now(),
            protocol,
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(1),
            idle_since: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Bytes arrived: on an idle HTTP/1 connection they are a new request
    /// head, which must now be complete within the header timeout. (On
    /// HTTP/2 idle bytes are pings and settings; only requests count.)
    fn bytes_read(&self) {
        if self.protocol == Protocol::Http1
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Acquire) == 0
        {
            self.head_since.store(self.now_ms() + 1, Ordering::Release);
            self.changed.notify_waiters();
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// The next deadline and what it enforces; `None` while a request is in
    /// progress (handlers and the body rate bound those).
    fn deadline(&self, header: Duration, idle: Duration) -> Option<(Instant, Expired)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_since.load(Ordering::Acquire);
        if head != 0 {
            return Some((self.at(head - 1) + header, Expired::Head));
        }
        Some((
            self.at(self.idle_since.load(Ordering::Acquire)) + idle,
            Expired::Idle,
        ))
    }

    /// Resolves when the connection has overstayed a deadline.
    async fn expired(&self, header: Duration, idle: Duration) -> Expired {
        loop {
            // Registered before reading the state, so no change is missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.deadline(header, idle) {
                None => changed.await,
                Some((at, why)) => {
                    if Instant::now() >= at {
                        return why;
                    }
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
            }
        }
    }
}

/// A request in progress; the connection counts as idle from its drop on
/// (the handler answered, or HTTP/2 reset the stream).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .idle_since
            .store(activity.now_ms(), Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        activity.changed.notify_waiters();
    }
}

/// The decrypted stream, reporting reads to the watchdog.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The per-connection service: marks requests in flight for the watchdog,
/// holds request bodies to the minimum rate, and hands the request to the
/// router with the peer address and the limits in its extensions.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    limits: Arc<LimitsConfig>,
    body_rate: Option<MinRate>,
    activity: Arc<Activity>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.request_started();
        let rate = self.body_rate;
        let mut req = req.map(|body| Body::new(MinRateBody::new(body, rate)));
        req.extensions_mut().insert(ConnectInfo(self.peer));
        req.extensions_mut().insert(self.limits.clone());
        let response = self.router.clone().oneshot(req);
        Box::pin(async move {
            let response = response.await;
            drop(in_flight);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(90);

    #[tokio::test(start_paused = true)]
    async fn first_request_is_due_within_the_header_timeout() {
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let activity = Activity::new(protocol);
            let started = Instant::now();
            assert_eq!(activity.expired(HEADER, IDLE).await, Expired::Head);
            assert_eq!(started.elapsed(), HEADER);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn http1_keep_alive_idles_longer_than_a_head_may_take() {
        let activity = Arc::new(Activity::new(Protocol::Http1));
        drop(activity.request_started());
        let idle_from = Instant::now();
        assert_eq!(activity.expired(HEADER, IDLE).await, Expired::Idle);
        assert_eq!(idle_from.elapsed(), IDLE);

        // A head that starts after a while must then finish within HEADER.
        drop(activity.request_started());
        tokio::time::sleep(Duration::from_secs(30)).await;
        activity.bytes_read();
        let head_from = Instant::now();
        assert_eq!(activity.expired(HEADER, IDLE).await, Expired::Head);
        assert_eq!(head_from.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_while_a_request_is_in_flight() {
        let activity = Arc::new(Activity::new(Protocol::Http2));
        let request = activity.request_started();
        let watchdog = activity.clone();
        let expired = tokio::spawn(async move { watchdog.expired(HEADER, IDLE).await });
        tokio::time::sleep(IDLE * 3).await;
        assert!(!expired.is_finished());
        let answered = Instant::now();
        drop(request);
        assert_eq!(expired.await.unwrap(), Expired::Idle);
        assert_eq!(answered.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_bytes_between_requests_do_not_start_a_head() {
        let activity = Arc::new(Activity::new(Protocol::Http2));
        drop(activity.request_started());
        let idle_from = Instant::now();
        activity.bytes_read();
        assert_eq!(activity.expired(HEADER, IDLE).await, Expired::Idle);
        assert_eq!(idle_from.elapsed(), IDLE);
    }
}
