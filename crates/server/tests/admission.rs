//! Issue 9, finding 1, against the real binary on its defaults: one client posting offers in a
//! loop filled every shard. Now it gets 429 with `Retry-After` long before, with seats left.

mod common;

use std::time::Duration;

const OFFER_FILE: &str = include_str!("../../../tests/fixtures/sdp/chromium-whip.sdp");

fn offer() -> String {
    OFFER_FILE
        .split("---- answer ----")
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn one_client_posting_in_a_loop_gets_429_before_it_fills_the_server() {
    let server = common::start_server(2);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let offer = offer();
    // The defaults: a burst of 50, then 5 a second, and at most 100 sessions per address
    // (these never connect, so they stay for the 30 s connect timeout). Whatever the speed of
    // this machine, one of the two stops the loop by the 101st request.
    let mut created = 0;
    let refusal = (0..101).find_map(|i| {
        let mut res = agent
            .post(format!("{}/whip/flood{i}", server.http))
            .header("Content-Type", "application/sdp")
            .send(offer.as_str())
            .unwrap();
        match res.status().as_u16() {
            201 => {
                created += 1;
                None
            }
            status => {
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                Some((
                    status,
                    retry_after,
                    res.body_mut().read_to_string().unwrap(),
                ))
            }
        }
    });
    let (status, retry_after, reason) = refusal.expect("a refusal within 101 requests");
    assert_eq!(status, 429, "{reason}");
    assert!(
        retry_after
            .and_then(|s| s.parse::<u32>().ok())
            .is_some_and(|s| s >= 1),
        "{reason}"
    );
    assert!(
        reason.contains("sessions") && !reason.trim().contains('\n'),
        "{reason}"
    );
    assert!((50..=100).contains(&created), "{created}");
    // The server still answers, and holds what was created, far below its 2 x 1000 seats.
    let health = agent
        .get(format!("{}/healthz", server.http))
        .call()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
