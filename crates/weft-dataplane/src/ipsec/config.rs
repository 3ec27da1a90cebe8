//! What weft loads into charon, as VICI messages: flannel's connection
//! (`handle_charon.go`'s `LoadConnection`) and a PSK per public IP.

use std::fmt;
use std::net::Ipv4Addr;

use weft_core::plan::{IPSEC_REQID, IpsecTunnel};

use super::vici::Message;

/// The IKE proposal flannel hard-codes.
pub const IKE_PROPOSAL: &str = "aes256-sha256-modp4096";

/// The backend's options, as net-conf.json gives them.
#[derive(Clone)]
pub struct IpsecSettings {
    pub psk: String,
    pub esp_proposal: String,
    pub udp_encap: bool,
}

impl fmt::Debug for IpsecSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpsecSettings")
            .field("psk", &"<redacted>")
            .field("esp_proposal", &self.esp_proposal)
            .field("udp_encap", &self.udp_encap)
            .finish()
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `load-shared`: the PSK for `owner`, under weft's `id` so that it can be
/// removed when the peer leaves.
pub fn shared_key(id: &str, owner: Ipv4Addr, s: &IpsecSettings) -> Message {
    Message::new()
        .kv("id", id)
        .kv("type", "IKE")
        .kv("data", &s.psk)
        .list("owners", [owner.to_string()])
}

/// `load-conn`: flannel's IKEv2 connection for one peer.
pub fn connection(t: &IpsecTunnel, s: &IpsecSettings) -> Message {
    let child = Message::new()
        .list("local_ts", [t.local_subnet.to_string()])
        .list("remote_ts", [t.remote_subnet.to_string()])
        .list("esp_proposals", [s.esp_proposal.as_str()])
        .kv("start_action", "start")
        .kv("close_action", "trap")
        .kv("dpd_action", "restart")
        .kv("mode", "tunnel")
        .kv("reqid", IPSEC_REQID.to_string())
        .kv("rekey_time", "1h")
        // weft installs the policies itself, as flannel does.
        .kv("policies", "no");
    let conn = Message::new()
        .list("local_addrs", [t.local_public.to_string()])
        .list("remote_addrs", [t.remote_public.to_string()])
        .list("proposals", [IKE_PROPOSAL])
        .kv("version", "2")
        .kv("keyingtries", "0")
        .kv("encap", yes_no(s.udp_encap))
        .section("local", Message::new().kv("auth", "psk"))
        .section("remote", Message::new().kv("auth", "psk"))
        .section("children", Message::new().section(&t.child_name(), child));
    Message::new().section(&t.conn_name(), conn)
}

/// The name of the connection that checks the ESP proposal.
pub const PROPOSAL_CHECK: &str = "weft-proposal-check";

/// `load-conn` of a connection that never starts (loopback addresses,
/// `start_action` none), loaded and unloaded at start only to have charon
/// judge the configured ESP proposal before a subnet is leased: charon
/// refuses a proposal it cannot parse with "invalid value for:
/// esp_proposals".
pub fn proposal_check(s: &IpsecSettings) -> Message {
    let child = Message::new()
        .list("esp_proposals", [s.esp_proposal.as_str()])
        .kv("start_action", "none")
        .kv("mode", "tunnel")
        .kv("policies", "no");
    let conn = Message::new()
        .list("local_addrs", ["127.0.0.1"])
        .list("remote_addrs", ["127.0.0.2"])
        .list("proposals", [IKE_PROPOSAL])
        .kv("version", "2")
        .section("local", Message::new().kv("auth", "psk"))
        .section("remote", Message::new().kv("auth", "psk"))
        .section("children", Message::new().section("check", child));
    Message::new().section(PROPOSAL_CHECK, conn)
}
