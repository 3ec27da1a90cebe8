//! The recorded run: bench/results.json is in the format's own form and
//! docs/PERFORMANCE.md is exactly what `weft-bench render` makes of it, so
//! the Markdown never drifts from the figures it claims to show (a
//! hand-edited table, a changed note without a render).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weft_bench::{Results, render};

const JSON: &str = include_str!("../../../bench/results.json");
const MARKDOWN: &str = include_str!("../../../docs/PERFORMANCE.md");

fn recorded() -> Results {
    Results::from_json(JSON, "bench/results.json").unwrap()
}

#[test]
fn the_recorded_results_are_a_full_run_in_canonical_form() {
    let r = recorded();
    assert!(!r.is_partial(), "bench/results.json must hold a full run");
    assert_eq!(
        r.to_json().unwrap(),
        JSON,
        "bench/results.json is not as weft-bench writes it"
    );
}

#[test]
fn performance_md_is_rendered_from_the_recorded_results() {
    let rendered = render(&recorded());
    if rendered != MARKDOWN {
        let lines = rendered.lines().count().max(MARKDOWN.lines().count());
        let (n, (want, have)) = rendered
            .lines()
            .chain(std::iter::repeat(""))
            .zip(MARKDOWN.lines().chain(std::iter::repeat("")))
            .take(lines)
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((
                lines,
                ("(every line the same: whitespace at the end differs)", ""),
            ));
        panic!(
            "docs/PERFORMANCE.md differs from bench/results.json rendered, at line {}:\n\
             rendered: {want}\n\
             file:     {have}\n\
             Regenerate it (`cargo run -p weft-bench -- render`, from the repository) rather \
             than editing it.",
            n + 1
        );
    }
}
