//! `ringcast`: the SFU binary. Loads the configuration (compiled-in defaults, then `--config`,
//! then `RINGCAST_*` variables), starts one shard per core and the HTTP control plane.
#![forbid(unsafe_code)]

mod serve;

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use ringcast::config;
use ringcast_core::ShardConfig;
use ringcast_core::control::{AdmissionLimits, Limits, Rate};
use ringcast_engine::{Shards, ShardsConfig, TcpConfig};
use ringcast_http::{AppState, HttpSettings, StreamAuth};
use ringcast_net::{EngineKind, EngineOptions};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, EngineChoice};

// Sessions are built on tokio's blocking pool and freed on shard threads; glibc malloc's
// per-thread arenas kept that memory (RSS +22 % after 10,000 join/leave cycles), jemalloc
// returns it (README "Soak").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A WebRTC SFU: WHIP in, WHEP out.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); its keys override the compiled-in defaults.
    #[arg(long, env = "RINGCAST_CONFIG")]
    config: Option<PathBuf>,
    /// I/O engine: auto, uring or epoll (overrides media.engine).
    #[arg(long)]
    engine: Option<String>,
    /// Print the compiled-in default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", config::DEFAULT_CONFIG);
        return Ok(());
    }
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k != "RINGCAST_CONFIG")
        .collect();
    if let Some(engine) = &cli.engine {
        env.push(("RINGCAST_MEDIA_ENGINE".into(), engine.clone()));
    }
    let config = Config::load(cli.config.as_deref(), env)?;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .context("log.level")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let max_connections = serve::fit_open_files(config.http.max_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(config, max_connections))
}

async fn run(config: Config, max_connections: usize) -> anyhow::Result<()> {
    let mut signals = Signals::new().context("installing the SIGTERM and SIGINT handlers")?;
    // A bad certificate or key stops the server before anything starts.
    let tls = if config.http.tls_cert.as_os_str().is_empty() {
        None
    } else {
        Some(serve::Tls::load(
            config.http.tls_cert.clone(),
            config.http.tls_key.clone(),
        )?)
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let kind = match config.media.engine {
        EngineChoice::Epoll => EngineKind::Epoll,
        EngineChoice::Uring => {
            if let Err(why) = ringcast_net::probe(EngineKind::Uring) {
                bail!(
                    "media.engine = \"uring\": io_uring cannot run here: {why}; use \"epoll\" or \"auto\""
                );
            }
            EngineKind::Uring
        }
        EngineChoice::Auto => match ringcast_net::probe(EngineKind::Uring) {
            Ok(()) => EngineKind::Uring,
            Err(why) => {
                tracing::info!("engine auto: io_uring cannot run here ({why}); using epoll");
                EngineKind::Epoll
            }
        },
    };
    let engine_name = kind.name();
    let n = config.shard_count();
    let bind_ip = config.shard_bind_ip();
    let binds: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::new(bind_ip, config.media.port_base + i as u16))
        .collect();
    let shard = ShardConfig {
        max_participants: config.media.max_participants_per_shard,
        keyframe_interval: Duration::from_millis(config.media.keyframe_interval_ms),
        gop_cache_bytes: config.media.gop_cache_bytes,
        gop_cache_max_age: Duration::from_millis(config.media.gop_cache_max_age_ms),
        connect_timeout: Duration::from_millis(config.media.connect_timeout_ms),
        announced: Vec::new(),
        ..ShardConfig::default()
    };
    let ips = advertised_ips(&config)?;
    let mut shard_cfg = shard;
    if !config.media.announce.is_empty() {
        shard_cfg.announced = config
            .media
            .announce
            .iter()
            .map(|ip| SocketAddr::new(*ip, 0))
            .collect();
    }
    let (shards, events) = Shards::start(ShardsConfig {
        binds: binds.clone(),
        pin_threads: config.media.pin_threads,
        shard: shard_cfg,
        kind,
        engine: EngineOptions {
            gso: config.media.gso,
            gro: config.media.gro,
            uring_sqpoll: config.media.uring_sqpoll,
            uring_zero_copy: config.media.uring_zero_copy,
            uring_coalesce_us: config.media.uring_coalesce_us,
            ..EngineOptions::default()
        },
        mailbox: 4096,
        tcp: config.media.tcp.then(|| TcpConfig {
            max_connections: config.media.tcp_max_connections,
            max_per_ip: config.media.tcp_max_per_ip,
            idle_timeout: Duration::from_millis(config.media.tcp_idle_timeout_ms),
            ..TcpConfig::default()
        }),
    })
    .with_context(|| {
        format!(
            "binding the shard sockets ({} from port {})",
            n, config.media.port_base
        )
    })?;
    let candidates: Vec<Vec<SocketAddr>> = shards
        .handles()
        .iter()
        .map(|h| {
            ips.iter()
                .map(|ip| SocketAddr::new(*ip, h.local_addr().port()))
                .collect()
        })
        .collect();
    tracing::info!(engine = engine_name, shards = n, "ringcast starting");
    for (h, c) in shards.handles().iter().zip(&candidates) {
        let list: Vec<String> = c.iter().map(ToString::to_string).collect();
        tracing::info!(shard = h.id().0, socket = %h.local_addr(), candidates = %list.join(" "), "shard ready");
    }
    let cert = ringcast_core::generate_certificate().context("generating the DTLS certificate")?;
    let settings = HttpSettings {
        cors_origin: config.http.cors_origin.clone(),
        max_body_bytes: config.http.max_body_bytes,
        whep_retry_after: config.whep.retry_after_secs,
        limits: Limits {
            affinity: config
                .media
                .affinity_limit
                .min(config.media.max_participants_per_shard),
            max: config.media.max_participants_per_shard,
        },
        replace_publisher: config.whip.replace_publisher,
        admission: admission_limits(&config),
        trusted_proxies: config.limits.trusted_proxies.clone(),
        ice_servers: config.ice_servers(),
        streams: config
            .streams
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    StreamAuth {
                        publish_token: v.publish_token.clone(),
                        view_token: v.view_token.clone(),
                    },
                )
            })
            .collect(),
        admin_token: Some(config.http.admin_token.clone()).filter(|t| !t.is_empty()),
        jwt_secret: Some(config.rooms.jwt_secret.clone()).filter(|s| !s.is_empty()),
        room_secrets: config.rooms.secrets.clone(),
        max_slots: config.rooms.max_slots,
        max_room_members: config.rooms.max_members,
    };
    let state = AppState::new(
        settings,
        shards.handles().to_vec(),
        candidates,
        cert,
        engine_name,
    );
    tokio::spawn(ringcast_http::follow_shard_events(state.clone(), events));
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("http.listen {}", config.http.listen))?;
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() {
        format!("127.0.0.1:{}", local.port())
    } else {
        local.to_string()
    };
    tracing::info!(
        "HTTP on {local}: WHIP {scheme}://{host}/whip/<stream>, WHEP {scheme}://{host}/whep/<stream>"
    );
    tracing::info!(
        "demo pages: {scheme}://{host}/ {scheme}://{host}/publish/demo {scheme}://{host}/watch/demo"
    );
    let settings = serve::ServeSettings {
        header_timeout: Duration::from_millis(config.http.header_timeout_ms),
        body_timeout: Duration::from_millis(config.http.body_timeout_ms),
        idle_timeout: Duration::from_millis(config.http.idle_timeout_ms),
        max_connections,
        max_connections_per_client: config.http.max_connections_per_client,
        max_body_bytes: config.http.max_body_bytes,
        drain_timeout: Duration::from_millis(config.http.drain_timeout_ms),
        tls,
        refusals: state.refusals(),
    };
    // The admin surface on its own listener (same limits and TLS), stopped with the public one.
    let (stop, stopping) = tokio::sync::watch::channel(());
    let app = match config.http.admin_listen {
        None => ringcast_http::app(state),
        Some(addr) => {
            let admin = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("http.admin_listen {addr}"))?;
            tracing::info!("admin API and /metrics on {}", admin.local_addr()?);
            let mut stopping = stopping.clone();
            tokio::spawn(serve::serve(
                admin,
                ringcast_http::admin_app(state.clone()),
                settings.clone(),
                async move {
                    let _ = stopping.changed().await;
                },
            ));
            ringcast_http::public_app(state)
        }
    };
    let first_signal = async move {
        signals.next().await;
        tracing::info!("signal received: shutting down (a second one exits at once)");
        let _ = stop.send(());
        tokio::spawn(async move {
            signals.next().await;
            tracing::warn!("second signal: exiting now, without draining");
            std::process::exit(1);
        });
    };
    serve::serve(listener, app, settings, first_signal).await;
    tracing::info!("HTTP stopped; telling every live peer goodbye");
    // Before the shards stop: every live peer gets its DTLS close / RTCP BYE, so players notice
    // at once (within 1 s; the shards answer between two loop turns).
    let told = shards
        .farewell(std::time::Instant::now() + Duration::from_secs(1))
        .await;
    tracing::info!(
        sessions = told,
        "every live peer was told goodbye; stopping the shards"
    );
    tokio::task::spawn_blocking(move || shards.stop()).await?;
    Ok(())
}

