//! Shared fixtures for the store tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod contract;
pub mod etcd_server;
