//! CPU time and resident memory of a process, and what the kernel dropped at UDP sockets, from
//! `/proc`.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on every Linux that matters).
const TICKS_PER_SECOND: f64 = 100.0;

/// `self` or a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// This process.
    Current,
    /// Another one.
    Pid(u32),
}

impl Process {
    fn dir(self) -> String {
        match self {
            Process::Current => "/proc/self".into(),
            Process::Pid(pid) => format!("/proc/{pid}"),
        }
    }

    /// User + system CPU time so far; None when the process is gone.
    pub fn cpu(self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("{}/stat", self.dir())).ok()?;
        cpu_from_stat(&stat)
    }

    /// Resident memory (VmRSS), KiB; None when the process is gone.
    pub fn rss_kib(self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("{}/status", self.dir())).ok()?;
        rss_from_status(&status)
    }
}

/// utime + stime from the text of `/proc/<pid>/stat`.
pub fn cpu_from_stat(stat: &str) -> Option<Duration> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid … utime is field 14 of the line, index 11 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / TICKS_PER_SECOND,
    ))
}

/// VmRSS from the text of `/proc/<pid>/status`, KiB.
pub fn rss_from_status(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Datagrams the kernel dropped at the UDP sockets bound to `ports` in this network namespace
/// (their receive buffer was full), from `/proc/net/udp` and `/proc/net/udp6`; None when
/// neither can be read.
pub fn udp_drops(ports: &[u16]) -> Option<u64> {
    let tables: Vec<String> = ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect();
    (!tables.is_empty()).then(|| tables.iter().map(|t| drops_in_table(t, ports)).sum())
}

/// Datagrams dropped at the sockets on `ports` since a [`udp_drops`] reading of `start`.
pub fn udp_drops_since(ports: &[u16], start: Option<u64>) -> Option<u64> {
    udp_drops(ports)
        .zip(start)
        .map(|(now, start)| now.saturating_sub(start))
}

/// The `drops` column summed over the sockets of a `/proc/net/udp` table whose local port is
/// one of `ports`.
fn drops_in_table(table: &str, ports: &[u16]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (_, port) = fields.get(1)?.rsplit_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            ports
                .contains(&port)
                .then(|| fields.last()?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat =
            "1234 (ring cast) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(cpu_from_stat(stat), Some(Duration::from_secs(3)));
        assert_eq!(cpu_from_stat("garbage"), None);
        let status = "Name:\tringcast\nVmPeak:\t  100 kB\nVmRSS:\t   5120 kB\n";
        assert_eq!(rss_from_status(status), Some(5120));
        assert!(Process::Current.cpu().is_some());
        assert!(Process::Current.rss_kib().unwrap() > 0);
    }

    #[test]
    fn sums_the_drops_of_the_sockets_on_the_ports_asked() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  101: 00000000:C350 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 7
  102: 0100007F:C350 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2 2 0000000000000000 3
  103: 00000000:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0000000000000000 11
  104: garbage
";
        assert_eq!(drops_in_table(table, &[50_000]), 10);
        assert_eq!(drops_in_table(table, &[50_000, 8080]), 21);
        assert_eq!(drops_in_table(table, &[9]), 0);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        assert_eq!(udp_drops(&[port]), Some(0), "a new socket dropped nothing");
        assert_eq!(udp_drops_since(&[port], Some(0)), Some(0));
        assert_eq!(udp_drops_since(&[port], None), None, "no start, no figure");
    }
}
