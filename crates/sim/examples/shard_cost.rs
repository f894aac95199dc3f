//! What a shard costs per forwarded packet, without sockets or kernel: 1 publisher (VP8 +
//! Opus) → N viewers in the simulator, the real time spent inside the shard divided by the
//! packets it forwarded. Clients are not counted.
//!
//! ```sh
//! cargo run --release -p ringcast-sim --example shard_cost -- 200 5   # viewers, virtual seconds
//! cargo run --release -p ringcast-sim --example shard_cost -- 200 5 simulcast
//! cargo run --release -p ringcast-sim --example shard_cost -- rooms 30 6 5  # rooms, members, s
//! ```
//!
//! `simulcast`: the publisher sends three VP8 layers (320x180, 640x360, 1280x720 at ~150 k,
//! 600 k and 2.5 Mbit/s); each viewer gets the one its bandwidth estimate chooses (all on clean
//! 1 ms links, so they climb to the top one). `nocache` after it turns the keyframe cache off.
//!
//! `rooms R P`: R group calls of P members instead, each member publishing VP8 (~500 kbit/s) and
//! Opus and receiving with 5 video and 3 audio slots, as `ringcast-loadtest rooms` does: a
//! packet fans out to a few members, not to hundreds, so what the shard does once per received
//! packet weighs on each forwarded one. Printed beside it: the shard's busy time per received
//! packet, the part a fan-out shares.

use std::time::Duration;

use ringcast_core::ShardId;
use ringcast_sim::{MemberConfig, PublisherConfig, Sim, SimConfig};

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    if words.first().is_some_and(|w| w == "rooms") {
        let number = |i: usize, default: u64| {
            words
                .get(i)
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(default)
        };
        rooms(number(1, 30) as usize, number(2, 6) as usize, number(3, 5));
        return;
    }
    broadcast(&words);
}

/// 1 publisher → N viewers.
fn broadcast(words: &[String]) {
    let mut args = words.iter().map(|a| a.parse::<u64>().ok());
    let viewers = args.next().flatten().unwrap_or(200) as usize;
    let seconds = args.next().flatten().unwrap_or(5);
    let simulcast = words.iter().any(|w| w == "simulcast");
    let mut config = SimConfig {
        seed: 1,
        ..SimConfig::default()
    };
    if words.iter().any(|w| w == "nocache") {
        config.shard.gop_cache_bytes = 0;
    }
    let mut sim = Sim::new(config);
    let publisher = if simulcast {
        PublisherConfig::simulcast_3()
    } else {
        PublisherConfig::video_2500kbps()
    };
    sim.add_broadcast("s1", publisher, viewers, Duration::from_secs(5));
    // Simulcast viewers start on the middle layer and climb in a few seconds.
    sim.run_for(Duration::from_secs(if simulcast { 8 } else { 1 }));
    let cost = measure(&mut sim, seconds);
    println!("1 -> {viewers}: {cost}");
}

/// R rooms of P members.
fn rooms(rooms: usize, members: usize, seconds: u64) {
    let mut sim = Sim::new(SimConfig {
        seed: 1,
        ..SimConfig::default()
    });
    let send = PublisherConfig {
        delta_size: (1_500, 2_300),
        ..PublisherConfig::default()
    };
    let mut ids = Vec::new();
    for r in 0..rooms {
        for m in 0..members {
            let config = MemberConfig {
                send: send.clone(),
                ..MemberConfig::default()
            };
            let id = sim.join_room(&format!("r{r}"), &format!("m{m}"), config);
            // Some louder than others, so the audio slots have speakers to carry.
            sim.set_audio_level(id, (20 + 15 * m).min(120) as u8);
            ids.push(id);
        }
    }
    sim.connect_members(&ids, Duration::from_secs(10));
    sim.run_for(Duration::from_secs(2));
    let cost = measure(&mut sim, seconds);
    println!("{rooms} rooms x {members}: {cost}");
}

/// The shard's real busy time over `seconds` of virtual time, per packet forwarded and per
/// packet received.
fn measure(sim: &mut Sim, seconds: u64) -> String {
    let counts = |sim: &Sim| {
        let stats = sim.shard(ShardId(0)).stats();
        let at_once = stats.rtp_forwarded_at_once;
        (sim.shard_busy(), stats.rtp_forwarded, stats.rtp_in, at_once)
    };
    let (busy0, fwd0, in0, once0) = counts(sim);
    sim.run_for(Duration::from_secs(seconds));
    let (busy1, fwd1, in1, once1) = counts(sim);
    let (forwarded, received) = (fwd1 - fwd0, in1 - in0);
    let at_once = 100.0 * (once1 - once0) as f64 / forwarded.max(1) as f64;
    let busy = (busy1 - busy0).as_secs_f64() * 1e6;
    format!(
        "{forwarded} packets forwarded ({at_once:.0} % at once, {received} received) in {seconds} s \
         of virtual time; shard busy {:.3} s; {:.2} us per forwarded packet, {:.2} us per \
         received packet",
        busy / 1e6,
        busy / forwarded as f64,
        busy / received.max(1) as f64
    )
}
