use super::*;

/// The fixture in the file's own layout, as `to_json` writes it.
const SMALL: &str = include_str!("../testdata/small.json");

#[test]
fn a_fixture_reads_and_writes_back_to_the_same_text() {
    // Text, not just values: a renamed, added or reordered field shows
    // here, so the format cannot change without the fixture changing.
    let r = Results::from_json(SMALL, "small.json").unwrap();
    let text = r.to_json().unwrap();
    if std::env::var_os("WEFT_BENCH_UPDATE_FIXTURE").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testdata/small.json");
        std::fs::write(path, &text).unwrap();
    }
    assert_eq!(
        text, SMALL,
        "the format changed: if on purpose, raise FORMAT and rewrite the fixture \
         (WEFT_BENCH_UPDATE_FIXTURE=1 cargo test -p weft-bench --lib)"
    );
}

#[test]
fn results_survive_json_unchanged() {
    let r = Results::from_json(SMALL, "small.json").unwrap();
    let back = Results::from_json(&r.to_json().unwrap(), "again").unwrap();
    assert_eq!(back, r);
}

#[test]
fn full_precision_figures_are_rounded_once_then_stable() {
    let mut r = Results::from_json(SMALL, "small.json").unwrap();
    r.run.minutes = 100.0 / 7.0;
    if let Some(s) = r.scale.as_mut() {
        for at in &mut s.at_k {
            if let Some(c) = at.cpu.as_mut() {
                c.pass_us_per_peer = 1.0 / 3.0;
            }
        }
    }
    let once = r.to_json().unwrap();
    assert!(once.contains("\"minutes\": 14.2857\n"), "{once}");
    assert!(once.contains("\"pass_us_per_peer\": 0.333333,"), "{once}");
    let read = Results::from_json(&once, "once").unwrap();
    assert_eq!(read.to_json().unwrap(), once);
    assert_eq!(read, Results::from_json(&once, "twice").unwrap());
}

#[test]
fn another_format_or_garbage_is_refused_with_a_reason() {
    let other = SMALL.replacen("\"format\": 1", "\"format\": 99", 1);
    let e = Results::from_json(&other, "old.json").unwrap_err();
    assert!(matches!(e, ResultsError::Format { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("old.json"));
    let e = Results::from_json("{\"format\": 1}", "empty.json").unwrap_err();
    assert!(matches!(e, ResultsError::Parse { .. }), "{e}");
    let e = Results::from_json("| a | b |", "PERFORMANCE.md").unwrap_err();
    assert!(e.to_string().starts_with("PERFORMANCE.md is not"), "{e}");
    let extra = SMALL.replacen("\"format\": 1,", "\"format\": 1, \"surprise\": 2,", 1);
    assert!(Results::from_json(&extra, "x").is_err());
    let e = Results::load(std::path::Path::new("/nonexistent/results.json")).unwrap_err();
    assert!(matches!(e, ResultsError::Read { .. }), "{e}");
}

#[test]
fn non_integers_keep_six_significant_digits() {
    let mut v = serde_json::json!({"a": 1234.56789, "b": [0.000123456789], "c": 3, "d": -2.5});
    round_floats(&mut v);
    assert_eq!(
        v.to_string(),
        r#"{"a":1234.57,"b":[0.000123457],"c":3,"d":-2.5}"#
    );
}

#[test]
fn a_partial_run_merges_into_a_full_one_and_is_recorded() {
    let mut full = Results::from_json(SMALL, "small.json").unwrap();
    full.merged.clear();
    full.failures.clear();
    let mut partial = full.clone();
    partial.run.only = vec![Part::KubeScale];
    partial.machine.commit = "fedcba9".into();
    if let Some(k) = partial.kube_scale.as_mut() {
        k.k = 5_000;
    }
    partial.scale = None;
    // Only the parts the partial run measured are taken.
    let recorded_scale = full.scale.clone();
    full.merge(partial.clone()).unwrap();
    assert_eq!(full.kube_scale.as_ref().unwrap().k, 5_000);
    assert_eq!(full.scale, recorded_scale);
    assert_eq!(full.merged.len(), 1);
    assert_eq!(full.merged[0].machine.commit, "fedcba9");
    assert!(!full.is_partial());
    // Merging the part again replaces its record.
    full.merge(partial.clone()).unwrap();
    assert_eq!(full.merged.len(), 1);
    let back = Results::from_json(&full.to_json().unwrap(), "merged").unwrap();
    assert_eq!(back, full);

    let e = partial.clone().merge(full.clone()).unwrap_err();
    assert!(e.to_string().contains("are partial"), "{e}");
    let e = full.clone().merge(full.clone()).unwrap_err();
    assert!(e.to_string().contains("a full run"), "{e}");
    partial.failures.push("kube-scale: no lab".into());
    let e = full.merge(partial).unwrap_err();
    assert!(e.to_string().contains("has failures"), "{e}");
}
