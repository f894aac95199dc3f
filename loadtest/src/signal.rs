//! Signalling: build a peer's `Rtc`, negotiate it with the server, hand it to a worker.
//!
//! Two targets behind one [`Signaller`]: plain RFC 9725 / WHEP over HTTP/1.1 (ureq, no TLS), so
//! any server that speaks them can be loaded, and Janus's VideoRoom over its HTTP API
//! ([`crate::janus`]). Runs on the signalling threads, never on a media worker: building an
//! `Rtc` and the HTTP round trips take milliseconds.

use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::Direction;

use crate::http;
use crate::janus::Janus;
use crate::negotiation::{Negotiation, new_rtc, offer, publisher_pts, reachable_candidates_only};
use crate::room_join;
use crate::session::{Job, Joined, Role};
use crate::whep_layer;

/// The signalling the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// WHIP to publish, WHEP to play (ringcast, or any server that speaks them).
    Whip,
    /// Janus's VideoRoom plugin over Janus's HTTP API; one room per stream.
    Janus,
}

/// Opens and closes sessions with one server; shared by the signalling threads.
#[derive(Debug)]
pub enum Signaller {
    /// WHIP/WHEP at `base`.
    Whip {
        /// The server's base URL.
        base: String,
        /// Codecs and media.
        negotiation: Negotiation,
    },
    /// Janus VideoRoom.
    Janus(Janus),
}

impl Signaller {
    /// A signaller for `target` at `base`.
    pub fn new(target: Target, base: &str, negotiation: Negotiation, timeout: Duration) -> Self {
        match target {
            Target::Whip => Signaller::Whip {
                base: base.to_string(),
                negotiation,
            },
            Target::Janus => Signaller::Janus(Janus::new(base, negotiation, timeout)),
        }
    }

    /// Open one session; on failure, the cause as it goes into the errors table.
    pub fn join(&self, agent: &ureq::Agent, job: Job) -> Result<Joined, String> {
        match self {
            Signaller::Whip { base, negotiation } if matches!(job.role, Role::Member(_)) => {
                room_join::join(agent, base, negotiation, job)
            }
            Signaller::Whip { base, negotiation } => join(agent, base, negotiation, job),
            Signaller::Janus(janus) => janus.join(agent, job),
        }
    }

    /// Close a session `join` opened; on failure, the cause as it goes into the errors table
    /// (Janus: always `Ok`, its answers are not checked).
    pub fn leave(&self, agent: &ureq::Agent, location: &str) -> Result<(), String> {
        match self {
            Signaller::Whip { .. } => leave(agent, location),
            Signaller::Janus(janus) => {
                janus.leave(agent, location);
                Ok(())
            }
        }
    }

    /// After the last `leave`: release what the run set up on the server (Janus: the rooms
    /// it created) and stop background work (keepalives).
    pub fn finish(&self) {
        if let Signaller::Janus(janus) = self {
            janus.finish();
        }
    }
}

/// Open one WHIP/WHEP session; on failure, the cause as it goes into the errors table. A
/// viewer with a layer asks for it with the WHEP layer extension once the session is up.
fn join(
    agent: &ureq::Agent,
    base: &str,
    negotiation: &Negotiation,
    job: Job,
) -> Result<Joined, String> {
    let mut rtc = new_rtc(negotiation.codec, job.local)?;
    let (direction, path, simulcast) = match &job.role {
        Role::Publisher { stream, .. } => (
            Direction::SendOnly,
            format!("/whip/{stream}"),
            &negotiation.layers[..],
        ),
        Role::Viewer { stream, .. } => (Direction::RecvOnly, format!("/whep/{stream}"), &[][..]),
        Role::Member(_) => return Err("a participant joins a room".into()),
    };
    let (audio, video, offer, pending) = offer(&mut rtc, direction, negotiation.video, simulcast)?;

    let posted = Instant::now();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    // The session's own address as the client's: a server that trusts this host as a proxy
    // (ringcast: limits.trusted_proxies) then applies its per-client limits per session, as
    // for real clients; any other server ignores it.
    let mut response = agent
        .post(&url)
        .header("Content-Type", "application/sdp")
        .header("X-Forwarded-For", job.local.ip().to_string())
        .send(offer.to_sdp_string())
        .map_err(|e| http::cause(&e))?;
    let status = response.status().as_u16();
    if status != 201 && status != 200 {
        return Err(format!("http {status}"));
    }
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(|l| http::absolute(base, l))
        .ok_or("http no location")?;
    let layer = match &job.role {
        Role::Viewer {
            layer: Some(rid), ..
        } => {
            let links = response
                .headers()
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok());
            match whep_layer::link_target(links, whep_layer::LAYER_REL) {
                Some(url) => Some((http::absolute(base, &url), rid.clone())),
                None => {
                    // The session exists on the server: close it, it is of no use.
                    let _ = leave(agent, &location);
                    return Err("whep no layer link".into());
                }
            }
        }
        _ => None,
    };
    let settled = (|| {
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| http::cause(&e))?;
        // The layer first: the session exists once the 201 is in, and the server may start
        // the media on the asked-for layer (from its keyframe cache) at once.
        if let Some((url, rid)) = &layer {
            whep_layer::ask(agent, url, &video.to_string(), rid)?;
        }
        let body = reachable_candidates_only(&body, base);
        let answer = SdpAnswer::from_sdp_string(&body).map_err(|_| "sdp".to_string())?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|_| "sdp".to_string())?;
        Ok::<(), String>(())
    })();
    if let Err(cause) = settled {
        if layer.is_some() {
            let _ = leave(agent, &location);
        }
        return Err(cause);
    }

    let pts = match job.role {
        Role::Publisher { .. } => Some(publisher_pts(&rtc, audio, video, negotiation)?),
        Role::Viewer { .. } | Role::Member(_) => None,
    };
    Ok(Joined {
        job,
        rtc,
        mids: [audio, video],
        pts,
        posted,
        location,
        slots: Vec::new(),
        participant: None,
    })
}

/// DELETE a session; a refusal or a failed request is the cause as the errors table names it.
fn leave(agent: &ureq::Agent, location: &str) -> Result<(), String> {
    let response = agent.delete(location).call().map_err(|e| http::cause(&e))?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        status => Err(format!("http {status}")),
    }
}
