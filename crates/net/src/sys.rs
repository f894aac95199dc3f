//! Socket plumbing both engines share: socket addresses to and from `sockaddr_storage`,
//! control messages (pktinfo in and out, `UDP_SEGMENT` out, `UDP_GRO` in), socket options.

use std::io;
use std::net::UdpSocket;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;

/// Control-message space for one datagram, aligned for `cmsghdr`; room for two pktinfo
/// messages (an IPv6 socket may get `IP_PKTINFO` and `IPV6_PKTINFO` for an IPv4 datagram).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct Control(pub(crate) [u8; CONTROL_LEN]);

pub(crate) const CONTROL_LEN: usize = 96;

impl Default for Control {
    fn default() -> Self {
        Control([0; CONTROL_LEN])
    }
}

pub(crate) fn zeroed_sockaddr() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain integers; all zeroes is a valid (AF_UNSPEC) value.
    unsafe { std::mem::zeroed() }
}

/// `addr` as the socket's family can send to it: IPv4 on an IPv6 socket becomes v4-mapped, a
/// v4-mapped address on an IPv4 socket becomes IPv4; anything else IPv6 on an IPv4 socket is
/// unreachable.
pub(crate) fn socket_family_addr(addr: SocketAddr, ipv6_socket: bool) -> Option<SocketAddr> {
    match (addr, ipv6_socket) {
        (SocketAddr::V4(_), false) | (SocketAddr::V6(_), true) => Some(addr),
        (SocketAddr::V4(v4), true) => Some(SocketAddr::V6(SocketAddrV6::new(
            v4.ip().to_ipv6_mapped(),
            v4.port(),
            0,
            0,
        ))),
        (SocketAddr::V6(v6), false) => v6
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddr::V4(SocketAddrV4::new(ip, v6.port()))),
    }
}

/// Write `addr` into `storage`; returns the length of the address written.
pub(crate) fn write_sockaddr(
    addr: SocketAddr,
    storage: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and at least as aligned as sockaddr_in,
            // and `storage` is a unique reference to it.
            unsafe { ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and at least as aligned as
            // sockaddr_in6, and `storage` is a unique reference to it.
            unsafe { ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The address in `storage` (`len` bytes of it valid), v4-mapped IPv6 as IPv4.
pub(crate) fn read_sockaddr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, `len` says it is all
            // there, and sockaddr_storage is at least as aligned as sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, `len` says it is all
            // there, and sockaddr_storage is at least as aligned as sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

/// Write a pktinfo control message asking to send from `source` at the start of `control`;
/// returns the control length
/// (0: nothing to attach, for an unspecified address or IPv6 on an IPv4 socket).
pub(crate) fn write_pktinfo(control: &mut Control, source: IpAddr, ipv6_socket: bool) -> usize {
    let source = match source {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if source.is_unspecified() {
        return 0;
    }
    match source {
        IpAddr::V4(ip) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(ip.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            write_cmsg(control, 0, libc::IPPROTO_IP, libc::IP_PKTINFO, info)
        }
        IpAddr::V6(ip) if ipv6_socket => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: 0,
            };
            write_cmsg(control, 0, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info)
        }
        IpAddr::V6(_) => 0,
    }
}

/// Write one control message carrying `value` at byte `offset` of `control` (a multiple of
/// the cmsg alignment, e.g. what an earlier call returned); returns the offset after it.
pub(crate) fn write_cmsg<T: Copy>(
    control: &mut Control,
    offset: usize,
    level: libc::c_int,
    kind: libc::c_int,
    value: T,
) -> usize {
    // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(size_of::<T>() as u32) as usize,
            libc::CMSG_LEN(size_of::<T>() as u32) as usize,
        )
    };
    assert!(
        offset.is_multiple_of(align_of::<libc::cmsghdr>()) && offset + space <= CONTROL_LEN,
        "control message out of place"
    );
    control.0[offset..offset + space].fill(0);
    // SAFETY: `control` is 8-byte aligned and `offset` a multiple of cmsghdr's alignment
    // (asserted), so the header is aligned; the buffer holds `space` bytes from `offset`,
    // enough for the header and the value at CMSG_DATA; the value is written unaligned since
    // CMSG_DATA only promises cmsghdr alignment.
    unsafe {
        let header = control.0.as_mut_ptr().add(offset).cast::<libc::cmsghdr>();
        (*header).cmsg_len = len as _;
        (*header).cmsg_level = level;
        (*header).cmsg_type = kind;
        ptr::write_unaligned(libc::CMSG_DATA(header).cast::<T>(), value);
    }
    offset + space
}

