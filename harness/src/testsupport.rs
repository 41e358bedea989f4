//! Shared by the integration tests that need real components.

/// Report a test that cannot run here (a real component is missing), loudly. With
/// `LAB_REQUIRE_REAL=1` a skip is a failure: the evidence runs use it so nothing passes by
/// not running.
pub fn skip(reason: &str) {
    if std::env::var("LAB_REQUIRE_REAL").is_ok_and(|v| v == "1") {
        panic!("LAB_REQUIRE_REAL=1, but this test cannot run: {reason}");
    }
    eprintln!("\n==== SKIPPED: {reason} ====\n");
}

/// `skipped!("needs {}", what)`: [`skip`] with a formatted reason.
#[macro_export]
macro_rules! skipped {
    ($($arg:tt)*) => {
        $crate::testsupport::skip(&format!($($arg)*))
    };
}

/// The check `scenario`/`check` of a run, or a panic that prints the whole report.
pub fn find_check<'r>(
    report: &'r crate::run::RunReport,
    scenario: &str,
    check: &str,
) -> &'r crate::check::CheckResult {
    report
        .results
        .iter()
        .find(|r| r.scenario == scenario && r.check == check)
        .unwrap_or_else(|| {
            panic!(
                "no {scenario}/{check} in:\n{}",
                crate::report::summary_table(&report.results)
            )
        })
}
