//! XFRM netlink messages as bytes: policies (add/update, delete, dump) and
//! SAs (dump), with the kernel's structure layouts written out by hand.
//!
//! Why by hand: no maintained Rust crate carries the XFRM family, and weft
//! needs four messages of it. The layouts are the kernel's UAPI
//! (`include/uapi/linux/xfrm.h`) on every 64-bit Linux; the round-trip tests
//! pin them, and the VM suite reads back what the kernel stored. Pure: no
//! socket here (see `io.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// `XFRM_MSG_NEWPOLICY`: what a policy dump answers with.
pub const MSG_NEWPOLICY: u16 = 19;
/// `XFRM_MSG_DELPOLICY`.
pub const MSG_DELPOLICY: u16 = 20;
/// `XFRM_MSG_GETPOLICY`.
pub const MSG_GETPOLICY: u16 = 21;
/// `XFRM_MSG_UPDPOLICY`: add or replace, keyed by selector and direction.
pub const MSG_UPDPOLICY: u16 = 25;
/// `XFRM_MSG_NEWSA`: what an SA dump answers with.
pub const MSG_NEWSA: u16 = 16;
/// `XFRM_MSG_DELSA`.
pub const MSG_DELSA: u16 = 17;
/// `XFRM_MSG_GETSA`.
pub const MSG_GETSA: u16 = 18;

const XFRMA_ALG_CRYPT: u16 = 2;
const XFRMA_ENCAP: u16 = 4;
const XFRMA_TMPL: u16 = 5;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// `XFRM_INF`: no limit, as `ip xfrm` and flannel's netlink library set.
const XFRM_INF: u64 = u64::MAX;

const SELECTOR_LEN: usize = 56;
const POLICY_INFO_LEN: usize = 168;
const POLICY_ID_LEN: usize = 64;
const TMPL_LEN: usize = 64;
const SA_INFO_LEN: usize = 224;

/// `IPPROTO_ESP`.
pub const PROTO_ESP: u8 = 50;
/// `XFRM_MODE_TUNNEL`.
pub const MODE_TUNNEL: u8 = 1;

/// A policy's direction (`XFRM_POLICY_IN`/`OUT`/`FWD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyDir {
    In,
    Out,
    Fwd,
}

impl PolicyDir {
    pub const ALL: [PolicyDir; 3] = [PolicyDir::Out, PolicyDir::In, PolicyDir::Fwd];

    fn to_u8(self) -> u8 {
        match self {
            PolicyDir::In => 0,
            PolicyDir::Out => 1,
            PolicyDir::Fwd => 2,
        }
    }

    fn from_u8(v: u8) -> Option<PolicyDir> {
        match v {
            0 => Some(PolicyDir::In),
            1 => Some(PolicyDir::Out),
            2 => Some(PolicyDir::Fwd),
            _ => None,
        }
    }
}

impl std::fmt::Display for PolicyDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PolicyDir::In => "in",
            PolicyDir::Out => "out",
            PolicyDir::Fwd => "fwd",
        })
    }
}

/// A policy's template: which SA protects the matched traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct XfrmTmpl {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub mode: u8,
    pub reqid: u32,
}

/// An XFRM policy as weft programs and reads it: a selector between two
/// prefixes (any protocol and port), a direction, allow, one template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XfrmPolicy {
    pub dir: PolicyDir,
    pub src: IpNet,
    pub dst: IpNet,
    pub priority: u32,
    /// The first template; policies without one (bypass) read as `None`.
    pub tmpl: Option<XfrmTmpl>,
}

/// An SA as a dump shows it, reduced to what status and tests read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfrmSa {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub spi: u32,
    pub proto: u8,
    pub mode: u8,
    pub reqid: u32,
    /// UDP-encapsulated (`XFRMA_ENCAP` present).
    pub encap: bool,
    pub bytes: u64,
    pub packets: u64,
}

/// Why bytes from the kernel could not be read as an XFRM object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XFRM message: {0}")]
pub struct Malformed(pub String);

