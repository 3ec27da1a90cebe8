//! The `flannel` CNI plugin binary: the process edge around
//! `weft_cni::main_with`, which holds all the logic so tests can drive it.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let get = |k: &str| std::env::var(k).ok();
    if get("CNI_COMMAND").is_none_or(|c| c.is_empty()) {
        // A human at a shell, as libcni's skel treats it: say what this is.
        let _ = writeln!(std::io::stderr(), "{}", weft_cni::about());
        return ExitCode::SUCCESS;
    }
    let (out, status) = weft_cni::main_with(get, std::io::stdin().lock());
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(&out).and_then(|()| stdout.flush()) {
        weft_cni::log(&format!("cannot write the result to stdout: {e}"));
        return ExitCode::FAILURE;
    }
    if status == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
