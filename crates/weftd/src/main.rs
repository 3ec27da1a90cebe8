//! The `weftd` binary: flanneld's startup order (flannel-compat §1) up to
//! the point where the agent takes over.
//!
//! Exit status: 0 for help, version and a clean shutdown; 1 for a bad
//! environment, failed validation or an agent error; 2 for a usage error, or
//! a flag or net-conf.json backend whose feature is not built yet.

mod agent;
mod flags;
mod logging;
mod memory;
mod unbuilt;

use std::io::Write as _;
use std::process::ExitCode;

use flags::Invocation;

fn main() -> ExitCode {
    memory::tune_allocator();
    let args = match utf8_args() {
        Ok(args) => args,
        Err(message) => return usage_error(&message),
    };
    if let Err(message) = utf8_flanneld_env() {
        eprintln!("weftd: {message}");
        return ExitCode::from(1);
    }
    let invocation = match flags::parse_from(args, |name| std::env::var(name).ok()) {
        Ok(invocation) => invocation,
        Err(e) if e.exit_code() == 2 => return usage_error(&e.to_string()),
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("weftd: {line}");
            }
            return ExitCode::from(e.exit_code());
        }
    };
    let flags = match invocation {
        Invocation::Help => {
            return print_stdout(&flags::help_text(&unbuilt::help_section()));
        }
        Invocation::Version => {
            return print_stdout(&format!("weftd {}\n", env!("CARGO_PKG_VERSION")));
        }
        Invocation::Run(flags) => *flags,
    };

    if let Err(message) = flags.validate() {
        eprintln!("weftd: {message}");
        return ExitCode::from(1);
    }
    if let Err(e) = logging::init(flags.v, flags.log_format == "json") {
        eprintln!("weftd: {e:#}");
        return ExitCode::from(1);
    }
    logging::log_startup(&flags);
    if let Err(message) = unbuilt::check(&flags) {
        for line in message.lines() {
            tracing::error!("{line}");
        }
        return ExitCode::from(2);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(agent::run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<agent::NotBuilt>().is_some() => {
            tracing::error!("{}", logging::chain(&e));
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("{}", logging::chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The arguments after the program name. A non-UTF-8 argument is refused:
/// every flag value ends up in text (paths included, via the subnet file
/// and logs), and a lossy conversion would change it silently.
fn utf8_args() -> Result<Vec<String>, String> {
    std::env::args_os()
        .skip(1)
        .map(|arg| {
            arg.into_string()
                .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))
        })
        .collect()
}

/// `std::env::var` reports a non-UTF-8 value as absent, which would make a
/// `FLANNELD_*` variable silently ineffective: refuse it instead (exit 1,
/// like any other unusable variable).
fn utf8_flanneld_env() -> Result<(), String> {
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("FLANNELD_") && value.to_str().is_none() {
            return Err(format!("{name} is not valid UTF-8: {value:?}"));
        }
    }
    Ok(())
}

/// Go's usage-error exit: the message, a pointer to `--help`, status 2.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("weftd: {message}\nRun 'weftd --help' for the list of flags.");
    ExitCode::from(2)
}

/// Help and version go to stdout (flanneld: stderr) so they can be piped.
/// A closed pipe (`weftd --help | head`) is not an error worth a panic.
fn print_stdout(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weftd: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}
