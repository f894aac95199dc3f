//! Parsing of the units the command line takes: bitrates (`2500kbps`, `2.5mbps`), durations
//! (`10s`, `500ms`, `2m`), percentages (`1%`) and rates (`50/s`).

use std::time::Duration;

/// A bitrate such as `2500kbps`, `2.5mbps`, `800000bps` or `2500k`; bits per second.
pub fn bitrate(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (number, scale) = split_suffix(
        &t,
        &[
            ("gbps", 1e9),
            ("mbps", 1e6),
            ("kbps", 1e3),
            ("bps", 1.0),
            ("mbit", 1e6),
            ("kbit", 1e3),
            ("g", 1e9),
            ("m", 1e6),
            ("k", 1e3),
        ],
    );
    let value = number_of(number, text, "a bitrate such as 2500kbps or 2.5mbps")? * scale;
    if !(1_000.0..=1e10).contains(&value) {
        return Err(format!("bitrate {text:?} out of range (1kbps .. 10gbps)"));
    }
    Ok(value.round() as u64)
}

/// A duration such as `10s`, `500ms`, `2m` or a plain number of seconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim().to_ascii_lowercase();
    let (number, scale) = split_suffix(&t, &[("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]);
    let value = number_of(number, text, "a duration such as 10s or 500ms")? * scale;
    if !(0.0..=86_400.0 * 7.0).contains(&value) {
        return Err(format!("duration {text:?} out of range (0 .. 7 days)"));
    }
    Ok(Duration::from_secs_f64(value))
}

/// An IPv4 network such as `10.214.0.0/16`: its first address and prefix length (8 to 30).
pub fn ipv4_net(text: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let bad =
        || format!("invalid network `{text}`: expected an IPv4 network such as 10.214.0.0/16");
    let (addr, len) = text.trim().split_once('/').ok_or_else(bad)?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&len) {
        return Err(format!(
            "invalid network `{text}`: the prefix must be /8 to /30"
        ));
    }
    let mask = u32::MAX << (32 - len);
    Ok((std::net::Ipv4Addr::from(u32::from(addr) & mask), len))
}

/// A percentage such as `1%`, `0.5%` or `100`; the number of percent.
pub fn percent(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let number = t.strip_suffix('%').unwrap_or(t);
    let value = number_of(number, text, "a percentage such as 1%")?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("percentage {text:?} out of range (0% .. 100%)"));
    }
    Ok(value)
}

/// A rate such as `50/s`, `50` or `3000/m`; events per second, above zero.
pub fn rate(text: &str) -> Result<f64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (number, scale) = split_suffix(&t, &[("/s", 1.0), ("/m", 1.0 / 60.0)]);
    let value = number_of(number, text, "a rate such as 50/s")? * scale;
    if value <= 0.0 || value > 1e6 {
        return Err(format!(
            "rate {text:?} out of range (above 0, at most 1000000/s)"
        ));
    }
    Ok(value)
}

/// A frame rate: 1 ..= 240.
pub fn fps(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(v) if (1..=240).contains(&v) => Ok(v),
        _ => Err(format!(
            "frame rate {text:?}: expected a whole number 1 .. 240"
        )),
    }
}

/// A fraction 0 ..= 1, or a percentage (`10%`).
pub fn fraction(text: &str) -> Result<f64, String> {
    let t = text.trim();
    if t.ends_with('%') {
        return percent(t).map(|p| p / 100.0);
    }
    let value = number_of(t, text, "a fraction 0 .. 1 such as 0.1, or 10%")?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("fraction {text:?} out of range (0 .. 1)"));
    }
    Ok(value)
}

fn split_suffix<'a>(text: &'a str, suffixes: &[(&str, f64)]) -> (&'a str, f64) {
    for (suffix, scale) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            return (number.trim(), *scale);
        }
    }
    (text, 1.0)
}

fn number_of(number: &str, text: &str, expected: &str) -> Result<f64, String> {
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{text:?}: expected {expected}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert_eq!(
            ipv4_net("10.214.3.4/16"),
            Ok(("10.214.0.0".parse().unwrap(), 16))
        );
        assert!(ipv4_net("10.214.0.0").is_err());
        assert!(ipv4_net("10.214.0.0/31").is_err());
        assert!(ipv4_net("::1/64").is_err());
    }

    #[test]
    fn bitrates() {
        assert_eq!(bitrate("2500kbps"), Ok(2_500_000));
        assert_eq!(bitrate("2.5mbps"), Ok(2_500_000));
        assert_eq!(bitrate("2.5Mbps"), Ok(2_500_000));
        assert_eq!(bitrate("800000bps"), Ok(800_000));
        assert_eq!(bitrate("800k"), Ok(800_000));
        assert_eq!(bitrate("800000"), Ok(800_000));
        assert!(bitrate("fast").is_err());
        assert!(bitrate("-5kbps").is_err());
        assert!(bitrate("1bps").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert!(duration("ten seconds").is_err());
        assert!(duration("-1s").is_err());
    }

    #[test]
    fn percents_rates_fractions() {
        assert_eq!(percent("1%"), Ok(1.0));
        assert_eq!(percent("0.5%"), Ok(0.5));
        assert_eq!(percent("100"), Ok(100.0));
        assert!(percent("101%").is_err());
        assert!(percent("x%").is_err());
        assert_eq!(rate("50/s"), Ok(50.0));
        assert_eq!(rate("60/m"), Ok(1.0));
        assert_eq!(rate("7"), Ok(7.0));
        assert!(rate("0/s").is_err());
        assert_eq!(fraction("0.1"), Ok(0.1));
        assert_eq!(fraction("25%"), Ok(0.25));
        assert!(fraction("2").is_err());
        assert_eq!(fps("30"), Ok(30));
        assert!(fps("0").is_err());
    }
}
