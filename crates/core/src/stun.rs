//! Just enough STUN (RFC 8489) to demultiplex: is this datagram a STUN message, and which local
//! ICE ufrag does its USERNAME name. Integrity is checked by str0m when the peer takes it.

/// The local ufrag (the part before `:`) of a STUN binding request's USERNAME, if `data` is a
/// well-formed STUN message with one.
pub fn local_ufrag(data: &[u8]) -> Option<&str> {
    if !is_stun(data) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let body = data.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        let value = body.get(i + 4..i + 4 + alen)?;
        if typ == 0x0006 {
            let user = std::str::from_utf8(value).ok()?;
            return user.split(':').next().filter(|u| !u.is_empty());
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// First two bits zero, length a multiple of 4, and the magic cookie.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20
        && data[0] & 0xc0 == 0
        && data[2..4] != [0xff, 0xff]
        && u16::from_be_bytes([data[2], data[3]]).is_multiple_of(4)
        && data[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(user: &str) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(user.len() as u16).to_be_bytes());
        attr.extend_from_slice(user.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
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
}
