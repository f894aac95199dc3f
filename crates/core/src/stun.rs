//! Just enough STUN (RFC 8489) to demultiplex: is this datagram a STUN message, which local ICE
//! ufrag does its USERNAME name, and does it nominate (USE-CANDIDATE). Integrity is checked by
//! str0m when the peer takes it.

/// The local ufrag (the part before `:`) of a STUN binding request's USERNAME, if `data` is a
/// well-formed STUN message with one.
pub fn local_ufrag(data: &[u8]) -> Option<&str> {
    let user = attributes(data)?.find(|&(typ, _)| typ == USERNAME)?.1;
    let user = std::str::from_utf8(user).ok()?;
    user.split(':').next().filter(|u| !u.is_empty())
}

/// The PRIORITY of a binding request that carries USE-CANDIDATE (the controlling agent
/// nominates the pair it arrived on), if `data` is one.
pub fn nomination_priority(data: &[u8]) -> Option<u32> {
    if !is_stun(data) || data[0..2] != BINDING_REQUEST {
        return None;
    }
    let mut nominates = false;
    let mut priority = None;
    for (typ, value) in attributes(data)? {
        match typ {
            USE_CANDIDATE => nominates = true,
            PRIORITY => priority = Some(u32::from_be_bytes(value.try_into().ok()?)),
            _ => {}
        }
    }
    priority.filter(|_| nominates)
}

/// First two bits zero, length a multiple of 4, and the magic cookie.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20
        && data[0] & 0xc0 == 0
        && data[2..4] != [0xff, 0xff]
        && u16::from_be_bytes([data[2], data[3]]).is_multiple_of(4)
        && data[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const USERNAME: u16 = 0x0006;
const PRIORITY: u16 = 0x0024;
const USE_CANDIDATE: u16 = 0x0025;

/// A STUN message's attributes as (type, value), in order; `None` if `data` is not STUN or its
/// length runs past the datagram. Iteration stops at an attribute that runs past the end.
fn attributes(data: &[u8]) -> Option<impl Iterator<Item = (u16, &[u8])>> {
    if !is_stun(data) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let body = data.get(20..20 + len)?;
    let mut i = 0;
    Some(std::iter::from_fn(move || {
        let header = body.get(i..i + 4)?;
        let typ = u16::from_be_bytes([header[0], header[1]]);
        let alen = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = body.get(i + 4..i + 4 + alen)?;
        i += 4 + alen.div_ceil(4) * 4;
        Some((typ, value))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(user: &str) -> Vec<u8> {
        message(&[(USERNAME, user.as_bytes())])
    }

    fn message(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut attr = Vec::new();
        for (typ, value) in attrs {
            attr.extend_from_slice(&typ.to_be_bytes());
            attr.extend_from_slice(&(value.len() as u16).to_be_bytes());
            attr.extend_from_slice(value);
            while attr.len() % 4 != 0 {
                attr.push(0);
            }
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn reads_username() {
        assert_eq!(local_ufrag(&binding("s1abcd:remote")), Some("s1abcd"));
        assert_eq!(local_ufrag(&binding(":remote")), None);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(local_ufrag(&[]), None);
        assert_eq!(local_ufrag(&[0x80; 40]), None);
        let mut m = binding("abc:def");
        m.truncate(25);
        assert_eq!(local_ufrag(&m), None);
        let mut m = binding("abc:def");
        m[22] = 0xff; // attribute length past the end
        assert_eq!(local_ufrag(&m), None);
        for n in 0..m.len() {
            let _ = local_ufrag(&m[..n]);
        }
    }

    #[test]
    fn reads_the_priority_of_a_nominating_request_only() {
        let user = (USERNAME, &b"s1abcd:remote"[..]);
        let prio = 1_845_501_695_u32.to_be_bytes();
        let nominating = message(&[user, (PRIORITY, &prio), (USE_CANDIDATE, &[])]);
        assert_eq!(nomination_priority(&nominating), Some(1_845_501_695));
        assert_eq!(
            nomination_priority(&message(&[user, (PRIORITY, &prio)])),
            None
        );
        assert_eq!(
            nomination_priority(&message(&[user, (USE_CANDIDATE, &[])])),
            None
        );
        let mut response = nominating.clone();
        response[0..2].copy_from_slice(&[0x01, 0x01]);
        assert_eq!(nomination_priority(&response), None);
        for n in 0..nominating.len() {
            let _ = nomination_priority(&nominating[..n]);
        }
    }
}
