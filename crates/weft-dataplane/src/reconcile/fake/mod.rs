//! [`FakeKernel`]: the reconciler's kernel in memory, for tests that need
//! no root and no namespace (this crate's unit tests; other crates with the
//! `fake-kernel` feature).
//!
//! It keeps what a namespace keeps — links, addresses, routes, neighbours,
//! FDB entries, the TX checksum feature — with the kernel's answers where
//! the reconciler depends on them: a taken name is `Exists`, a missing
//! object `NotFound`, deleting a link takes its addresses, entries and
//! routes with it, a route is replaced by (table, destination, metric), an
//! FDB entry by MAC. Every change is logged ([`FakeKernel::changes`]) so a
//! test can assert that a second pass changes nothing, and any operation
//! can be made to fail ([`FakeKernel::fail`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use weft_core::mac::Mac;

use crate::netlink::{
    AddrInfo, FdbInfo, LinkInfo, LinkKind, NeighInfo, NetlinkError, OperState, RouteInfo,
};

mod kernel;

/// What the kernel keeps per link: addresses, neighbours, FDB entries.
trait OfLink: Clone {
    fn link(&self) -> u32;
}

impl OfLink for AddrInfo {
    fn link(&self) -> u32 {
        self.index
    }
}

impl OfLink for NeighInfo {
    fn link(&self) -> u32 {
        self.index
    }
}

impl OfLink for FdbInfo {
    fn link(&self) -> u32 {
        self.index
    }
}

/// The entries of `all` on link `index`, in order.
fn on_link<T: OfLink>(all: &[T], index: u32) -> Vec<T> {
    all.iter().filter(|e| e.link() == index).cloned().collect()
}

#[derive(Debug, Default)]
struct State {
    links: BTreeMap<u32, LinkInfo>,
    next_index: u32,
    tx_checksum: HashMap<String, bool>,
    addresses: Vec<AddrInfo>,
    routes: Vec<RouteInfo>,
    neighbours: Vec<NeighInfo>,
    fdb: Vec<FdbInfo>,
    changes: Vec<String>,
    /// Operation name → how many more calls fail.
    failing: HashMap<&'static str, u32>,
}

/// A namespace's worth of kernel state in memory; see the module doc.
#[derive(Debug, Default)]
pub struct FakeKernel {
    state: Mutex<State>,
}

fn not_found(op: &str) -> NetlinkError {
    NetlinkError::NotFound {
        op: op.to_owned(),
        message: "no such object (fake kernel)".to_owned(),
    }
}

/// Removes the entries of `all` that `gone` picks; `NotFound` for `op`, as
/// the kernel answers, when there was none.
fn remove<T>(all: &mut Vec<T>, op: &str, gone: impl Fn(&T) -> bool) -> Result<(), NetlinkError> {
    let before = all.len();
    all.retain(|e| !gone(e));
    if all.len() == before {
        return Err(not_found(op));
    }
    Ok(())
}

/// `NotFound` for `op` unless link `index` exists.
fn link_exists(s: &State, index: u32, op: &str) -> Result<(), NetlinkError> {
    if s.links.contains_key(&index) {
        Ok(())
    } else {
        Err(not_found(op))
    }
}

