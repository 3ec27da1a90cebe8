//! Helpers shared by the netlink integration tests. Each test binary uses a
//! different subset, hence the allowance.
#![allow(dead_code)]

pub mod netns;