/// Write a `UDP_SEGMENT` control message (segment size for GSO) at `offset`; returns the
/// offset after it.
pub(crate) fn write_segment_size(control: &mut Control, offset: usize, size: u16) -> usize {
    write_cmsg(control, offset, libc::SOL_UDP, libc::UDP_SEGMENT, size)
}

/// What a received datagram's control messages said.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReceivedControl {
    /// The local address it was sent to (pktinfo).
    pub destination: Option<IpAddr>,
    /// The size of each coalesced datagram (`UDP_GRO`), when the kernel coalesced several.
    pub segment_size: Option<u16>,
}

/// Read a received datagram's pktinfo and `UDP_GRO` control messages.
///
/// # Safety
///
/// `header.msg_control` must point at `header.msg_controllen` readable bytes filled by the
/// kernel (or be null with a zero length).
pub(crate) unsafe fn read_control(header: &libc::msghdr) -> ReceivedControl {
    let mut found = ReceivedControl::default();
    // msg_controllen is size_t on glibc, socklen_t on musl.
    #[allow(clippy::unnecessary_cast)]
    let control_len = header.msg_controllen as usize;
    if header.msg_control.is_null() || control_len < size_of::<libc::cmsghdr>() {
        return found;
    }
    // SAFETY: per this function's contract the control buffer is valid for its length; the
    // CMSG_* functions stay inside it, and each message's data is read unaligned only after
    // checking its length covers the type read.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            let level = (*cmsg).cmsg_level;
            let kind = (*cmsg).cmsg_type;
            let len = (*cmsg).cmsg_len as usize;
            let data = libc::CMSG_DATA(cmsg);
            if level == libc::IPPROTO_IP
                && kind == libc::IP_PKTINFO
                && len >= libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize
            {
                let info = ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                found.destination = Some(IpAddr::V4(Ipv4Addr::from(
                    info.ipi_addr.s_addr.to_ne_bytes(),
                )));
            } else if level == libc::IPPROTO_IPV6
                && kind == libc::IPV6_PKTINFO
                && len >= libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize
            {
                let info = ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                found.destination = Some(ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4));
            } else if level == libc::SOL_UDP
                && kind == libc::UDP_GRO
                && len >= libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize
            {
                let size = ptr::read_unaligned(data.cast::<libc::c_int>());
                found.segment_size = u16::try_from(size).ok().filter(|&s| s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    found
}

/// Read pktinfo and `UDP_GRO` control messages from control bytes the kernel wrote somewhere
/// other than a `msghdr`'s own control buffer (io_uring's multishot `recvmsg` puts them in the
/// receive buffer, behind the source address, with no alignment promise). Copies at most
/// [`CONTROL_LEN`] bytes into aligned space first.
pub(crate) fn read_control_bytes(bytes: &[u8]) -> ReceivedControl {
    let len = bytes.len().min(CONTROL_LEN);
    let mut control = Control::default();
    control.0[..len].copy_from_slice(&bytes[..len]);
    // SAFETY: msghdr is integers and raw pointers; all zeroes is a valid value.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_control = control.0.as_mut_ptr().cast();
    header.msg_controllen = len as _;
    // SAFETY: the header describes `control`, which lives to the end of this function and
    // holds `len` initialized bytes.
    unsafe { read_control(&header) }
}

/// Whether the kernel knows `UDP_SEGMENT` (GSO) on this socket.
pub(crate) fn gso_supported(fd: RawFd) -> bool {
    option(fd, libc::SOL_UDP, libc::UDP_SEGMENT).is_ok()
}

/// Ask for coalesced receives (`UDP_GRO`).
pub(crate) fn enable_gro(fd: RawFd) -> io::Result<()> {
    set_option(fd, libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Whether a failed segmented send means the kernel (or the device) cannot do GSO, so the
/// datagrams should go one by one from now on.
pub(crate) fn gso_refused(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
}

/// Errors that mean the socket itself is unusable.
pub(crate) fn is_fatal(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EBADF | libc::EFAULT | libc::ENOTSOCK)
    )
}

pub(crate) fn set_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the value pointer and length describe one c_int on the stack, as these options
    // expect; an invalid fd or option only makes the call fail.
    let result = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the value pointer and length describe one writable c_int on the stack.
    let result = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// A UDP socket bound at `addr`. At the IPv6 wildcard (`[::]`) it is dual-stack whatever
/// `net.ipv6.bindv6only` says (`IPV6_V6ONLY` off before the bind): IPv4 peers reach it as
/// v4-mapped addresses, which [`read_sockaddr`] and [`read_control`] turn back into IPv4.
/// Its datagrams leave with DF set (see [`set_dont_fragment`]).
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = if matches!(addr, SocketAddr::V6(v6) if v6.ip().is_unspecified()) {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_only_v6(false)?;
        socket.bind(&addr.into())?;
        socket.into()
    } else {
        UdpSocket::bind(addr)?
    };
    set_dont_fragment(socket.as_raw_fd(), addr.is_ipv6());
    Ok(socket)
}

