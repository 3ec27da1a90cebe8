//! Multi-node weft labs on one Linux host.
//!
//! A lab is a small cluster made of network namespaces: an underlay
//! switch, one namespace per node running a real `weftd`, a lease store
//! (a shared SQLite file, or a real etcd on the underlay), and pods made
//! through weft's CNI plugin exactly as a kubelet makes them. `weft lab`,
//! the end-to-end tests and the benchmarks all build on it, so a dataplane
//! is always exercised with real packets between real agents.
//!
//! ```text
//!   <lab>-ul          bridge br0 192.0.2.254/24, 198.51.100.1/32 ("outside")
//!    ├─ <lab>-node1   eth0 192.0.2.1/24 · weftd · cni0 ── <lab>-node1-pod1
//!    ├─ <lab>-node2   eth0 192.0.2.2/24 · weftd · cni0 ── <lab>-node2-pod1
//!    └─ <lab>-store   eth0 192.0.2.250/24 · etcd (with --store etcd)
//! ```
//!
//! State lives in `/run/weft-lab/<lab>/` (lab.json, and per node its
//! subnet.env, status socket, log, pid file and CNI/IPAM data). The root
//! namespace is never changed.
//!
//! ```no_run
//! # fn main() -> Result<(), weft_lab::LabError> {
//! use weft_lab::{Backend, Lab, LabSpec};
//! let mut spec = LabSpec::new("e2e-1")?;
//! spec.backend = Backend::None;
//! let lab = Lab::up(&spec)?;
//! let report = lab.check()?;
//! println!("all pairs pass: {}", report.ok);
//! lab.down()?;
//! # Ok(()) }
//! ```

mod agent;
mod check;
mod cloud;
mod cni;
mod container;
mod error;
mod flanneld;
pub mod http;
mod lab;
pub mod names;
mod netns;
mod process;
mod runfs;
mod spec;
mod state;
mod store;
mod store_cluster;
mod teardown;
mod topology;

pub use agent::AgentStatus;
pub use check::{CheckOptions, CheckReport, PairResult};
pub use error::LabError;
pub use lab::{Lab, MemberStatus, Renumbered, require_root};
pub use names::LabName;
pub use netns::{create_netns, in_netns, netns_path, remove_netns, with_netlink};
pub use nix::sys::signal::Signal;
pub use spec::{Backend, IpFamily, LabSpec, StoreKind, default_bin_dir};
pub use state::{EtcdMember, LabState, NodeRecord, PodRecord, StoreState, Underlay};
pub use teardown::DownReport;
pub use weft_core::Family;
pub use weft_core::status::StatusView;
