//! The WHEP extensions against the real binary: the layer selection extension and the
//! server-sent events extension, as the 201 announces them and as Broadcast Box and the
//! medooze `whep.js` use them. A simulcast publisher's offer (rids `q`, `h`, `f`) is enough:
//! a stream is live, with its layers, from its publisher's 201 on.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{start_server, start_server_with};
use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, Simulcast, SimulcastLayer};
use str0m::{Candidate, RtcConfig};

const LAYER_REL: &str = "urn:ietf:params:whep:ext:core:layer";
const SSE_REL: &str = "urn:ietf:params:whep:ext:core:server-sent-events";

/// An offer with audio and video: a publisher's (sending, simulcast with `rids` when not
/// empty) or a viewer's (receiving).
fn offer(publish: bool, rids: &[&str]) -> String {
    offer_and_video_mid(publish, rids).0
}

/// The same, and the mid str0m gave its video section (random, not the m-line index).
fn offer_and_video_mid(publish: bool, rids: &[&str]) -> (String, String) {
    let mut rtc = RtcConfig::new()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host("127.0.0.1:9".parse().unwrap(), "udp").unwrap());
    let dir = if publish {
        Direction::SendOnly
    } else {
        Direction::RecvOnly
    };
    let simulcast = (!rids.is_empty()).then(|| {
        let mut s = Simulcast::new();
        s.send = rids.iter().map(|r| SimulcastLayer::new(r)).collect();
        s
    });
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, dir, None, None, None);
    let video = api.add_media(MediaKind::Video, dir, None, None, simulcast);
    let (offer, _pending): (SdpOffer, _) = api.apply().unwrap();
    (offer.to_sdp_string(), video.to_string())
}

/// A created session: its URL and the `Link` headers of the 201.
struct Created {
    location: String,
    links: Vec<String>,
}

fn post_offer(http: &str, path: &str, sdp: String) -> Created {
    let res = ureq::post(format!("{http}{path}"))
        .header("Content-Type", "application/sdp")
        .send(sdp)
        .expect("201");
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let links = res
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    Created { location, links }
}

/// The URL of the `Link` with relation `rel`.
fn link(links: &[String], rel: &str) -> String {
    let l = links
        .iter()
        .find(|l| l.contains(&format!("rel=\"{rel}\"")))
        .unwrap_or_else(|| panic!("a Link with rel {rel}: {links:?}"));
    l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_string()
}

/// A request with any method and content type; (status, body). Errors are answers here.
fn request(
    http: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .build()
        .into();
    let url = format!("{http}{path}");
    let req = ureq::http::Request::builder().method(method).uri(&url);
    let req = match content_type {
        Some(t) => req.header("Content-Type", t),
        None => req,
    };
    let mut res = agent.run(req.body(body.to_string()).unwrap()).unwrap();
    let status = res.status().as_u16();
    (status, res.body_mut().read_to_string().unwrap_or_default())
}

/// An open event stream, read raw: events are whole lines, whatever chunks carry them.
struct EventReader {
    tcp: TcpStream,
    text: String,
    /// Events taken so far (name, data).
    taken: usize,
}

impl EventReader {
    /// `GET path`; panics unless it is a `text/event-stream` 200.
    fn open(http: &str, path: &str) -> EventReader {
        let addr = http.trim_start_matches("http://");
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut r = EventReader {
            tcp,
            text: String::new(),
            taken: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !r.text.contains("\r\n\r\n") {
            assert!(Instant::now() < deadline, "no response head: {:?}", r.text);
            r.read();
        }
        let head = r
            .text
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        r
    }

    /// Read what arrived (up to the read timeout); false once the server ended the stream.
    fn read(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        match self.tcp.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
                // The last chunk of a chunked body: the stream is over.
                !self.text.ends_with("\r\n0\r\n\r\n")
            }
            Err(_) => true,
        }
    }

    fn events(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut name = None;
        for line in self.text.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_string());
            } else if let Some(d) = line.strip_prefix("data: ")
                && let Some(n) = name.take()
            {
                out.push((n, d.to_string()));
            }
        }
        out
    }

    /// The next event named `name` (skipping others), within 5 s.
    fn next(&mut self, name: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let events = self.events();
            if let Some(i) = events[self.taken..].iter().position(|(n, _)| n == name) {
                let (_, data) = &events[self.taken + i];
                self.taken += i + 1;
                return serde_json::from_str(data).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no {name} event; got {:?}",
                &events[self.taken..]
            );
            assert!(self.read(), "the stream ended before a {name} event");
        }
    }

    /// The server ends the stream within `within`.
    fn ends_within(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.read() {
            assert!(Instant::now() < deadline, "the event stream did not end");
        }
    }
}

