//! One HTTP/1.1 connection: hyper serves it; a watchdog closes it when it stays idle (no request
//! in flight, nothing received) for the idle timeout or takes longer than the header timeout to
//! send a request's head; a drain asks hyper to finish the request in flight and close.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::caps::{Permit, Tenant};

/// The timeouts the watchdog and hyper apply.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// From the first byte of a request to the end of its head.
    pub header: Duration,
    /// No request in flight and nothing received.
    pub idle: Duration,
}

/// Serve HTTP/1.1 on `io` until the client closes, a timeout passes, or `stop` turns true and
/// the request in flight (if any) is answered. `permit` is held until then.
pub(super) async fn serve<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
    permit: Permit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tenant = permit.tenant();
    let activity = Arc::new(Shared {
        activity: Mutex::new(Activity::new(Instant::now())),
        changed: Notify::new(),
        tenant: tenant.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // What `into_make_service_with_connect_info::<SocketAddr>()` gives handlers.
            request.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = InFlight::start(activity.clone());
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await;
                // In flight until its body is sent (or dropped): a long response, such as a
                // WHEP event stream, is not an idle connection.
                response.map(|r| {
                    r.map(|body| {
                        axum::body::Body::new(body.map_frame(move |frame| {
                            let _held = &in_flight;
                            frame
                        }))
                    })
                })
            }
        })
    };
    let watched = Watched {
        io,
        activity: activity.clone(),
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper starts this clock whenever it waits for a request head, between two requests
        // too: at the longer of the two it bounds both, and the watchdog applies each exactly.
        .header_read_timeout(timeouts.header.max(timeouts.idle))
        .serve_connection(TokioIo::new(watched), service);
    tokio::pin!(connection);
    let mut draining = *stop.borrow();
    let mut evicted = false;
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        let now = Instant::now();
        let deadline = activity.lock().deadline(timeouts);
        // While a request is in flight there is no deadline: look again when it ends.
        let wake = deadline.unwrap_or(now + timeouts.header.max(timeouts.idle));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "HTTP connection ended: {e}");
                }
                break;
            }
            () = tokio::time::sleep_until(wake) => {
                let due = activity.lock().deadline(timeouts);
                if due.is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(%peer, "HTTP connection closed: idle or head too slow");
                    break;
                }
            }
            () = activity.changed.notified() => {}
            () = tenant.evicted(), if !evicted => {
                // Its slot went to a new connection while it had no request in flight.
                evicted = true;
                if tenant.in_flight() == 0 {
                    tracing::debug!(%peer, "HTTP connection closed: idle, its slot taken");
                    break;
                }
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            changed = stop.changed(), if !draining => {
                if changed.is_err() || *stop.borrow() {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(permit);
}

/// What the watchdog knows of a connection.
#[derive(Debug)]
struct Activity {
    in_flight: usize,
    /// When the last request was answered (or the connection opened).
    quiet_since: Instant,
    /// First byte received while no request was in flight: a head on its way.
    head_since: Option<Instant>,
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            in_flight: 0,
            quiet_since: now,
            head_since: None,
        }
    }

    /// When the connection is to be closed if nothing changes; `None` while a request is in
    /// flight (its body has its own deadline, see `body.rs`).
    fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        if self.in_flight > 0 {
            return None;
        }
        Some(match self.head_since {
            Some(since) => since + timeouts.header,
            None => self.quiet_since + timeouts.idle,
        })
    }

    /// Bytes arrived; true when this starts a head (the deadline moved).
    fn received(&mut self, now: Instant) -> bool {
        let starts = self.in_flight == 0 && self.head_since.is_none();
        if starts {
            self.head_since = Some(now);
        }
        starts
    }
}

/// The watchdog's view of a connection, and its wake-up when the deadline moves.
struct Shared {
    activity: Mutex<Activity>,
    changed: Notify,
    /// The connection's slot under the caps, told of requests in flight.
    tenant: Arc<Tenant>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request in flight, from its head to its response.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn start(shared: Arc<Shared>) -> InFlight {
        {
            let mut a = shared.lock();
            a.in_flight += 1;
            a.head_since = None;
        }
        shared.tenant.request_started();
        InFlight(shared)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let quiet = {
            let mut a = self.0.lock();
            a.in_flight -= 1;
            if a.in_flight == 0 {
                a.quiet_since = Instant::now();
                a.head_since = None;
            }
            a.in_flight == 0
        };
        self.0.tenant.request_ended();
        if quiet {
            self.0.changed.notify_one();
        }
    }
}

/// The connection's stream, telling the watchdog when bytes arrive.
struct Watched<I> {
    io: I,
    activity: Arc<Shared>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && this.activity.lock().received(Instant::now())
        {
            this.activity.changed.notify_one();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[test]
    fn the_deadline_is_idle_when_quiet_header_once_bytes_come_none_in_flight() {
        let t0 = Instant::now();
        let caps = super::super::caps::Caps::new(1, 1, Arc::default());
        let permit = caps.admit("192.0.2.1".parse().unwrap()).unwrap();
        let shared = Arc::new(Shared {
            activity: Mutex::new(Activity::new(t0)),
            changed: Notify::new(),
            tenant: permit.tenant(),
        });
        assert_eq!(shared.lock().deadline(T), Some(t0 + T.idle));
        let t1 = t0 + Duration::from_secs(5);
        assert!(shared.lock().received(t1));
        assert!(!shared.lock().received(t1), "the head started already");
        assert_eq!(shared.lock().deadline(T), Some(t1 + T.header));
        let request = InFlight::start(shared.clone());
        assert!(!shared.lock().received(t1 + Duration::from_secs(1)));
        assert_eq!(shared.lock().deadline(T), None);
        assert_eq!(permit.tenant().in_flight(), 1, "the caps see the request");
        drop(request);
        assert_eq!(permit.tenant().in_flight(), 0);
        let quiet = shared.lock().quiet_since;
        assert_eq!(shared.lock().deadline(T), Some(quiet + T.idle));
    }
}