fn family_of(ip: IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn put_addr(buf: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => buf[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => buf[..16].copy_from_slice(&a.octets()),
    }
}

fn get_addr(buf: &[u8], family: u16) -> Result<IpAddr, Malformed> {
    match family {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(buf[0], buf[1], buf[2], buf[3]))),
        AF_INET6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&buf[..16]);
            Ok(IpAddr::V6(Ipv6Addr::from(o)))
        }
        f => Err(Malformed(format!("address family {f}"))),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut o = [0u8; 8];
    o.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(o)
}

/// `struct xfrm_selector`: daddr, saddr, ports (any), family, prefix
/// lengths, proto (any), ifindex 0, user 0.
fn selector(src: IpNet, dst: IpNet) -> [u8; SELECTOR_LEN] {
    let mut s = [0u8; SELECTOR_LEN];
    put_addr(&mut s[0..16], dst.network());
    put_addr(&mut s[16..32], src.network());
    s[40..42].copy_from_slice(&family_of(src.addr()).to_ne_bytes());
    s[42] = dst.prefix_len();
    s[43] = src.prefix_len();
    s
}

fn parse_selector(s: &[u8]) -> Result<(IpNet, IpNet), Malformed> {
    let family = u16_at(s, 40);
    let dst = get_addr(&s[0..16], family)?;
    let src = get_addr(&s[16..32], family)?;
    let net = |ip, len| IpNet::new(ip, len).map_err(|e| Malformed(format!("selector: {e}")));
    Ok((net(src, s[43])?, net(dst, s[42])?))
}

fn tmpl_bytes(t: &XfrmTmpl) -> [u8; TMPL_LEN] {
    let mut b = [0u8; TMPL_LEN];
    put_addr(&mut b[0..16], t.dst);
    // spi 0: any SA with the reqid.
    b[20] = t.proto;
    b[24..26].copy_from_slice(&family_of(t.src).to_ne_bytes());
    put_addr(&mut b[28..44], t.src);
    b[44..48].copy_from_slice(&t.reqid.to_ne_bytes());
    b[48] = t.mode;
    // aalgos, ealgos, calgos: any.
    b[52..64].copy_from_slice(&[0xff; 12]);
    b
}

fn parse_tmpl(b: &[u8]) -> Result<XfrmTmpl, Malformed> {
    let family = u16_at(b, 24);
    Ok(XfrmTmpl {
        dst: get_addr(&b[0..16], family)?,
        proto: b[20],
        src: get_addr(&b[28..44], family)?,
        reqid: u32_at(b, 44),
        mode: b[48],
    })
}

/// Appends a netlink attribute (header, payload, padding to 4).
fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Iterates netlink attributes: `(kind, payload)`.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16_at(b, 0));
        if len < 4 || len > b.len() {
            return None;
        }
        let kind = u16_at(b, 2) & 0x3fff;
        let payload = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((kind, payload))
    })
}

/// The payload of `XFRM_MSG_UPDPOLICY` for `p`.
pub fn policy_payload(p: &XfrmPolicy) -> Vec<u8> {
    let mut out = vec![0u8; POLICY_INFO_LEN];
    out[..SELECTOR_LEN].copy_from_slice(&selector(p.src, p.dst));
    // Byte and packet limits: none. The four time limits stay 0 (never):
    // XFRM_INF there reads as -1 seconds to the kernel's signed
    // arithmetic, and the policy expires at once.
    for i in 0..4 {
        let at = SELECTOR_LEN + i * 8;
        out[at..at + 8].copy_from_slice(&XFRM_INF.to_ne_bytes());
    }
    out[152..156].copy_from_slice(&p.priority.to_ne_bytes());
    out[160] = p.dir.to_u8();
    // action 0 (allow), flags 0, share 0.
    if let Some(t) = &p.tmpl {
        put_attr(&mut out, XFRMA_TMPL, &tmpl_bytes(t));
    }
    out
}

/// The payload of `XFRM_MSG_DELPOLICY`: the selector and direction.
pub fn policy_id_payload(dir: PolicyDir, src: IpNet, dst: IpNet) -> Vec<u8> {
    let mut out = vec![0u8; POLICY_ID_LEN];
    out[..SELECTOR_LEN].copy_from_slice(&selector(src, dst));
    out[60] = dir.to_u8();
    out
}

