//! The agent's local API (`GET /v1/status` on its root-only socket): what
//! `weftd` holds, shared by the agent that serves it and `weft status`,
//! which reads it and compares it with the kernel.

use serde::{Deserialize, Serialize};

/// Everything the agent believes, at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    /// `etcd`, `local` or `kube`.
    pub store: String,
    /// The backend's config name (`vxlan`, `host-gw`, …).
    pub backend: String,
    pub ready: bool,
    pub lease: Option<LeaseView>,
    pub snapshot_revision: Option<i64>,
    pub peers: Vec<PeerView>,
    pub skipped: Vec<SkippedView>,
    /// What the last reconcile pass wanted in the kernel.
    pub desired: Option<DesiredView>,
    /// Backend-specific facts (for WireGuard: which implementation runs).
    #[serde(default)]
    pub backend_detail: Option<String>,
    /// The WireGuard implementation the devices run on, `kernel` or
    /// `userspace` (as the `weft_wireguard_path` metric's label); `None`
    /// before the devices exist and for other backends.
    #[serde(default)]
    pub wireguard_path: Option<String>,
    /// WireGuard peers as the devices report them (never keys of ours).
    #[serde(default)]
    pub wireguard_peers: Vec<WgPeerView>,
    /// Set while the agent cannot follow its lease store (etcd without
    /// quorum, unreachable): the dataplane is kept as it was meanwhile.
    #[serde(default)]
    pub store_outage: Option<StoreOutageView>,
    /// When this node's WireGuard key was made or last rotated (unix
    /// seconds; the key file's time).
    #[serde(default)]
    pub wireguard_key_made_unix: Option<u64>,
    /// A key rotation switched the devices and not every peer has
    /// handshaken with the new key yet.
    #[serde(default)]
    pub wireguard_key_rotation_in_progress: bool,
    /// ipsec: each peer's tunnel as charon and the kernel hold it.
    #[serde(default)]
    pub ipsec_tunnels: Vec<IpsecTunnelView>,
}

/// One ipsec tunnel: charon's IKE and child SA, and the kernel's SAs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpsecTunnelView {
    /// The IKE connection's name (flannel's).
    pub conn: String,
    pub remote: Option<String>,
    /// IKE SA state (`ESTABLISHED`, `CONNECTING`), empty if none.
    pub ike_state: String,
    /// CHILD SA state (`INSTALLED`, `REKEYING`), empty if none.
    pub child_state: String,
    pub spi_in: String,
    pub spi_out: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// ESP SAs with reqid 11 between the two public IPs in the kernel.
    pub kernel_sas: usize,
}

/// An ongoing lease store outage, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreOutageView {
    /// Seconds since the epoch when it began.
    pub since_unix: u64,
    /// How long it has lasted so far.
    pub for_secs: u64,
    /// The store's last error.
    pub error: String,
}

/// One WireGuard peer as a device holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WgPeerView {
    pub device: String,
    /// The peer's public key (base64).
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    /// Seconds since the epoch of the last handshake; `None`: never.
    pub last_handshake_unix: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    pub subnets: Vec<String>,
    pub public_ip: Option<String>,
    pub public_ipv6: Option<String>,
    pub expires_in_secs: Option<u64>,
    pub reservation: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The store's name for it: etcd key or node name.
    pub id: String,
    pub subnets: Vec<String>,
    pub public_ip: Option<String>,
    pub public_ipv6: Option<String>,
    pub backend_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedView {
    pub id: String,
    pub reason: String,
    pub detail: String,
}

/// The desired kernel state, in names an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DesiredView {
    pub mtu: u32,
    pub devices: Vec<DeviceView>,
    pub routes: Vec<RouteView>,
    pub neighbours: Vec<NeighView>,
    pub fdb: Vec<FdbView>,
    /// Peers deliberately not programmed, with why.
    pub unprogrammed: Vec<SkippedView>,
    /// WireGuard peers the devices should have.
    #[serde(default)]
    pub wireguard: Vec<WgPeerWant>,
}

/// A WireGuard peer a device should hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WgPeerWant {
    pub device: String,
    pub peer: String,
    pub public_key: String,
    pub endpoint: String,
    pub allowed_ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    pub name: String,
    pub kind: String,
    pub mtu: u32,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub dst: String,
    /// `None` for a blackhole route.
    pub via: Option<String>,
    /// Device name (the external interface's name for routes out of it).
    pub dev: Option<String>,
    pub onlink: bool,
    #[serde(default)]
    pub blackhole: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighView {
    pub dev: String,
    pub ip: String,
    pub mac: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbView {
    pub dev: String,
    pub mac: String,
    pub dst: String,
}
