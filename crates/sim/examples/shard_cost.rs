//! What a shard costs per forwarded packet, without sockets or kernel: 1 publisher (VP8 +
//! Opus) → N viewers in the simulator, the real time spent inside the shard divided by the
//! packets it forwarded. Clients are not counted.
//!
//! ```sh
//! cargo run --release -p ringcast-sim --example shard_cost -- 200 5   # viewers, virtual seconds
//! cargo run --release -p ringcast-sim --example shard_cost -- 200 5 simulcast
//! ```
//!
//! `simulcast`: the publisher sends three VP8 layers (320x180, 640x360, 1280x720 at ~150 k,
//! 600 k and 2.5 Mbit/s); each viewer gets the one its bandwidth estimate chooses (all on clean
//! 1 ms links, so they climb to the top one). `nocache` after it turns the keyframe cache off.

use std::time::Duration;

use ringcast_core::ShardId;
use ringcast_sim::{PublisherConfig, Sim, SimConfig};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let viewers = args.next().flatten().unwrap_or(200) as usize;
    let seconds = args.next().flatten().unwrap_or(5);
    let words: Vec<String> = std::env::args().skip(3).collect();
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
    let (busy0, fwd0) = (
        sim.shard_busy(),
        sim.shard(ShardId(0)).stats().rtp_forwarded,
    );
    sim.run_for(Duration::from_secs(seconds));
    let (busy1, fwd1) = (
        sim.shard_busy(),
        sim.shard(ShardId(0)).stats().rtp_forwarded,
    );
    let packets = fwd1 - fwd0;
    let busy = busy1 - busy0;
    println!(
        "1 -> {viewers}: {packets} packets forwarded in {seconds} s of virtual time; shard busy {:.3} s; {:.2} us per forwarded packet",
        busy.as_secs_f64(),
        busy.as_secs_f64() * 1e6 / packets as f64
    );
}
