//! Placeholder for the agent; the lead replaces this file.

/// Runs the agent until shutdown. Placeholder: returns at once.
pub async fn run(flags: crate::flags::Flags) -> anyhow::Result<()> {
    let _ = flags;
    Ok(())
}
