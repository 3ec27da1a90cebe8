//! Hash maps for the code that runs on every reconcile pass over every
//! peer (screening, the planner's diffs, the peer log).
//!
//! At 5 000 peers, std's SipHash was about a tenth of a pass's CPU: its
//! strength against crafted keys buys nothing here, since the keys (node
//! names, subnets, addresses) come from the lease store, and whoever can
//! write there can already route traffic anywhere. foldhash is
//! hashbrown's own default and keeps a per-process random seed.

/// A `HashMap` with foldhash's fast, randomly seeded hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` with foldhash's fast, randomly seeded hasher.
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
