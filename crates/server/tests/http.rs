//! The HTTP server against hostile clients, on the real binary: slowloris heads and bodies,
//! idle keep-alive, connection caps, early 413, the drain on SIGTERM, HTTPS and its reload.
//! Every time bound here is an upper bound for "it happened".

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, start_server_with};

/// Far above every timeout the tests configure.
const BOUND: Duration = Duration::from_secs(10);

fn address(server: &Server) -> SocketAddr {
    server
        .http
        .trim_start_matches("http://")
        .parse()
        .expect("server address")
}

fn connect(server: &Server) -> TcpStream {
    connect_from(server, Ipv4Addr::LOCALHOST)
}

/// A connection from another loopback address (another client to the server).
fn connect_from(server: &Server, source: Ipv4Addr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind a loopback source");
    socket.connect(&address(server).into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    stream
}

/// What the connection received until the server closed it; panics if it stays open past
/// `BOUND`. `trickle` is written (one byte each 100 ms) while waiting, as a slow client would.
fn until_closed(stream: &mut TcpStream, trickle: &[u8]) -> String {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut trickle = trickle.iter().cycle();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            start.elapsed() < BOUND,
            "the server kept the connection open; received so far: {:?}",
            String::from_utf8_lossy(&received)
        );
        if let Some(byte) = trickle.next()
            && stream.write_all(&[*byte]).is_err()
        {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// Sends a keep-alive `GET /healthz` and reads its response (head and "ok\n").
fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: ringcast\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !received.ends_with(b"ok\n") {
        assert!(start.elapsed() < BOUND, "no answer to /healthz");
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[test]
fn a_body_announced_larger_than_the_limit_gets_413_before_it_is_sent() {
    let server = start_server_with(1, &[]);
    let mut stream = connect(&server);
    stream
        .write_all(
            b"POST /whip/demo HTTP/1.1\r\nHost: ringcast\r\nContent-Type: application/sdp\r\n\
              Content-Length: 99999999999\r\n\r\n",
        )
        .unwrap();
    let received = until_closed(&mut stream, b"");
    assert!(received.starts_with("HTTP/1.1 413"), "{received}");
    let stats = api_stats(&server, Ipv4Addr::LOCALHOST);
    assert_eq!(stats["refused"]["body_too_large"], 1, "{stats}");
}

#[test]
fn a_chunked_body_past_the_limit_gets_413() {
    let server = start_server_with(1, &[("RINGCAST_HTTP_MAX_BODY_BYTES", "1000")]);
    let mut stream = connect(&server);
    // Two chunks of 750 bytes: no `Content-Length` to refuse early, cut while reading.
    let chunk = "v=0\r\n".repeat(150);
    let request = format!(
        "POST /whip/demo HTTP/1.1\r\nHost: ringcast\r\nContent-Type: application/sdp\r\n\
         Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let received = until_closed(&mut stream, b"");
    assert!(received.starts_with("HTTP/1.1 413"), "{received}");
}

#[test]
fn a_head_sent_a_byte_at_a_time_is_cut_off() {
    let server = start_server_with(1, &[("RINGCAST_HTTP_HEADER_TIMEOUT_MS", "500")]);
    let mut stream = connect(&server);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: ringcast\r\n")
        .unwrap();
    until_closed(&mut stream, b"X-Slow: loris\r\n");
}

#[test]
fn a_body_sent_a_byte_at_a_time_gets_408_and_is_cut_off() {
    let server = start_server_with(1, &[("RINGCAST_HTTP_BODY_TIMEOUT_MS", "500")]);
    let mut stream = connect(&server);
    stream
        .write_all(
            b"POST /whip/demo HTTP/1.1\r\nHost: ringcast\r\nContent-Type: application/sdp\r\n\
              Content-Length: 60000\r\n\r\nv=0\r\n",
        )
        .unwrap();
    let received = until_closed(&mut stream, b"a=x\r\n");
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    let stats = api_stats(&server, Ipv4Addr::LOCALHOST);
    assert_eq!(stats["refused"]["body_timeout"], 1, "{stats}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let server = start_server_with(1, &[("RINGCAST_HTTP_IDLE_TIMEOUT_MS", "500")]);
    let mut stream = connect(&server);
    assert!(healthz(&mut stream).starts_with("HTTP/1.1 200"));
    assert!(
        healthz(&mut stream).starts_with("HTTP/1.1 200"),
        "keep-alive"
    );
    until_closed(&mut stream, b"");
}

/// A connection with a request in flight: a POST whose body does not come (the tests that use
/// it set a body timeout far above `BOUND`). Returns once the server reads the body (its
/// `100 Continue`): the request is in flight. A connection the server refuses is tried again
/// until `BOUND`: a connection another client just closed may not have left the server's count.
fn busy_from(server: &Server, source: Ipv4Addr) -> TcpStream {
    let start = Instant::now();
    loop {
        match try_busy_from(server, source) {
            Ok(stream) => return stream,
            Err(refused) => assert!(start.elapsed() < BOUND, "refused: {refused}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One try of `busy_from`: the error says how the server refused.
fn try_busy_from(server: &Server, source: Ipv4Addr) -> Result<TcpStream, String> {
    let mut s = connect_from(server, source);
    s.write_all(
        b"POST /whip/demo HTTP/1.1\r\nHost: ringcast\r\nContent-Type: application/sdp\r\n\
          Expect: 100-continue\r\nContent-Length: 100\r\n\r\n",
    )
    .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&received).contains("100 Continue") {
        assert!(start.elapsed() < BOUND, "no 100 Continue: {received:?}");
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("closed: {:?}", String::from_utf8_lossy(&received))),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    s.write_all(b"v=0\r\n").map_err(|e| e.to_string())?;
    Ok(s)
}

/// The `/api/stats` JSON, asked from `source`. A connection closed without an answer is tried
/// again until `BOUND`: connections other clients just closed may not have left the server's
/// count yet, and with the total cap reached it refuses the newcomer.
fn api_stats(server: &Server, source: Ipv4Addr) -> serde_json::Value {
    let start = Instant::now();
    let received = loop {
        let mut s = connect_from(server, source);
        let _ =
            s.write_all(b"GET /api/stats HTTP/1.1\r\nHost: ringcast\r\nConnection: close\r\n\r\n");
        let received = until_closed(&mut s, b"");
        if !received.is_empty() {
            break received;
        }
        assert!(
            start.elapsed() < BOUND,
            "/api/stats: every connection refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    let body = &received[received.find("\r\n\r\n").expect("a head") + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn connections_past_the_caps_are_closed_while_other_clients_get_healthz() {
    let server = start_server_with(
        1,
        &[
            ("RINGCAST_HTTP_MAX_CONNECTIONS", "8"),
            ("RINGCAST_HTTP_MAX_CONNECTIONS_PER_CLIENT", "4"),
            ("RINGCAST_HTTP_BODY_TIMEOUT_MS", "60000"),
        ],
    );
    // Not 127.0.0.1: the harness's readiness probe came from there, and on a loaded machine its
    // connection may not have left the server's count yet (a refusal the test did not make).
    let flooder = Ipv4Addr::new(127, 0, 0, 6);
    let mut held: Vec<TcpStream> = (0..4).map(|_| busy_from(&server, flooder)).collect();
    // The client's cap + 1: closed without an answer.
    let mut over = connect_from(&server, flooder);
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: ringcast\r\n\r\n");
    let received = until_closed(&mut over, b"");
    assert!(!received.contains("200"), "{received}");
    // Another client still gets through.
    let mut other = connect_from(&server, Ipv4Addr::new(127, 0, 0, 2));
    assert!(healthz(&mut other).starts_with("HTTP/1.1 200"));
    drop(other);
    // The total cap: four requests in flight from a third client fill it; none is idle, so the
    // next connection is closed.
    held.extend((0..4).map(|_| busy_from(&server, Ipv4Addr::new(127, 0, 0, 3))));
    let deadline = Instant::now() + BOUND;
    loop {
        let mut over = connect_from(&server, Ipv4Addr::new(127, 0, 0, 4));
        let _ =
            over.write_all(b"GET /healthz HTTP/1.1\r\nHost: ringcast\r\nConnection: close\r\n\r\n");
        // Until the closed /healthz connection of 127.0.0.2 has left: then refused.
        if !until_closed(&mut over, b"").contains("200") {
            break;
        }
        assert!(Instant::now() < deadline, "the total cap refuses");
    }
    // A slot given back is a slot again.
    held.pop();
    let deadline = Instant::now() + BOUND;
    loop {
        let mut s = connect_from(&server, Ipv4Addr::new(127, 0, 0, 4));
        if healthz(&mut s).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection's slot came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Each refusal is counted, by cap.
    drop(held);
    let stats = api_stats(&server, Ipv4Addr::new(127, 0, 0, 5));
    let refused = &stats["refused"];
    assert_eq!(refused["connections_per_client"], 1, "{stats}");
    assert!(refused["connections"].as_u64() >= Some(1), "{stats}");
}

/// Idle connections from many addresses, each under the per-client cap, used to fill the total
/// cap and lock every new client out (`/healthz` included) until they timed out (60 s): an
/// idle one now gives its slot to the newcomer.
#[test]
fn idle_connections_from_many_addresses_do_not_lock_out_a_new_client() {
    let server = start_server_with(
        1,
        &[
            ("RINGCAST_HTTP_MAX_CONNECTIONS", "8"),
            ("RINGCAST_HTTP_MAX_CONNECTIONS_PER_CLIENT", "2"),
        ],
    );
    let mut idle: Vec<TcpStream> = Vec::new();
    // Not 127.0.0.1, where the harness's readiness probe came from (see the test above).
    for host in 2..=5 {
        for _ in 0..2 {
            let mut s = connect_from(&server, Ipv4Addr::new(127, 0, 0, host));
            assert!(healthz(&mut s).starts_with("HTTP/1.1 200"));
            idle.push(s);
        }
    }
    let mut newcomer = connect_from(&server, Ipv4Addr::new(127, 0, 0, 9));
    assert!(healthz(&mut newcomer).starts_with("HTTP/1.1 200"));
    // One of the idle connections was closed to make room.
    let start = Instant::now();
    let mut buf = [0u8; 64];
    'closed: loop {
        assert!(start.elapsed() < BOUND, "no idle connection was closed");
        for s in &mut idle {
            s.set_nonblocking(true).unwrap();
            if matches!(s.read(&mut buf), Ok(0)) {
                break 'closed;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = api_stats(&server, Ipv4Addr::new(127, 0, 0, 10));
    let refused = &stats["refused"];
    assert!(
        refused["idle_connections_closed"].as_u64() >= Some(1),
        "{stats}"
    );
    assert_eq!(refused["connections"], 0, "{stats}");
}

fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(server.child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits (at most `BOUND`) for the server to exit; its status.
fn exited(server: &mut Server) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < BOUND, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two requests whose bodies never finish.
fn half_sent_requests(server: &Server) -> Vec<TcpStream> {
    (0..2)
        .map(|_| {
            let mut s = connect(server);
            s.write_all(
                b"POST /whip/demo HTTP/1.1\r\nHost: ringcast\r\nContent-Type: application/sdp\r\n\
                  Content-Length: 5000\r\n\r\nv=0\r\n",
            )
            .unwrap();
            s
        })
        .collect()
}

#[test]
fn sigterm_drains_within_the_deadline_and_exits_0_despite_half_sent_requests() {
    let mut server = start_server_with(1, &[("RINGCAST_HTTP_DRAIN_TIMEOUT_MS", "1000")]);
    let _pending = half_sent_requests(&server);
    std::thread::sleep(Duration::from_millis(200));
    signal(&server, "TERM");
    assert!(exited(&mut server).success());
}

#[test]
fn a_second_sigterm_during_the_drain_exits_at_once() {
    let mut server = start_server_with(1, &[("RINGCAST_HTTP_DRAIN_TIMEOUT_MS", "60000")]);
    let _pending = half_sent_requests(&server);
    std::thread::sleep(Duration::from_millis(200));
    signal(&server, "TERM");
    // The first one was seen once the listener is gone.
    let start = Instant::now();
    while TcpStream::connect(address(&server)).is_ok() {
        assert!(start.elapsed() < BOUND, "the server kept accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&server, "TERM");
    let status = exited(&mut server);
    assert!(!status.success(), "{status}");
}

// ---- HTTPS ----

/// A certificate for `localhost` written to `dir`; its DER for a client to trust.
fn write_certificate(dir: &Path) -> rustls_pki_types::CertificateDer<'static> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    certified.cert.der().clone()
}

fn tls_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `GET /healthz` over TLS trusting only `trusted`; the response, or the error.
fn https_healthz(
    server: &Server,
    trusted: &rustls_pki_types::CertificateDer<'static>,
) -> Result<String, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(address(server))?;
    tcp.set_read_timeout(Some(BOUND))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    tls.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn https_serves_the_certificate_and_reloads_it_on_sighup() {
    let dir = tls_dir("https_reload");
    let first = write_certificate(&dir);
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let server = start_server_https(&[
        ("RINGCAST_HTTP_TLS_CERT", cert.as_str()),
        ("RINGCAST_HTTP_TLS_KEY", key.as_str()),
    ]);
    let response = https_healthz(&server, &first).expect("HTTPS with the first certificate");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let second = write_certificate(&dir);
    signal(&server, "HUP");
    let start = Instant::now();
    while https_healthz(&server, &second).is_err() {
        assert!(
            start.elapsed() < BOUND,
            "the second certificate was not loaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        https_healthz(&server, &first).is_err(),
        "the first one is gone"
    );

    // A broken file on reload keeps the certificate in use.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    signal(&server, "HUP");
    std::thread::sleep(Duration::from_millis(300));
    let response = https_healthz(&server, &second).expect("the old certificate stays");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn a_missing_certificate_or_a_bad_key_stops_the_server_naming_the_key() {
    let dir = tls_dir("https_bad");
    write_certificate(&dir);
    std::fs::write(dir.join("bad-key.pem"), "no key here").unwrap();
    let cert = dir.join("cert.pem").display().to_string();
    let missing = dir.join("missing.pem").display().to_string();
    let bad_key = dir.join("bad-key.pem").display().to_string();
    let message = refused_start(&[
        ("RINGCAST_HTTP_TLS_CERT", missing.as_str()),
        ("RINGCAST_HTTP_TLS_KEY", bad_key.as_str()),
    ]);
    assert!(message.contains("http.tls_cert"), "{message}");
    let message = refused_start(&[
        ("RINGCAST_HTTP_TLS_CERT", cert.as_str()),
        ("RINGCAST_HTTP_TLS_KEY", bad_key.as_str()),
    ]);
    assert!(message.contains("http.tls_key"), "{message}");
}

/// The binary run with `env`: it must exit with an error within `BOUND`; its stderr.
fn refused_start(env: &[(&str, &str)]) -> String {
    let child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .env_clear()
        .env("RINGCAST_HTTP_LISTEN", "127.0.0.1:0")
        .env("RINGCAST_MEDIA_BIND", "127.0.0.1")
        .env("RINGCAST_MEDIA_PORT_BASE", "0")
        .env("RINGCAST_MEDIA_SHARDS", "1")
        .env("RINGCAST_MEDIA_PIN_THREADS", "false")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringcast runs");
    // The guard kills a server that started anyway.
    let mut server = Server {
        child,
        http: String::new(),
    };
    assert!(!exited(&mut server).success());
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

/// Like `start_server_with`, over HTTPS: ready once a TLS handshake completes.
fn start_server_https(env: &[(&str, &str)]) -> Server {
    common::start_server_ready(1, env, |http| {
        TcpStream::connect(http.trim_start_matches("http://")).is_ok()
    })
}
