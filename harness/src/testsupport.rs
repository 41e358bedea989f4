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

/// `pid`'s parent from `/proc/<pid>/stat`; None once it is gone or a zombie.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// Is `pid` running (not gone, not a zombie)?
pub fn alive(pid: u32) -> bool {
    parent_of(pid).is_some()
}

/// Every live descendant of `root` (children, their children, …), without `root`.
pub fn descendants(root: u32) -> std::collections::BTreeSet<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|p| Some((p, parent_of(p)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut found = std::collections::BTreeSet::from([root]);
    loop {
        let n = found.len();
        for (p, pp) in &parents {
            if found.contains(pp) {
                found.insert(*p);
            }
        }
        if found.len() == n {
            found.remove(&root);
            return found;
        }
    }
}
