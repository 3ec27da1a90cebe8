//! Writing to stdout without panicking when the reader went away
//! (`weft check | head`): a closed pipe ends the output quietly.

use std::io::Write as _;

/// Prints `text` and a newline; returns false if stdout is closed.
pub fn line(text: &str) -> bool {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .is_ok()
}
