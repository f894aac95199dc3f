//! Viewers that ask for a simulcast layer, with the WHEP layer extension: the 201 of the WHEP
//! POST carries `Link: <url>; rel="urn:ietf:params:whep:ext:core:layer"`, and a `POST` of
//! `application/json` `{"mediaId": "<mid>", "encodingId": "<rid>"}` to that URL pins the layer.

use crate::http;

/// The link relation of the layer extension.
pub const LAYER_REL: &str = "urn:ietf:params:whep:ext:core:layer";

/// Which layer the viewers of a run ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerLayer {
    /// None: the server chooses (no layer request).
    Auto,
    /// Spread over the publisher's layers: viewer `i` of a stream asks for layer `i mod N`.
    Mixed,
    /// This rid, for every viewer.
    Rid(String),
}

impl ViewerLayer {
    /// `auto`, `mixed` or a rid (1 to 16 characters of `[A-Za-z0-9_-]`, RFC 8851's rid-syntax).
    pub fn parse(text: &str) -> Result<ViewerLayer, String> {
        match text {
            "auto" => Ok(ViewerLayer::Auto),
            "mixed" => Ok(ViewerLayer::Mixed),
            rid if (1..=16).contains(&rid.len())
                && rid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Ok(ViewerLayer::Rid(rid.to_string()))
            }
            _ => Err(format!(
                "`{text}`: expected auto, mixed or a rid (letters, digits, - and _)"
            )),
        }
    }

    /// The rid the `index`-th viewer of a stream asks for, of the publisher's `rids`.
    pub fn pick(&self, index: usize, rids: &[String]) -> Option<String> {
        match self {
            ViewerLayer::Auto => None,
            ViewerLayer::Mixed if rids.is_empty() => None,
            ViewerLayer::Mixed => Some(rids[index % rids.len()].clone()),
            ViewerLayer::Rid(rid) => Some(rid.clone()),
        }
    }
}

/// The target of the first link with relation `rel` among `Link` header values (RFC 8288:
/// comma-separated `<target>; param=value` entries, `rel` a space-separated list, quoted or
/// not).
pub fn link_target<'a>(values: impl IntoIterator<Item = &'a str>, rel: &str) -> Option<String> {
    values.into_iter().flat_map(split_links).find_map(|link| {
        let link = link.trim();
        let rest = link.strip_prefix('<')?;
        let (target, params) = rest.split_once('>')?;
        let has_rel = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case(rel))
        });
        has_rel.then(|| target.trim().to_string())
    })
}

/// The body of a layer request.
pub fn request_body(mid: &str, rid: &str) -> String {
    serde_json::json!({ "mediaId": mid, "encodingId": rid }).to_string()
}

/// POST the layer request for `rid` on the viewer's media `mid` to `url`; on failure, the
/// cause as it goes into the errors table.
pub fn ask(agent: &ureq::Agent, url: &str, mid: &str, rid: &str) -> Result<(), String> {
    let response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(request_body(mid, rid))
        .map_err(|e| format!("layer {}", http::cause(&e)))?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        status => Err(format!("layer http {status}")),
    }
}

/// Split one `Link` header value into its links: at commas outside `<…>` and quotes.
fn split_links(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_target, mut in_quotes) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !in_quotes => in_target = true,
            '>' if !in_quotes => in_target = false,
            '"' if !in_target => in_quotes = !in_quotes,
            ',' if !in_target && !in_quotes => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_layer_link_among_others() {
        let sse = r#"</whep/s/abc/sse>; rel="urn:ietf:params:whep:ext:core:server-sent-events"; events="layers,active""#;
        let layer = r#"</whep/s/abc/layer>; rel="urn:ietf:params:whep:ext:core:layer""#;
        let ice = r#"<stun:stun.example.net>; rel="ice-server""#;
        // One header with several links, commas inside quotes and targets.
        let joined = format!("{ice}, {sse}, {layer}");
        assert_eq!(
            link_target([joined.as_str()], LAYER_REL).as_deref(),
            Some("/whep/s/abc/layer")
        );
        // One link per header.
        assert_eq!(
            link_target([ice, sse, layer], LAYER_REL).as_deref(),
            Some("/whep/s/abc/layer")
        );
        // Unquoted, in a rel list, any case.
        let listed = "<http://h/l?a=1,2>;REL=\"other urn:ietf:params:whep:ext:core:layer\"";
        assert_eq!(
            link_target([listed], LAYER_REL).as_deref(),
            Some("http://h/l?a=1,2")
        );
        let bare = "</x>; rel=urn:ietf:params:whep:ext:core:layer";
        assert_eq!(link_target([bare], LAYER_REL).as_deref(), Some("/x"));
        // None there, or garbage.
        assert_eq!(link_target([sse, ice], LAYER_REL), None);
        assert_eq!(
            link_target(["garbage", "<unterminated; rel=x", ""], LAYER_REL),
            None
        );
        assert_eq!(link_target([], LAYER_REL), None);
    }

    #[test]
    fn the_request_body_names_mid_and_rid() {
        let body: serde_json::Value = serde_json::from_str(&request_body("1", "q")).unwrap();
        assert_eq!(body, serde_json::json!({"mediaId": "1", "encodingId": "q"}));
    }

    #[test]
    fn viewers_spread_over_the_layers() {
        let rids: Vec<String> = ["0", "1", "2"].map(String::from).to_vec();
        let mixed = ViewerLayer::parse("mixed").unwrap();
        let picks: Vec<Option<String>> = (0..6).map(|i| mixed.pick(i, &rids)).collect();
        let expected: Vec<Option<String>> = ["0", "1", "2", "0", "1", "2"]
            .map(|r| Some(r.to_string()))
            .to_vec();
        assert_eq!(picks, expected);
        assert_eq!(ViewerLayer::parse("auto").unwrap().pick(3, &rids), None);
        assert_eq!(
            ViewerLayer::parse("h").unwrap().pick(3, &rids),
            Some("h".into())
        );
        assert_eq!(mixed.pick(0, &[]), None);
        for bad in ["", "a b", "x;y", "seventeen-chars-x"] {
            assert!(ViewerLayer::parse(bad).is_err(), "{bad}");
        }
    }
}