impl FakeKernel {
    /// An empty namespace with a loopback device (index 1).
    pub fn new() -> FakeKernel {
        let fake = FakeKernel::default();
        fake.add_link("lo", LinkKind::Device, 65536, None);
        fake
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves valid data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a link as if someone else had made it (an underlay NIC, a
    /// flannel device left by a previous agent); returns its index.
    pub fn add_link(&self, name: &str, kind: LinkKind, mtu: u32, mac: Option<Mac>) -> u32 {
        let mut s = self.state();
        s.next_index += 1;
        let index = s.next_index;
        s.links.insert(
            index,
            LinkInfo {
                index,
                name: name.to_owned(),
                kind,
                mtu,
                mac,
                admin_up: true,
                lower_up: true,
                oper_state: OperState::Up,
                controller: None,
            },
        );
        index
    }

    /// Adds a route as if someone else had made it.
    pub fn add_route(&self, route: RouteInfo) {
        self.state().routes.push(route);
    }

    /// Adds a neighbour entry as if someone else (or the kernel) made it.
    pub fn add_neighbour(&self, entry: NeighInfo) {
        self.state().neighbours.push(entry);
    }

    /// Adds an FDB entry as if someone else made it.
    pub fn add_fdb(&self, entry: FdbInfo) {
        self.state().fdb.push(entry);
    }

    /// Makes the next `times` calls of `op` (a [`Kernel`] method name, e.g.
    /// `"replace_routes"`) fail with a kernel error.
    pub fn fail(&self, op: &'static str, times: u32) {
        self.state().failing.insert(op, times);
    }

    /// Every change made through the [`Kernel`] trait since the last call,
    /// one line each (`"create_vxlan flannel.1"`, `"replace_route
    /// 10.244.2.0/24"`).
    pub fn changes(&self) -> Vec<String> {
        std::mem::take(&mut self.state().changes)
    }

    pub fn link(&self, name: &str) -> Option<LinkInfo> {
        self.state()
            .links
            .values()
            .find(|l| l.name == name)
            .cloned()
    }

    pub fn all_routes(&self) -> Vec<RouteInfo> {
        self.state().routes.clone()
    }

    pub fn all_addresses(&self, index: u32) -> Vec<AddrInfo> {
        on_link(&self.state().addresses, index)
    }

    pub fn all_neighbours(&self, index: u32) -> Vec<NeighInfo> {
        on_link(&self.state().neighbours, index)
    }

    pub fn all_fdb(&self, index: u32) -> Vec<FdbInfo> {
        on_link(&self.state().fdb, index)
    }

    pub fn tx_checksum_of(&self, name: &str) -> Option<bool> {
        self.state().tx_checksum.get(name).copied()
    }

    /// Fails the call if a failure was scheduled for `op`.
    fn check(s: &mut State, op: &'static str) -> Result<(), NetlinkError> {
        match s.failing.get_mut(op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(NetlinkError::Kernel {
                    op: op.to_owned(),
                    errno: nix::libc::EIO,
                    message: "injected failure (fake kernel)".to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    fn create(
        &self,
        op: &'static str,
        name: &str,
        kind: LinkKind,
        mtu: u32,
        mac: Option<Mac>,
    ) -> Result<u32, NetlinkError> {
        {
            let mut s = self.state();
            Self::check(&mut s, op)?;
            if s.links.values().any(|l| l.name == name) {
                return Err(NetlinkError::Exists {
                    op: format!("{op} {name}"),
                });
            }
            s.changes.push(format!("{op} {name}"));
        }
        let index = self.add_link(name, kind, mtu, mac);
        let mut s = self.state();
        if let Some(link) = s.links.get_mut(&index) {
            // New links start down, as the kernel makes them.
            link.admin_up = false;
            link.oper_state = OperState::Down;
        }
        s.tx_checksum.insert(name.to_owned(), true);
        Ok(index)
    }

    fn with_link(
        &self,
        op: &'static str,
        index: u32,
        change: impl FnOnce(&mut LinkInfo) -> String,
    ) -> Result<(), NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, op)?;
        let Some(link) = s.links.get_mut(&index) else {
            return Err(not_found(op));
        };
        let line = change(link);
        s.changes.push(line);
        Ok(())
    }

    /// One result per item: an injected failure fails them all.
    fn batch<T>(
        &self,
        op: &'static str,
        items: &[T],
        mut each: impl FnMut(&mut State, &T) -> Result<(), NetlinkError>,
    ) -> Vec<Result<(), NetlinkError>> {
        let mut s = self.state();
        items
            .iter()
            .map(|item| {
                Self::check(&mut s, op)?;
                each(&mut s, item)
            })
            .collect()
    }
}
