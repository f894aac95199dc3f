//! Joining a ringcast room: one peer connection whose offer publishes the participant's audio
//! and video, reserves its receive slots and carries the `ringcast` data channel, POSTed to
//! `/rooms/{room}?name=…` (the wire contract in the README's "Rooms"); the answer names the
//! participant (`X-Ringcast-Participant`) and the session's URL (`Location`) to leave with.

use std::time::Instant;

use str0m::change::SdpAnswer;

use crate::http;
use crate::negotiation::{
    Negotiation, member_offer, new_rtc, publisher_pts, reachable_candidates_only,
};
use crate::session::{Job, Joined, Role};

/// The header that names the participant in a `201` to `POST /rooms/{room}`.
pub const PARTICIPANT_HEADER: &str = "x-ringcast-participant";

/// Open a participant's session in its room; on failure, the cause as the errors table names
/// it (`http 422: <the server's reason>` for a refused offer).
pub fn join(
    agent: &ureq::Agent,
    base: &str,
    negotiation: &Negotiation,
    job: Job,
) -> Result<Joined, String> {
    let Role::Member(member) = &job.role else {
        return Err("not a participant".into());
    };
    let mut rtc = new_rtc(negotiation.codec, job.local)?;
    let (audio, video, slots, offer, pending) = member_offer(&mut rtc, negotiation.slots)?;
    let posted = Instant::now();
    let url = format!(
        "{}/rooms/{}?name=p{}",
        base.trim_end_matches('/'),
        member.room,
        member.position
    );
    let mut response = agent
        .post(&url)
        .header("Content-Type", "application/sdp")
        .header("X-Forwarded-For", job.local.ip().to_string())
        .send(offer.to_sdp_string())
        .map_err(|e| http::cause(&e))?;
    let status = response.status().as_u16();
    if status != 201 {
        // The contract's refusals carry their reason as text: keep its first words.
        let reason = response.body_mut().read_to_string().unwrap_or_default();
        let reason: String = reason
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        return Err(if reason.trim().is_empty() {
            format!("http {status}")
        } else {
            format!("http {status}: {}", reason.trim())
        });
    }
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(|l| http::absolute(base, l))
        .ok_or("http no location")?;
    let participant = response
        .headers()
        .get(PARTICIPANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let settled = (|| {
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| http::cause(&e))?;
        let body = reachable_candidates_only(&body, base);
        let answer = SdpAnswer::from_sdp_string(&body).map_err(|_| "sdp".to_string())?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|_| "sdp".to_string())?;
        publisher_pts(&rtc, audio, video, negotiation)
    })();
    let pts = match settled {
        Ok(pts) => pts,
        Err(cause) => {
            // The participant exists on the server: leave, it is of no use.
            let _ = agent.delete(&location).call();
            return Err(cause);
        }
    };
    if participant.is_none() {
        tracing::warn!("no {PARTICIPANT_HEADER} header in the answer");
    }
    Ok(Joined {
        job,
        rtc,
        mids: [audio, video],
        pts: Some(pts),
        posted,
        location,
        slots,
        participant,
    })
}