/// Publisher (rids q, h, f) and one viewer of `stream`, and the viewer's video mid.
fn live_stream(http: &str, stream: &str) -> (Created, Created, String) {
    let publisher = post_offer(
        http,
        &format!("/whip/{stream}"),
        offer(true, &["q", "h", "f"]),
    );
    let (sdp, mid) = offer_and_video_mid(false, &[]);
    let viewer = post_offer(http, &format!("/whep/{stream}"), sdp);
    (publisher, viewer, mid)
}

#[test]
fn the_whep_201_links_both_extensions_and_cors_exposes_them() {
    let server = start_server(1);
    let (publisher, viewer, _) = live_stream(&server.http, "links");
    assert_eq!(
        link(&viewer.links, LAYER_REL),
        format!("{}/layer", viewer.location)
    );
    assert_eq!(
        link(&viewer.links, SSE_REL),
        format!("{}/sse", viewer.location)
    );
    let sse = viewer.links.iter().find(|l| l.contains(SSE_REL)).unwrap();
    assert!(
        sse.contains(r#"events="active,inactive,layers,viewercount""#),
        "{sse}"
    );
    assert!(
        !publisher
            .links
            .iter()
            .any(|l| l.contains("urn:ietf:params:whep")),
        "a WHIP session has no WHEP extensions: {:?}",
        publisher.links
    );
    // A player on another origin can read them.
    let res = ureq::post(format!("{}/whep/links", server.http))
        .header("Content-Type", "application/sdp")
        .header("Origin", "https://player.example")
        .send(offer(false, &[]))
        .unwrap();
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("link") && exposed.contains("location"),
        "{exposed}"
    );
}

