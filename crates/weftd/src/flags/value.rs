//! Value parsers for the flag table. Each returns a short reason on failure;
//! the caller wraps it with the flag or variable name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;

use super::Secret;

/// Go's `strconv.ParseBool`: exactly these spellings, nothing else, so that
/// a flanneld command line or `FLANNELD_*` value means the same here.
pub(super) fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("expected one of 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False".into()),
    }
}

/// A decimal integer of the field's type.
pub(super) fn parse_int<T>(s: &str) -> Result<T, String>
where
    T: FromStr<Err = std::num::ParseIntError>,
{
    s.parse::<T>().map_err(|e| e.to_string())
}

// Every parser has the shape `fn(&str) -> Result<T, String>` so the table's
// `field = parser` rows stay uniform, even where nothing can fail.

/// A plain string flag.
pub(super) fn string(s: &str) -> Result<String, String> {
    Ok(s.to_owned())
}

/// A plain path flag.
pub(super) fn path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

/// A string flag whose empty value means "unset", as in flanneld.
pub(super) fn opt_string(s: &str) -> Result<Option<String>, String> {
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

/// A path flag whose empty value means "unset".
pub(super) fn opt_path(s: &str) -> Result<Option<PathBuf>, String> {
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

/// A secret flag whose empty value means "unset".
pub(super) fn secret(s: &str) -> Result<Option<Secret>, String> {
    Ok((!s.is_empty()).then(|| Secret::new(s)))
}

/// A value for a repeatable flag: each occurrence adds one element, and an
/// empty one would only fail later with a worse message.
pub(super) fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_owned())
    }
}

/// `--etcd-endpoints`: comma-separated. Blanks around items are trimmed and
/// empty items dropped (flanneld keeps them and fails later on a bad URL).
pub(super) fn endpoints(s: &str) -> Result<Vec<String>, String> {
    Ok(s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect())
}

/// An IP address flag, empty meaning unset.
pub(super) fn opt_ip(s: &str) -> Result<Option<IpAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| "not an IP address".to_owned())
}

/// `--public-ip`: IPv4 only; an IPv6 address belongs in `--public-ipv6`.
pub(super) fn opt_ipv4(s: &str) -> Result<Option<Ipv4Addr>, String> {
    match opt_ip(s)? {
        None => Ok(None),
        Some(IpAddr::V4(ip)) => Ok(Some(ip)),
        Some(IpAddr::V6(_)) => Err("not an IPv4 address (use --public-ipv6 for IPv6)".into()),
    }
}

/// `--public-ipv6`: IPv6 only.
pub(super) fn opt_ipv6(s: &str) -> Result<Option<Ipv6Addr>, String> {
    match opt_ip(s)? {
        None => Ok(None),
        Some(IpAddr::V6(ip)) => Ok(Some(ip)),
        Some(IpAddr::V4(_)) => Err("not an IPv6 address (use --public-ip for IPv4)".into()),
    }
}

/// `--healthz-ip`: an address to listen on (flanneld also accepted host
/// names here; weftd wants an address so the socket is predictable).
pub(super) fn ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| "not an IP address".to_owned())
}

/// klog's `-vmodule` syntax: comma-separated `pattern=N`, N ≥ 0, empty items
/// allowed. Checked so a flanneld command line with a typo still fails here.
pub(super) fn vmodule(s: &str) -> Result<Option<String>, String> {
    const SYNTAX: &str = "syntax error: expect comma-separated list of filename=N";
    for item in s.split(',').filter(|item| !item.is_empty()) {
        let (pattern, level) = item.split_once('=').ok_or(SYNTAX)?;
        if pattern.is_empty() || level.contains('=') {
            return Err(SYNTAX.into());
        }
        let level: i32 = level.parse().map_err(|_| SYNTAX)?;
        if level < 0 {
            return Err("negative value for vmodule level".into());
        }
    }
    opt_string(s)
}

/// klog's `-log_backtrace_at` syntax: `file.go:LINE`, LINE > 0, or empty.
pub(super) fn backtrace_at(s: &str) -> Result<Option<String>, String> {
    const SYNTAX: &str = "syntax error: expect file.go:234";
    if s.is_empty() {
        return Ok(None);
    }
    let (file, line) = s.split_once(':').ok_or(SYNTAX)?;
    if !file.contains('.') || line.contains(':') {
        return Err(SYNTAX.into());
    }
    let line: i64 = line.parse().map_err(|_| SYNTAX)?;
    if line <= 0 {
        return Err("negative or zero value for level".into());
    }
    Ok(Some(s.to_owned()))
}

/// `--log-format`: `text` or `json`.
pub(super) fn log_format(s: &str) -> Result<String, String> {
    match s {
        "text" | "json" => Ok(s.to_owned()),
        _ => Err("expected text or json".to_owned()),
    }
}

/// `--wireguard-path`: `auto`, `kernel` or `userspace`.
pub(super) fn wireguard_path(s: &str) -> Result<String, String> {
    match s {
        "auto" | "kernel" | "userspace" => Ok(s.to_owned()),
        _ => Err("expected auto, kernel or userspace".to_owned()),
    }
}

/// A Go `time.ParseDuration` value (`720h`, `1h30m`, `1.5h`, `90s`): the
/// syntax flanneld's and Kubernetes' duration flags take, so an operator
/// writes it the same way here. `0` (or empty) means off; otherwise at
/// least one second, because a shorter period would only churn keys.
pub(super) fn opt_go_duration(s: &str) -> Result<Option<std::time::Duration>, String> {
    const SYNTAX: &str =
        "expected a duration such as 720h, 90m or 1h30m (units h, m, s, ms, us, ns)";
    if s.is_empty() || s == "0" {
        return Ok(None);
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(SYNTAX)?;
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().map_err(|_| SYNTAX)?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(SYNTAX.into()),
        };
        total += n * secs;
        rest = tail;
    }
    if total == 0.0 {
        return Ok(None);
    }
    if !(1.0..=1e10).contains(&total) {
        return Err("must be 0 (off) or between 1s and about 300 years".into());
    }
    Ok(Some(std::time::Duration::from_secs_f64(total)))
}
