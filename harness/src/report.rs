//! The end-of-run summary table and JUnit XML for CI.

use crate::check::CheckResult;
use anyhow::Result;
use std::path::Path;

pub fn summary_table(results: &[CheckResult]) -> String {
    let w_s = results
        .iter()
        .map(|r| r.scenario.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let w_p = results
        .iter()
        .map(|r| r.person.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let w_c = results
        .iter()
        .map(|r| r.check.len())
        .max()
        .unwrap_or(5)
        .clamp(5, 44);
    let mut out = format!(
        "{:<4}  {:<w_s$}  {:<w_p$}  {:<w_c$}  {}\n",
        "", "scenario", "person", "check", "result"
    );
    let cells = cells_of(results);
    let mut cell: Option<&str> = None;
    for r in results {
        if cells.len() > 1 && cell != Some(r.cell.as_str()) {
            cell = Some(r.cell.as_str());
            out.push_str(&format!("── {} ──\n", r.cell));
        }
        let mark = if r.passed { "ok" } else { "FAIL" };
        out.push_str(&format!(
            "{mark:<4}  {:<w_s$}  {:<w_p$}  {:<w_c$}  {}\n",
            r.scenario, r.person, r.check, r.actual
        ));
        if let Some(line) = &r.apiserver_line {
            out.push_str(&format!(
                "{:<4}  {:<w_s$}  {:<w_p$}  {:<w_c$}  apiserver: {line}\n",
                "", "", "", ""
            ));
        }
        if let Some(d) = &r.detail
            && !r.passed
        {
            for l in d.lines() {
                out.push_str(&format!(
                    "{:<4}  {:<w_s$}  {:<w_p$}  {:<w_c$}  {l}\n",
                    "", "", "", ""
                ));
            }
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    if cells.len() > 1 {
        out.push('\n');
        for c in &cells {
            let n = results.iter().filter(|r| r.cell == *c).count();
            let bad = results.iter().filter(|r| r.cell == *c && !r.passed).count();
            out.push_str(&format!(
                "{c}: {n} checks, {} passed, {bad} failed\n",
                n - bad
            ));
        }
    }
    out.push_str(&format!(
        "\n{} checks, {} passed, {} failed\n",
        results.len(),
        results.len() - failed,
        failed
    ));
    out
}

/// The matrix cells in the order they ran.
fn cells_of(results: &[CheckResult]) -> Vec<&str> {
    let mut cells: Vec<&str> = Vec::new();
    for r in results {
        if !cells.contains(&r.cell.as_str()) {
            cells.push(&r.cell);
        }
    }
    cells
}

pub fn write_junit(results: &[CheckResult], path: &Path, suite_name: &str) -> Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("kanidm-k8s-lab");
    // One suite per cell and scenario, named after both, with the versions as properties.
    let mut suites: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r.cell.as_str(), r.scenario.as_str()))
        .collect();
    suites.dedup();
    for (cell, sc) in suites {
        let name = match cell {
            "" => format!("{suite_name}/{sc}"),
            c => format!("{suite_name}/{c}/{sc}"),
        };
        let mut suite = TestSuite::new(name);
        if !cell.is_empty() {
            suite.add_property(quick_junit::Property::new("cell", cell));
        }
        for r in results
            .iter()
            .filter(|r| r.cell == cell && r.scenario == sc)
        {
            let status = if r.passed {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(r.detail.clone().unwrap_or_else(|| r.actual.clone()));
                s
            };
            let mut tc = TestCase::new(format!("{} {}", r.person, r.check), status);
            tc.set_time(std::time::Duration::from_secs_f64(r.seconds));
            let mut out = r.actual.clone();
            if let Some(l) = &r.apiserver_line {
                out.push_str(&format!("\napiserver: {l}"));
            }
            tc.set_system_out(out);
            suite.add_test_case(tc);
        }
        report.add_test_suite(suite);
    }
    let xml = report
        .to_string()
        .map_err(|e| anyhow::anyhow!("junit: {e}"))?;
    std::fs::write(path, xml)?;
    Ok(())
}

/// Several runs' JUnit files (the shards of a CI matrix) as one report: every suite of every
/// file, in the order given. Returns the number of suites and of test cases.
pub fn merge_junit(inputs: &[std::path::PathBuf], out: &Path) -> Result<(usize, usize)> {
    let mut merged = quick_junit::Report::new("kanidm-k8s-lab");
    for p in inputs {
        let text = crate::input_file::read_text(p, 64 << 20, "the JUnit file")?;
        let report = quick_junit::Report::deserialize_from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a JUnit report: {e}", p.display()))?;
        for suite in report.test_suites {
            merged.add_test_suite(suite);
        }
    }
    let suites = merged.test_suites.len();
    let cases = merged.test_suites.iter().map(|s| s.test_cases.len()).sum();
    let xml = merged
        .to_string()
        .map_err(|e| anyhow::anyhow!("junit: {e}"))?;
    std::fs::write(out, xml)?;
    Ok((suites, cases))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(cell: &str, passed: bool) -> CheckResult {
        CheckResult {
            cell: cell.into(),
            scenario: "post1-structured".into(),
            person: "alice".into(),
            check: "whoami".into(),
            passed,
            actual: "user alice@localhost".into(),
            detail: None,
            apiserver_line: None,
            seconds: 0.1,
        }
    }

    #[test]
    fn every_check_carries_its_matrix_cell_in_the_table_and_junit() {
        let a = "Kubernetes 1.33 (v1.33.13), kanidmd 1.10.4";
        let b = "Kubernetes 1.36 (v1.36.2), kanidmd 1.11.1";
        let results = vec![result(a, true), result(b, false)];
        let table = summary_table(&results);
        assert!(table.contains(&format!("── {a} ──")), "{table}");
        assert!(
            table.contains(&format!("{b}: 1 checks, 0 passed, 1 failed")),
            "{table}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        write_junit(&results, &path, "e2e").unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        assert!(xml.contains(&format!("e2e/{a}/post1-structured")), "{xml}");
        assert!(
            xml.contains(&format!("name=\"cell\" value=\"{b}\"")),
            "{xml}"
        );
        // One cell: no headers, the table as before.
        let one = summary_table(&[result(a, true)]);
        assert!(!one.contains("──"), "{one}");
    }

    #[test]
    fn shards_merge_into_one_report() {
        let dir = tempfile::tempdir().unwrap();
        let result = |scenario: &str, passed: bool| CheckResult {
            scenario: scenario.into(),
            ..result("Kubernetes 1.36 (v1.36.2), kanidmd 1.10.4", passed)
        };
        let a = dir.path().join("a.xml");
        let b = dir.path().join("b.xml");
        write_junit(&[result("post1-structured", true)], &a, "e2e").unwrap();
        write_junit(
            &[
                result("post2-as-written", false),
                result("wrong-audience", true),
            ],
            &b,
            "e2e",
        )
        .unwrap();
        let out = dir.path().join("all.xml");
        assert_eq!(merge_junit(&[a, b], &out).unwrap(), (3, 3));
        let merged = std::fs::read_to_string(&out).unwrap();
        let report = quick_junit::Report::deserialize_from_str(&merged).unwrap();
        assert_eq!(report.failures, 1, "{merged}");
        assert!(merged.contains("post2-as-written"));
        assert!(merge_junit(&[dir.path().join("missing.xml")], &out).is_err());
    }
}
