//! The core's hot path in memory: one RTP packet from a publisher in → N viewers out, through a
//! real `ringcast_core::Shard` with str0m peers on the simulator's network (SRTP, RTCP, timers,
//! all of it), no sockets.
//!
//! One iteration is one video packet the shard receives from the publisher and forwards to all
//! N viewers. The time measured is the real time spent inside the shard only
//! ([`Sim::shard_busy`]): the simulated clients' time is not counted, so a run takes several
//! times longer on the wall than criterion's measurement time. Everything the shard does in the
//! same virtual interval (RTCP, consent checks, timers) is part of the cost, as in production.
//! The throughput is N forwarded packets per iteration, so criterion also prints forwarded
//! packets per second of shard time.
//!
//! ```sh
//! cargo bench -p ringcast-bench
//! ```

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringcast_core::ShardId;
use ringcast_sim::{PublisherConfig, Sim, SimConfig};

/// Viewers per publisher.
const VIEWERS: [usize; 3] = [1, 10, 100];

/// Virtual time the simulator runs between checks of the shard's counters.
const STEP: Duration = Duration::from_millis(10);

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for viewers in VIEWERS {
        // Built once per case, outside the timed loop; iterations go on from where the last
        // one left the simulation.
        let mut sim = connected(viewers);
        group.throughput(Throughput::Elements(viewers as u64));
        group.bench_function(BenchmarkId::new("video_1200B", viewers), |b| {
            b.iter_custom(|iters| shard_time(&mut sim, iters))
        });
    }
    group.finish();
}

/// A shard with one video publisher (≈ 2.5 Mbit/s, full-size packets) and `viewers` viewers,
/// all connected, media flowing for a second of virtual time.
fn connected(viewers: usize) -> Sim {
    let mut sim = Sim::new(SimConfig {
        seed: 1,
        ..SimConfig::default()
    });
    sim.add_broadcast(
        "s1",
        PublisherConfig {
            audio: false,
            ..PublisherConfig::video_2500kbps()
        },
        viewers,
        Duration::from_secs(10),
    );
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.shard(ShardId(0)).stats().rtp_forwarded > 0,
        "nothing forwarded after connecting"
    );
    sim
}

/// Run the simulation until the shard has taken at least `packets` RTP packets from the
/// publisher; the shard's busy time, scaled to exactly `packets`.
fn shard_time(sim: &mut Sim, packets: u64) -> Duration {
    let shard = ShardId(0);
    let (busy0, in0) = (sim.shard_busy(), sim.shard(shard).stats().rtp_in);
    let mut received = 0;
    while received < packets {
        sim.run_for(STEP);
        received = sim.shard(shard).stats().rtp_in - in0;
    }
    let busy = sim.shard_busy() - busy0;
    busy.mul_f64(packets as f64 / received as f64)
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