#[test]
fn a_layer_is_pinned_by_mid_and_rid_and_bad_selections_get_400_with_the_reason() {
    let server = start_server(1);
    let http = &server.http;
    let (_, viewer, mid) = live_stream(http, "pin");
    let layer = link(&viewer.links, LAYER_REL);
    let json = Some("application/json");
    let by_mid = format!(r#"{{"mediaId":"{mid}","encodingId":"f"}}"#);
    // The viewer's offer is audio (m-line 0) then video (m-line 1, mid `mid`).
    let cases: [(&str, Option<&str>, &str, u16, &str); 10] = [
        ("POST", json, &by_mid, 200, ""),
        ("POST", json, r#"{"mediaId":"1","encodingId":"h"}"#, 200, ""),
        ("POST", json, r#"{"mediaId":1,"encodingId":"h"}"#, 200, ""),
        // Left out, mediaId is the first video section.
        ("POST", json, r#"{"encodingId":"q"}"#, 200, ""),
        // Back to automatic: an empty object, or DELETE.
        ("POST", json, "{}", 200, ""),
        (
            "POST",
            json,
            r#"{"mediaId":"0","encodingId":"h"}"#,
            400,
            "mediaId",
        ),
        (
            "POST",
            json,
            r#"{"mediaId":"1","encodingId":"x"}"#,
            400,
            "q, h, f",
        ),
        (
            "POST",
            json,
            r#"{"mediaId":"1","encodingId":"h""#,
            400,
            "JSON",
        ),
        (
            "POST",
            Some("text/plain"),
            r#"{"encodingId":"h"}"#,
            400,
            "application/json",
        ),
        (
            "POST",
            json,
            r#"{"encodingId":"h","spatialLayerId":1}"#,
            400,
            "spatialLayerId",
        ),
    ];
    for (method, content_type, body, want, reason) in cases {
        let (status, text) = request(http, method, &layer, content_type, body);
        assert_eq!(status, want, "{body}: {text}");
        assert!(
            text.contains(reason),
            "{body}: the reason names {reason}: {text}"
        );
    }
    assert_eq!(request(http, "DELETE", &layer, None, "").0, 200);
    // Another session's URL, or a publisher's: 404.
    let unknown = layer.replace(&viewer.location, "/whep/pin/8000000000000001");
    assert_eq!(
        request(http, "POST", &unknown, json, r#"{"encodingId":"h"}"#).0,
        404
    );
    // A stream without simulcast has nothing to pin.
    let (_, plain) = {
        let p = post_offer(http, "/whip/plain", offer(true, &[]));
        (p, post_offer(http, "/whep/plain", offer(false, &[])))
    };
    let (status, text) = request(
        http,
        "POST",
        &link(&plain.links, LAYER_REL),
        json,
        r#"{"encodingId":"h"}"#,
    );
    assert_eq!(status, 400);
    assert!(text.contains("no simulcast"), "{text}");
    // The session gone, so is its layer resource.
    assert_eq!(request(http, "DELETE", &viewer.location, None, "").0, 200);
    assert_eq!(request(http, "DELETE", &layer, None, "").0, 404);
}

#[test]
fn the_event_stream_sends_viewercount_layers_active_and_inactive_and_ends_with_its_session() {
    // An event stream is a request in flight, not an idle connection: it outlives the idle
    // timeout.
    let server = start_server_with(1, &[("RINGCAST_HTTP_IDLE_TIMEOUT_MS", "300")]);
    let http = &server.http;
    let (publisher, viewer, mid) = live_stream(http, "sse");
    // Broadcast Box's way: GET on the extension URL.
    let mut events = EventReader::open(http, &link(&viewer.links, SSE_REL));
    assert_eq!(events.next("active"), serde_json::json!({}));
    assert_eq!(events.next("viewercount")["viewercount"], 1);
    let layers = events.next("layers");
    // Keyed by the viewer's video mid.
    let video = &layers[&mid];
    let all: Vec<&str> = video["active"]
        .as_array()
        .unwrap()
        .iter()
        .chain(video["inactive"].as_array().unwrap())
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, ["f", "h", "q"], "every announced rid: {layers}");
    // A second viewer joins, after more than the idle timeout.
    std::thread::sleep(Duration::from_secs(1));
    let second = post_offer(http, "/whep/sse", offer(false, &[]));
    assert_eq!(events.next("viewercount")["viewercount"], 2);
    // The publisher leaves.
    assert_eq!(
        request(http, "DELETE", &publisher.location, None, "").0,
        200
    );
    events.next("inactive");
    // The session ends, and its event stream with it.
    assert_eq!(request(http, "DELETE", &viewer.location, None, "").0, 200);
    events.ends_within(Duration::from_secs(5));
    assert_eq!(request(http, "DELETE", &second.location, None, "").0, 200);
}

#[test]
fn posted_event_streams_filter_events_are_bounded_and_end_on_delete() {
    let server = start_server(1);
    let http = &server.http;
    let (_, viewer, _) = live_stream(http, "posted");
    let sse = link(&viewer.links, SSE_REL);
    // The draft's and whep.js's way: POST the events wanted, GET the Location.
    let res = ureq::post(format!("{http}{sse}"))
        .header("Content-Type", "application/json")
        .send(r#"["viewercount"]"#)
        .unwrap();
    assert_eq!(res.status(), 201);
    let stream = res.headers()["location"].to_str().unwrap().to_string();
    assert!(stream.starts_with(&format!("{sse}/")), "{stream}");
    let mut events = EventReader::open(http, &stream);
    assert_eq!(events.next("viewercount")["viewercount"], 1);
    // Only what was asked for.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        events.read();
    }
    let names: Vec<String> = events.events().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["viewercount"]);
    assert_eq!(
        request(
            http,
            "POST",
            &sse,
            Some("application/json"),
            r#"["reactions"]"#
        )
        .0,
        400
    );
    // At most four per session.
    for _ in 1..4 {
        assert_eq!(request(http, "POST", &sse, None, "").0, 201);
    }
    let (status, text) = request(http, "POST", &sse, None, "");
    assert_eq!(status, 429, "{text}");
    // DELETE ends it; it is gone.
    assert_eq!(request(http, "DELETE", &stream, None, "").0, 200);
    events.ends_within(Duration::from_secs(5));
    assert_eq!(request(http, "GET", &stream, None, "").0, 404);
    assert_eq!(
        request(http, "POST", &sse, None, "").0,
        201,
        "its place is free"
    );
}