/// `[limits]` for the control plane. The token reserve keeps seats for nobody when no stream
/// has a token.
fn admission_limits(config: &Config) -> AdmissionLimits {
    let l = &config.limits;
    let tokens = config
        .streams
        .values()
        .any(|s| s.publish_token.is_some() || s.view_token.is_some());
    AdmissionLimits {
        sessions_per_client: l.sessions_per_client,
        creation_rate: Some(Rate {
            per_second: f64::from(l.creations_per_second),
            burst: l.creation_burst,
        }),
        viewers_per_stream: l.viewers_per_stream,
        pending_sessions: l.pending_sessions,
        token_reserve: if tokens { l.token_reserve } else { 0 },
        tracked_clients: l.tracked_clients,
    }
}

/// SIGTERM and SIGINT (Ctrl-C), installed once so that a second one is never missed.
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// The addresses every shard advertises: the announced ones (NAT 1:1), else the bound address
/// when it is a concrete one, else every local interface address (IPv6 ones only with
/// `allow_ipv6`, on the dual-stack sockets it binds).
fn advertised_ips(config: &Config) -> anyhow::Result<Vec<IpAddr>> {
    let media = &config.media;
    if !media.announce.is_empty() {
        return Ok(media.announce.clone());
    }
    let bind = config.shard_bind_ip();
    if !bind.is_unspecified() {
        return Ok(vec![bind]);
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .context("listing local addresses")?
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| bind.is_ipv6() || ip.is_ipv4())
        .filter(|ip| media.allow_ipv6 || ip.is_ipv4())
        .filter(|ip| media.advertise_loopback || !ip.is_loopback())
        .filter(|ip| match ip {
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
            IpAddr::V4(_) => true,
        })
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        bail!("no local address to advertise: set media.announce or media.bind");
    }
    Ok(ips)
}