/// A dump request's payload: zeroes of the info structure's size (the
/// kernel reads nothing from it).
pub fn dump_payload(kind: u16) -> Vec<u8> {
    vec![
        0u8;
        if kind == MSG_GETSA {
            SA_INFO_LEN
        } else {
            POLICY_INFO_LEN
        }
    ]
}

/// The SPI of the probe SA: one no IKE daemon hands out (charon's SPIs
/// start with 0xc).
pub const PROBE_SPI: u32 = 0x0077_e5f7;

/// `XFRM_MSG_NEWSA` for a throw-away ESP SA (transport mode, AES-CBC, a
/// zero key, loopback addresses, never used by any policy): whether the
/// kernel can hold ESP SAs at all, asked the way charon will (the kernel
/// loads `esp4` on demand, or refuses with EPROTONOSUPPORT).
pub fn probe_sa_payload() -> Vec<u8> {
    let mut out = vec![0u8; SA_INFO_LEN];
    out[56..60].copy_from_slice(&[127, 0, 0, 1]);
    out[72..76].copy_from_slice(&PROBE_SPI.to_be_bytes());
    out[76] = PROTO_ESP;
    out[80..84].copy_from_slice(&[127, 0, 0, 1]);
    for i in 0..4 {
        let at = 96 + i * 8;
        out[at..at + 8].copy_from_slice(&XFRM_INF.to_ne_bytes());
    }
    out[212..214].copy_from_slice(&AF_INET.to_ne_bytes());
    let mut algo = vec![0u8; 64 + 4 + 16];
    algo[..8].copy_from_slice(b"cbc(aes)");
    algo[64..68].copy_from_slice(&128u32.to_ne_bytes());
    put_attr(&mut out, XFRMA_ALG_CRYPT, &algo);
    out
}

/// `XFRM_MSG_DELSA` for the probe SA (`struct xfrm_usersa_id`).
pub fn probe_sa_id_payload() -> Vec<u8> {
    let mut out = vec![0u8; 24];
    out[0..4].copy_from_slice(&[127, 0, 0, 1]);
    out[16..20].copy_from_slice(&PROBE_SPI.to_be_bytes());
    out[20..22].copy_from_slice(&AF_INET.to_ne_bytes());
    out[22] = PROTO_ESP;
    out
}

/// Reads an `XFRM_MSG_NEWPOLICY` payload. `Ok(None)` for a policy of a
/// kind weft never programs (a socket policy, an unknown direction).
pub fn parse_policy(b: &[u8]) -> Result<Option<XfrmPolicy>, Malformed> {
    if b.len() < POLICY_INFO_LEN {
        return Err(Malformed(format!("policy of {} bytes", b.len())));
    }
    let Some(dir) = PolicyDir::from_u8(b[160]) else {
        return Ok(None);
    };
    let (src, dst) = parse_selector(&b[..SELECTOR_LEN])?;
    let mut tmpl = None;
    for (kind, payload) in attrs(&b[POLICY_INFO_LEN..]) {
        if kind == XFRMA_TMPL && payload.len() >= TMPL_LEN {
            tmpl = Some(parse_tmpl(&payload[..TMPL_LEN])?);
        }
    }
    Ok(Some(XfrmPolicy {
        dir,
        src,
        dst,
        priority: u32_at(b, 152),
        tmpl,
    }))
}

/// Reads an `XFRM_MSG_NEWSA` payload.
pub fn parse_sa(b: &[u8]) -> Result<XfrmSa, Malformed> {
    if b.len() < SA_INFO_LEN {
        return Err(Malformed(format!("SA of {} bytes", b.len())));
    }
    let family = u16_at(b, 212);
    let encap = attrs(&b[SA_INFO_LEN..]).any(|(kind, _)| kind == XFRMA_ENCAP);
    Ok(XfrmSa {
        dst: get_addr(&b[56..72], family)?,
        spi: u32::from_be_bytes([b[72], b[73], b[74], b[75]]),
        proto: b[76],
        src: get_addr(&b[80..96], family)?,
        bytes: u64_at(b, 160),
        packets: u64_at(b, 168),
        reqid: u32_at(b, 208),
        mode: b[214],
        encap,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
