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
    for r in results {
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
    out.push_str(&format!(
        "\n{} checks, {} passed, {} failed\n",
        results.len(),
        results.len() - failed,
        failed
    ));
    out
}

pub fn write_junit(results: &[CheckResult], path: &Path, suite_name: &str) -> Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("kanidm-k8s-lab");
    let mut scenarios: Vec<&str> = results.iter().map(|r| r.scenario.as_str()).collect();
    scenarios.dedup();
    for sc in scenarios {
        let mut suite = TestSuite::new(format!("{suite_name}/{sc}"));
        for r in results.iter().filter(|r| r.scenario == sc) {
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
