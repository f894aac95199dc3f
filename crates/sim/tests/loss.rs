//! 5% random loss on every viewer link, both directions, 20 ms each way: NACK/RTX between the
//! shard and each viewer repairs video so that almost nothing is missing at the end.

mod common;

use std::time::{Duration, Instant};

use ringcast_core::TrackKind;
use ringcast_sim::{LinkConfig, PublisherConfig, Sim, SimConfig, check};

const VIEWERS: usize = 20;

#[test]
fn nack_rtx_repairs_five_percent_loss() {
    common::init_log();
    let wall = Instant::now();
    let mut sim = Sim::new(SimConfig {
        seed: 5,
        link: LinkConfig::lossy(0.05, Duration::from_millis(20)),
        ..SimConfig::default()
    });
    let stream = "s9";
    let publisher = sim.add_publisher(
        stream,
        PublisherConfig {
            start_on_connect: false,
            // 2-3 packets per frame: more packets to measure residual loss on.
            delta_size: (1200, 3000),
            ..PublisherConfig::default()
        },
    );
    // The publisher's own link is clean: the loss under test is on the viewers' side.
    sim.set_link(publisher, LinkConfig::default());
    let viewers: Vec<_> = (0..VIEWERS).map(|_| sim.add_viewer(stream)).collect();
    let mut all = viewers.clone();
    all.push(publisher);
    // DTLS retransmits through the loss; give it time.
    sim.connect(&all, Duration::from_secs(20));
    let connected = sim.elapsed();

    // Residual loss is measured in steady state: from 0.5 s after media starts to 1 s before
    // the check, while media keeps flowing (a stream's very first packet and its last ones
    // cannot be repaired: no later packet reveals that they are missing).
    sim.set_media(publisher, true);
    let media_start = sim.now();
    sim.run_for(Duration::from_secs(6));
    let end = sim.now() - Duration::from_secs(1);

    let sent = sim.client(publisher).sent(TrackKind::Video);
    let from = sent
        .iter()
        .position(|s| s.at >= media_start + Duration::from_millis(500))
        .unwrap();
    let to = sent.iter().position(|s| s.at >= end).unwrap();
    let window = from..to;
    let mut worst = 0.0f64;
    let mut total_missing = 0;
    for &v in &viewers {
        let c = sim.client(v);
        let got = c.received(TrackKind::Video);
        let cov = check::coverage(sent, got);
        assert!(cov.first <= 1, "viewer {v:?} missed the start: {cov:?}");
        assert_eq!(cov.corrupt, 0, "viewer {v:?}: {cov:?}");
        assert_eq!(cov.misnumbered, 0, "viewer {v:?}: {cov:?}");
        let missing = check::missing_in(sent, got, window.clone());
        let loss = missing as f64 / window.len() as f64;
        assert!(
            loss < 0.005,
            "viewer {v:?}: residual video loss {:.2}% ({missing} of {})",
            loss * 100.0,
            window.len()
        );
        worst = worst.max(loss);
        total_missing += missing;
        assert!(c.down.lost > 0, "viewer {v:?}: the link lost nothing");
    }
    // Opus goes without RTX (as from browsers): its loss stays what the link did, but what
    // arrives is intact and correctly numbered.
    let audio = sim.client(publisher).sent(TrackKind::Audio);
    let mut audio_loss = 0.0;
    for &v in &viewers {
        let cov = check::coverage(audio, sim.client(v).received(TrackKind::Audio));
        assert_eq!(
            (cov.corrupt, cov.misnumbered),
            (0, 0),
            "viewer {v:?} audio: {cov:?}"
        );
        assert!(cov.loss() < 0.15, "viewer {v:?} audio: {cov:?}");
        audio_loss += cov.loss() / VIEWERS as f64;
    }
    eprintln!(
        "loss: connected at {connected:?}, {} video packets in the window, worst residual video loss {:.3}%, {total_missing} missing in all, \
         mean audio loss {:.1}%, {:?} wall",
        window.len(),
        worst * 100.0,
        audio_loss * 100.0,
        wall.elapsed()
    );
}