/// Send with DF set and no path MTU discovery (`IP_PMTUDISC_PROBE`; on an IPv6 socket also
/// `IPV6_PMTUDISC_PROBE`, the IPv4 one then serving its v4-mapped peers). WebRTC keeps its
/// datagrams near 1,200 bytes so that no path needs to fragment them, and a send that may
/// not be fragmented skips the kernel's per-datagram IP ID hash (`__ip_select_ident`, ~1 %
/// of a room's server CPU). Best effort: where the kernel refuses, its default stays.
fn set_dont_fragment(fd: RawFd, v6: bool) {
    let v4 = (
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_PROBE,
    );
    let v6 = v6.then_some((
        libc::IPPROTO_IPV6,
        libc::IPV6_MTU_DISCOVER,
        libc::IPV6_PMTUDISC_PROBE,
    ));
    for (level, name, value) in std::iter::once(v4).chain(v6) {
        if let Err(error) = set_option(fd, level, name, value) {
            tracing::debug!(%error, level, name, "DF not set");
        }
    }
}

/// Best effort: ask for a socket buffer size (`SO_RCVBUF` or `SO_SNDBUF`), log at debug if the
/// kernel refuses. The kernel caps the plain option at `net.core.rmem_max` / `wmem_max`; a
/// process allowed to (`CAP_NET_ADMIN`) then gets the size it asked for with the `...FORCE`
/// variant, others keep the cap.
pub(crate) fn set_buffer_size(fd: RawFd, name: libc::c_int, bytes: usize) {
    let force = match name {
        libc::SO_RCVBUF => Some(libc::SO_RCVBUFFORCE),
        libc::SO_SNDBUF => Some(libc::SO_SNDBUFFORCE),
        _ => None,
    };
    let value = bytes.min(libc::c_int::MAX as usize / 2) as libc::c_int;
    if let Err(error) = set_option(fd, libc::SOL_SOCKET, name, value) {
        tracing::debug!(%error, option = name, bytes, "socket buffer size not set");
        return;
    }
    let Some(force) = force else {
        return;
    };
    // The kernel reports twice what it grants (its bookkeeping overhead).
    let granted = option(fd, libc::SOL_SOCKET, name).unwrap_or(0) / 2;
    if granted < value
        && let Err(error) = set_option(fd, libc::SOL_SOCKET, force, value)
    {
        tracing::debug!(%error, option = name, bytes, granted, "socket buffer size capped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Above the kernel's cap (`net.core.rmem_max`), a process with `CAP_NET_ADMIN` gets the
    /// size it asked for; any other keeps what the cap allows, and nothing fails.
    #[test]
    fn a_buffer_above_the_cap_is_forced_where_allowed() {
        // The cap, as the kernel applies it (a container may not show `rmem_max`).
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_option(
            probe.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            libc::c_int::MAX / 2,
        )
        .unwrap();
        let cap =
            option(probe.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap() as usize / 2;
        let asked = cap * 2;
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = socket.as_raw_fd();
        set_buffer_size(fd, libc::SO_RCVBUF, asked);
        let granted = option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap() as usize / 2;
        let forced = set_option(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            asked as libc::c_int,
        );
        if forced.is_ok() {
            assert_eq!(granted, asked, "allowed to force: gets what it asked for");
        } else {
            assert_eq!(granted, cap, "not allowed: the cap");
        }
    }

    #[test]
    fn the_ipv6_wildcard_binds_dual_stack_and_others_as_asked() {
        if UdpSocket::bind("[::1]:0").is_err() {
            eprintln!("skipped: no IPv6 loopback (cannot bind [::1])");
            return;
        }
        let wildcard = bind_udp("[::]:0".parse().unwrap()).unwrap();
        let v6only = option(wildcard.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY);
        assert_eq!(v6only.unwrap(), 0);
        let port = wildcard.local_addr().unwrap().port();
        // The IPv4 wildcard of the same port is taken by the dual-stack socket.
        assert!(UdpSocket::bind(("0.0.0.0", port)).is_err());
        for addr in ["0.0.0.0:0", "127.0.0.1:0", "[::1]:0"] {
            let socket = bind_udp(addr.parse().unwrap()).unwrap();
            assert_eq!(
                socket.local_addr().unwrap().ip(),
                addr.parse::<SocketAddr>().unwrap().ip()
            );
        }
    }

    #[test]
    fn sockets_send_without_fragmenting() {
        let probe = |fd, level, name| option(fd, level, name).unwrap();
        for addr in ["0.0.0.0:0", "127.0.0.1:0"] {
            let socket = bind_udp(addr.parse().unwrap()).unwrap();
            let fd = socket.as_raw_fd();
            let pmtu = probe(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER);
            assert_eq!(pmtu, libc::IP_PMTUDISC_PROBE, "{addr}");
        }
        if UdpSocket::bind("[::1]:0").is_err() {
            eprintln!("skipped IPv6: no IPv6 loopback (cannot bind [::1])");
            return;
        }
        for addr in ["[::]:0", "[::1]:0"] {
            let socket = bind_udp(addr.parse().unwrap()).unwrap();
            let fd = socket.as_raw_fd();
            let pmtu = probe(fd, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER);
            assert_eq!(pmtu, libc::IPV6_PMTUDISC_PROBE, "{addr}");
            let pmtu = probe(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER);
            assert_eq!(pmtu, libc::IP_PMTUDISC_PROBE, "{addr}: for v4-mapped peers");
        }
    }

    #[test]
    fn socket_addresses_round_trip() {
        let addrs: [SocketAddr; 3] = [
            "127.0.0.1:5004".parse().unwrap(),
            "[::1]:5004".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 0, 3)),
        ];
        for addr in addrs {
            let mut storage = zeroed_sockaddr();
            let len = write_sockaddr(addr, &mut storage);
            assert_eq!(read_sockaddr(&storage, len), Some(addr));
            assert_eq!(read_sockaddr(&storage, len - 1), None);
        }
        let v4: SocketAddr = "127.0.0.1:5004".parse().unwrap();
        let mapped = socket_family_addr(v4, true).unwrap();
        assert_eq!(mapped.to_string(), "[::ffff:127.0.0.1]:5004");
        let mut storage = zeroed_sockaddr();
        let len = write_sockaddr(mapped, &mut storage);
        assert_eq!(
            read_sockaddr(&storage, len),
            Some(v4),
            "v4-mapped read as IPv4"
        );
        assert_eq!(socket_family_addr(mapped, false), Some(v4));
        assert_eq!(socket_family_addr("[::1]:1".parse().unwrap(), false), None);
    }

    #[test]
    fn pktinfo_control_messages() {
        let mut control = Control::default();
        assert_eq!(
            write_pktinfo(&mut control, Ipv4Addr::UNSPECIFIED.into(), false),
            0
        );
        assert_eq!(
            write_pktinfo(&mut control, Ipv6Addr::LOCALHOST.into(), false),
            0
        );
        for (ip, ipv6_socket) in [
            (IpAddr::from([127, 0, 0, 1]), false),
            (IpAddr::from(Ipv6Addr::LOCALHOST), true),
        ] {
            let len = write_pktinfo(&mut control, ip, ipv6_socket);
            assert!(len > 0);
            // SAFETY: msghdr is integers and raw pointers; all zeroes is a valid value.
            let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
            header.msg_control = control.0.as_mut_ptr().cast();
            header.msg_controllen = len as _;
            // The send side fills ipi_spec_dst, the receive side reads ipi_addr: compare the
            // IPv6 one directly and the IPv4 one through its field.
            // SAFETY: the header describes `control`, `len` bytes of it written above.
            let read = unsafe { read_control(&header).destination };
            match ip {
                IpAddr::V6(_) => assert_eq!(read, Some(ip)),
                IpAddr::V4(_) => assert_eq!(read, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))),
            }
        }
    }

    #[test]
    fn segment_size_follows_pktinfo() {
        let mut control = Control::default();
        let pktinfo = write_pktinfo(&mut control, IpAddr::from([127, 0, 0, 1]), false);
        let end = write_segment_size(&mut control, pktinfo, 1200);
        assert!(end > pktinfo);
        // SAFETY: msghdr is integers and raw pointers; all zeroes is a valid value.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_control = control.0.as_mut_ptr().cast();
        header.msg_controllen = end as _;
        // SAFETY: the header describes `control`, `end` bytes of it written above.
        let mut kinds = Vec::new();
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&header);
            while !cmsg.is_null() {
                kinds.push(((*cmsg).cmsg_level, (*cmsg).cmsg_type));
                if (*cmsg).cmsg_type == libc::UDP_SEGMENT {
                    let size = ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>());
                    assert_eq!(size, 1200);
                }
                cmsg = libc::CMSG_NXTHDR(&header, cmsg);
            }
        }
        assert_eq!(
            kinds,
            [
                (libc::IPPROTO_IP, libc::IP_PKTINFO),
                (libc::SOL_UDP, libc::UDP_SEGMENT)
            ]
        );
    }
}
