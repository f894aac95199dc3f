//! `ringcast`: the SFU binary. Loads the configuration (compiled-in defaults, then `--config`,
//! then `RINGCAST_*` variables), starts one shard per core and the HTTP control plane.
#![forbid(unsafe_code)]

use ringcast::config;

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use ringcast_core::ShardConfig;
use ringcast_core::control::Limits;
use ringcast_engine::{Shards, ShardsConfig};
use ringcast_http::{AppState, HttpSettings, StreamAuth};
use ringcast_net::{EngineKind, EngineOptions};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, EngineChoice};

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
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
    let binds: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::new(config.media.bind, config.media.port_base + i as u16))
        .collect();
    let shard = ShardConfig {
        max_participants: config.media.max_participants_per_shard,
        keyframe_interval: Duration::from_millis(config.media.keyframe_interval_ms),
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
            ..EngineOptions::default()
        },
        mailbox: 4096,
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
        ice_links: config.ice_links(),
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
        "HTTP on {local}: WHIP http://{host}/whip/<stream>, WHEP http://{host}/whep/<stream>"
    );
    tracing::info!(
        "demo pages: http://{host}/ http://{host}/publish/demo http://{host}/watch/demo"
    );
    axum::serve(listener, ringcast_http::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down");
    tokio::task::spawn_blocking(move || shards.stop()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The addresses every shard advertises: the announced ones (NAT 1:1), else the bound address
/// when it is a concrete one, else every local interface address.
fn advertised_ips(config: &Config) -> anyhow::Result<Vec<IpAddr>> {
    let media = &config.media;
    if !media.announce.is_empty() {
        return Ok(media.announce.clone());
    }
    if !media.bind.is_unspecified() {
        return Ok(vec![media.bind]);
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .context("listing local addresses")?
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| media.bind.is_ipv6() || ip.is_ipv4())
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
