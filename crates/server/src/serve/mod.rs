//! The HTTP server under the control plane's router: HTTP/1.1 on hyper with header, body and
//! idle timeouts, connection caps (in total and per client), early 413, optional HTTPS, and a
//! drain with a deadline on shutdown.

mod body;
mod caps;
mod connection;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use ringcast_http::Refusals;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use tls::Tls;

use caps::{Caps, Refusal};
use connection::Timeouts;

/// Open files kept for everything but HTTP connections (shard sockets, epoll and io_uring
/// descriptors, the listener, files read at run time).
const FD_RESERVE: u64 = 256;

/// How the server serves.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Time to send a request's head.
    pub header_timeout: Duration,
    /// Time to send a request's whole body.
    pub body_timeout: Duration,
    /// Time a connection may stay with no request in flight and nothing received.
    pub idle_timeout: Duration,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Most concurrent connections from one client address (IPv6: /64).
    pub max_connections_per_client: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time in-flight requests get to finish once shutdown begins.
    pub drain_timeout: Duration,
    /// HTTPS, when set.
    pub tls: Option<Tls>,
    /// Where refused connections, 413s and 408s are counted (`/api/stats`, `/metrics`).
    pub refusals: Arc<Refusals>,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets in-flight
/// requests finish within the drain timeout, closes what is left and returns.
/// Handlers get `ConnectInfo<SocketAddr>` as with `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) {
    let app = body::bounded(
        app,
        settings.max_body_bytes,
        settings.body_timeout,
        settings.refusals.clone(),
    );
    let timeouts = Timeouts {
        header: settings.header_timeout,
        idle: settings.idle_timeout,
    };
    if let Some(tls) = &settings.tls {
        tokio::spawn(tls.clone().reload_on_sighup());
    }
    let caps = Caps::new(
        settings.max_connections,
        settings.max_connections_per_client,
        settings.refusals.clone(),
    );
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or similar: the caps should keep this from
                    // happening; wait rather than spin.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let permit = match caps.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                drop(stream);
                log_refusal(&caps, refusal, peer, &settings);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stopped = stopped.clone();
        let tls = settings.tls.as_ref().map(Tls::acceptor);
        let handshake_timeout = settings.header_timeout;
        connections.spawn(async move {
            match tls {
                None => connection::serve(stream, peer, app, timeouts, stopped, permit).await,
                Some(acceptor) => {
                    let accepted =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
                    match accepted {
                        Ok(Ok(tls)) => {
                            connection::serve(tls, peer, app, timeouts, stopped, permit).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        "HTTP: no longer accepting; draining for at most {} ms",
        settings.drain_timeout.as_millis()
    );
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(settings.drain_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "HTTP drain deadline passed: closing the connections left"
        );
        connections.shutdown().await;
    }
}

/// Raises the soft open-files limit to the hard one and returns the connection cap that fits
/// below it (`wanted`, or less with a warning).
pub fn fit_open_files(wanted: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!("open files limit (RLIMIT_NOFILE): {limit}");
            limit
        }
        Err(e) => {
            let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
            tracing::warn!("cannot raise the open files limit: {e}; it stays {limit}");
            limit
        }
    };
    let room = usize::try_from(limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    if wanted > room {
        let fitted = room.max(1);
        tracing::warn!(
            "http.max_connections {wanted} does not fit below the open files limit {limit} \
             ({FD_RESERVE} kept for the rest): {fitted} instead"
        );
        return fitted;
    }
    wanted
}

/// Logs a refused connection when the count of refusals is a power of two (1, 2, 4, ...): a
/// flood costs a few lines, not one per connection.
fn log_refusal(caps: &Caps, refusal: Refusal, peer: SocketAddr, settings: &ServeSettings) {
    let refused = caps.refused();
    if refused.is_power_of_two() {
        let cap = match refusal {
            Refusal::Total => format!(
                "http.max_connections = {} (none idle)",
                settings.max_connections
            ),
            Refusal::PerClient => format!(
                "http.max_connections_per_client = {}",
                settings.max_connections_per_client
            ),
        };
        tracing::warn!(
            %peer,
            refused,
            open = caps.open(),
            "HTTP connection refused: {cap} reached"
        );
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn settings() -> ServeSettings {
        ServeSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10,
            max_connections_per_client: 10,
            max_body_bytes: 1000,
            drain_timeout: Duration::from_secs(5),
            tls: None,
            refusals: Arc::default(),
        }
    }

    #[tokio::test]
    async fn handlers_get_the_client_address_as_connect_info() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(serve(listener, app, settings(), async {
            let _ = stopped.await;
        }));
        let mut client = tokio::net::TcpStream::connect(server).await.unwrap();
        let local = client.local_addr().unwrap();
        client
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(&local.to_string()), "{response}");
        stop.send(()).unwrap();
        serving.await.unwrap();
    }
}
