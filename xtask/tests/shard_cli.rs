//! `cargo xtask junit-merge` and `e2e --shard` as the README prints them: two shards' JUnit
//! files become one report; a malformed shard is a usage error (exit 2) that says what to
//! write.

use std::process::Command;

fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

const SHARD_1: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="kanidm-k8s-lab" tests="2" failures="0" errors="0">
    <testsuite name="e2e/post1-structured" tests="2" disabled="0" errors="0" failures="0">
        <testcase name="alice whoami"/>
        <testcase name="bob whoami"/>
    </testsuite>
</testsuites>
"#;

const SHARD_2: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="kanidm-k8s-lab" tests="1" failures="1" errors="0">
    <testsuite name="e2e/post2-as-written" tests="1" disabled="0" errors="0" failures="1">
        <testcase name="datosh unauthorized: unsupported-signing-alg">
            <failure message="got 200"/>
        </testcase>
    </testsuite>
</testsuites>
"#;

#[test]
fn shards_merge_and_bad_shards_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, out) = (
        dir.path().join("a.xml"),
        dir.path().join("b.xml"),
        dir.path().join("junit.xml"),
    );
    std::fs::write(&a, SHARD_1).unwrap();
    std::fs::write(&b, SHARD_2).unwrap();
    let run = xtask()
        .arg("junit-merge")
        .args([&a, &b])
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains(": 2 suites, 3 test cases from 2 reports"),
        "{stdout}"
    );
    let merged = std::fs::read_to_string(&out).unwrap();
    assert!(merged.contains("post1-structured") && merged.contains("post2-as-written"));
    assert!(merged.contains(r#"failures="1""#), "{merged}");

    let bad = xtask().args(["e2e", "--shard", "3/2"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("write k/n with 1 <= k <= n"));
}
