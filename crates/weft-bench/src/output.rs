//! Where a run's JSON and Markdown go, decided and checked before anything
//! is measured: a typo in a path must not cost a 30-minute run.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The recorded full run's results, relative to the repository (bench/run.sh
/// runs from there).
pub const RESULTS: &str = "bench/results.json";
/// The recorded full run's report.
pub const REPORT: &str = "docs/PERFORMANCE.md";

/// A file, or stdout for `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Stdout,
    File(PathBuf),
}

impl Dest {
    pub fn of(path: &Path) -> Dest {
        if path.as_os_str() == "-" {
            Dest::Stdout
        } else {
            Dest::File(path.to_owned())
        }
    }

    /// Fails now when the file's directory does not exist.
    fn check(&self) -> Result<()> {
        if let Dest::File(path) = self
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            bail!(
                "cannot write {}: {} is not a directory (run from the repository, or pass the path)",
                path.display(),
                dir.display()
            );
        }
        Ok(())
    }

    fn write(&self, text: &str) -> Result<()> {
        match self {
            Dest::Stdout => print!("{text}"),
            Dest::File(path) => {
                std::fs::write(path, text)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
        Ok(())
    }
}

/// The outputs of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// `None`: no JSON (a partial run not told where).
    pub json: Option<Dest>,
    pub markdown: Dest,
}

impl Outputs {
    /// `weft-bench run`: by default a full run writes [`RESULTS`] and
    /// [`REPORT`]; a partial one its Markdown on stdout and no JSON.
    pub fn for_run(json: Option<PathBuf>, out: Option<PathBuf>, partial: bool) -> Result<Outputs> {
        Outputs::plan_run(json, out, partial)?.checked()
    }

    /// `weft-bench render`: the Markdown alone.
    pub fn markdown_only(out: Option<PathBuf>, partial: bool) -> Result<Outputs> {
        Outputs {
            json: None,
            markdown: markdown(out, partial),
        }
        .checked()
    }

    /// `weft-bench merge`: the full results rewritten, and their Markdown.
    pub fn for_merge(json: &Path, out: &Path) -> Result<Outputs> {
        Outputs {
            json: Some(Dest::of(json)),
            markdown: Dest::of(out),
        }
        .checked()
    }

    /// [`Outputs::for_run`] without looking at the file system.
    fn plan_run(json: Option<PathBuf>, out: Option<PathBuf>, partial: bool) -> Result<Outputs> {
        let json = match json {
            Some(p) => Some(Dest::of(&p)),
            None if partial => None,
            None => Some(Dest::File(RESULTS.into())),
        };
        let outputs = Outputs {
            json,
            markdown: markdown(out, partial),
        };
        if outputs.json == Some(Dest::Stdout) && outputs.markdown == Dest::Stdout {
            bail!(
                "the JSON and the Markdown cannot both go to stdout: give --out or --json a file"
            );
        }
        Ok(outputs)
    }

    fn checked(self) -> Result<Outputs> {
        if let Some(j) = &self.json {
            j.check()?;
        }
        self.markdown.check()?;
        Ok(self)
    }

    pub fn write_json(&self, text: &str) -> Result<()> {
        match &self.json {
            Some(d) => d.write(text),
            None => Ok(()),
        }
    }

    pub fn write_markdown(&self, text: &str) -> Result<()> {
        self.markdown.write(text)
    }
}

fn markdown(out: Option<PathBuf>, partial: bool) -> Dest {
    match out {
        Some(p) => Dest::of(&p),
        None if partial => Dest::Stdout,
        None => Dest::File(REPORT.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_a_partial_run_off_the_recorded_files() {
        let full = Outputs::plan_run(None, None, false).unwrap();
        assert_eq!(full.json, Some(Dest::File(RESULTS.into())));
        assert_eq!(full.markdown, Dest::File(REPORT.into()));
        let partial = Outputs::plan_run(None, None, true).unwrap();
        assert_eq!(partial.json, None);
        assert_eq!(partial.markdown, Dest::Stdout);
        assert!(Outputs::plan_run(Some("-".into()), Some("-".into()), false).is_err());
        let to_file = Outputs::plan_run(Some("-".into()), Some("x.md".into()), true).unwrap();
        assert_eq!(to_file.json, Some(Dest::Stdout));
    }

    #[test]
    fn a_missing_directory_is_refused_before_anything_runs() {
        let e = Outputs::markdown_only(Some("/nonexistent/dir/x.md".into()), false).unwrap_err();
        assert!(
            e.to_string()
                .contains("/nonexistent/dir is not a directory"),
            "{e}"
        );
        let e = Outputs::for_run(Some("/nonexistent/r.json".into()), Some("-".into()), true);
        assert!(e.is_err());
        assert!(Outputs::for_run(Some("/tmp/r.json".into()), Some("-".into()), true).is_ok());
    }
}
