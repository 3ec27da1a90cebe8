//! Markdown layout: plain tables of strings, sections, the targets table.
//!
//! Each part's renderer fills these; this module only lays them out.

use std::fmt::Write as _;

use crate::stats::{Summary, show};

/// A markdown table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let line = |cells: &[String]| format!("| {} |", cells.join(" | "));
        let _ = writeln!(out, "{}", line(&self.headers));
        let rule: Vec<String> = self.headers.iter().map(|_| "---".to_owned()).collect();
        let _ = writeln!(out, "{}", line(&rule));
        for row in &self.rows {
            let _ = writeln!(out, "{}", line(row));
        }
    }
}

/// A row of `first`, then one "min / median / max" cell per summary, with
/// its number of decimals ("n/a" for a figure not measured).
pub fn summary_row(first: impl ToString, cells: &[(Option<Summary>, usize)]) -> Vec<String> {
    std::iter::once(first.to_string())
        .chain(cells.iter().map(|(s, digits)| show(*s, *digits)))
        .collect()
}

/// One part of the report: prose and tables, in order.
#[derive(Debug, Clone)]
pub enum Block {
    Text(String),
    Table(Table),
}

#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub blocks: Vec<Block>,
}

impl Section {
    pub fn new(title: &str) -> Section {
        Section {
            title: title.to_owned(),
            blocks: Vec::new(),
        }
    }

    pub fn text(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Text(text.into()));
    }

    pub fn table(&mut self, table: Table) {
        self.blocks.push(Block::Table(table));
    }
}

/// A target of issue 10 and how this run fared.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    /// `None`: not measured in this run (section skipped or failed).
    pub met: Option<bool>,
}

impl Verdict {
    pub fn new(target: &str, measured: String, met: Option<bool>) -> Verdict {
        Verdict {
            target: target.to_owned(),
            measured,
            met,
        }
    }
}

/// Everything a run produced.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub header: Vec<String>,
    pub machine: Table,
    pub verdicts: Vec<Verdict>,
    pub sections: Vec<Section>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::from("# weft — performance\n\n");
        for p in &self.header {
            let _ = writeln!(out, "{p}\n");
        }
        out.push_str("## Machine\n\n");
        self.machine.render(&mut out);
        out.push('\n');
        if !self.verdicts.is_empty() {
            out.push_str("## Targets (issue 10)\n\n");
            let mut t = Table::new(&["target", "measured (median unless said)", "met"]);
            for v in &self.verdicts {
                let met = match v.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "not measured",
                };
                t.row(vec![v.target.clone(), v.measured.clone(), met.to_owned()]);
            }
            t.render(&mut out);
            out.push('\n');
        }
        if !self.failures.is_empty() {
            out.push_str("## What failed in this run\n\n");
            for f in &self.failures {
                let _ = writeln!(out, "- {f}");
            }
            out.push('\n');
        }
        for s in &self.sections {
            let _ = writeln!(out, "## {}\n", s.title);
            for b in &s.blocks {
                match b {
                    Block::Text(t) => {
                        let _ = writeln!(out, "{t}\n");
                    }
                    Block::Table(t) => {
                        t.render(&mut out);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}
