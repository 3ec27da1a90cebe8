//! weft's Linux dataplane.
//!
//! Thin translators from desired state to kernel state: a netlink layer
//! (links, addresses, routes, neighbours, FDB), masquerade and forward rules
//! (nftables or iptables), and the reconciler that diffs the two and applies
//! the smallest set of changes. Decisions live in `weft-core`'s planner.

pub mod drvinfo;
pub mod external;
pub mod ipsec;
pub mod netlink;
pub mod netns;
pub mod reconcile;
pub mod rules;
pub mod wireguard;
