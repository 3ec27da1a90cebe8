//! Randomness for subnet choice and retry jitter.

/// A random `u64` from the OS. If the OS source fails (it does not on
/// Linux after boot), fall back to the clock: jitter and subnet choice need
/// spread, not secrecy.
pub(crate) fn u64() -> u64 {
    let mut buf = [0u8; 8];
    match getrandom::getrandom(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}
