//! Is this node's clock close to the store's? TLS certificates (etcd's,
//! the API server's) are refused outside their validity window, and an
//! operator comparing log timestamps across nodes is misled, so a skew
//! is worth a warning before it is worth a debugging session.
//!
//! The store's time comes from the `Date` header of its HTTP answer
//! (etcd serves `/version` on its client URL): one-second resolution,
//! which is plenty for a skew that matters.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime};

use super::Finding;

/// Skews up to this are normal (the header's resolution plus the round trip).
const TOLERATED: Duration = Duration::from_secs(5);

const TIMEOUT: Duration = Duration::from_secs(3);

/// The clock finding for a store at `endpoint` (`http://host:port`).
pub fn against(endpoint: &str) -> Finding {
    let Some(hostport) = endpoint.strip_prefix("http://") else {
        return Finding::ok(
            "clock",
            format!(
                "not compared with {endpoint}: only plain-HTTP endpoints are read; \
                 compare `date -u` here and on the etcd hosts"
            ),
        );
    };
    let hostport = hostport.trim_end_matches('/');
    match store_time(hostport) {
        Ok(theirs) => judge(endpoint, SystemTime::now(), theirs),
        Err(e) => Finding::warn(
            "clock",
            format!("cannot read the time of {endpoint}: {e}"),
            "compare `date -u` here and on the etcd hosts",
        ),
    }
}

/// The finding for our clock reading `ours` while the store's says `theirs`.
fn judge(endpoint: &str, ours: SystemTime, theirs: SystemTime) -> Finding {
    let (skew, word) = match ours.duration_since(theirs) {
        Ok(ahead) => (ahead, "ahead of"),
        Err(e) => (e.duration(), "behind"),
    };
    if skew <= TOLERATED {
        Finding::ok(
            "clock",
            format!("within {}s of {endpoint}", TOLERATED.as_secs()),
        )
    } else {
        Finding::warn(
            "clock",
            format!("{}s {word} {endpoint}", skew.as_secs()),
            "synchronise the clocks: `timedatectl set-ntp true` (or chrony/ntpd) on every node and etcd host",
        )
    }
}

fn store_time(hostport: &str) -> Result<SystemTime, String> {
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{hostport} resolves to no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /version HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    s.take(16 * 1024)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    date_header(&String::from_utf8_lossy(&head))
}

fn date_header(response: &str) -> Result<SystemTime, String> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    let value = head
        .lines()
        .skip(1)
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("date")
                .then(|| value.trim())
        })
        .ok_or("the answer has no Date header")?;
    httpdate::parse_http_date(value).map_err(|e| format!("Date {value:?}: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::check::Level;

    #[test]
    fn date_header_is_found_in_any_case() {
        let t = date_header(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ndate: Sun, 22 Nov 2026 08:30:00 GMT\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(httpdate::fmt_http_date(t), "Sun, 22 Nov 2026 08:30:00 GMT");
        assert!(date_header("HTTP/1.1 200 OK\r\n\r\nDate: x").is_err());
    }

    #[test]
    fn skews_beyond_five_seconds_warn_and_say_which_way() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ep = "http://192.0.2.250:2379";
        assert_eq!(judge(ep, t + Duration::from_secs(3), t).level, Level::Ok);
        let ahead = judge(ep, t + Duration::from_secs(90), t);
        assert_eq!(ahead.level, Level::Warn);
        assert_eq!(ahead.seen, "90s ahead of http://192.0.2.250:2379");
        let behind = judge(ep, t, t + Duration::from_secs(7));
        assert_eq!(behind.seen, "7s behind http://192.0.2.250:2379");
    }
}
