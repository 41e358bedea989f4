//! Every broken scenario gets a precise error: file, line and what is wrong; never a panic.

use harness::scenario::load_file;
use rstest::rstest;
use std::path::PathBuf;

fn broken(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/broken")
        .join(format!("{name}.yaml"))
}

#[rstest]
#[case::unknown_top_field("unknown-top-field", 2, "unknown field")]
#[case::path_in_name("path-in-name", 3, "is not a plain name")]
#[case::unknown_person_field("unknown-person-field", 8, "unknown field")]
#[case::missing_description("missing-description", 30, "description")]
#[case::bad_credential_kind("bad-credential-kind", 9, "unknown variant")]
#[case::unknown_group_in_person("unknown-group-in-person", 8, "did you mean `k8s_users`")]
#[case::unknown_group_in_scope_map("unknown-group-in-scope-map", 15, "unknown group `k8s_admins`")]
#[case::bad_scope("bad-scope", 16, "invalid scope `group-s`")]
#[case::bad_person_name("bad-person-name", 6, "not a valid Kanidm name")]
#[case::reserved_group_name("reserved-group-name", 4, "reserved")]
#[case::duplicate_group("duplicate-group", 5, "duplicate group")]
#[case::unknown_issuer_client("unknown-issuer-client", 20, "unknown OAuth2 client `kubernetes`")]
#[case::prefix_missing("prefix-missing", 20, "`prefix` is required")]
#[case::claim_and_expression("claim-and-expression", 20, "can't both be set")]
#[case::email_without_verified("email-without-verified", 20, "email_verified")]
#[case::both_auth_modes("both-auth-modes", 24, "mutually exclusive")]
#[case::no_auth_mode("no-auth-mode", 18, "no authentication configured")]
#[case::bad_signing_alg("bad-signing-alg", 20, "did you mean `ES256`")]
#[case::unknown_role("unknown-role", 26, "unknown role `viewer`")]
#[case::binding_without_subjects(
    "binding-without-subjects",
    25,
    "at least one of `groups` or `users`"
)]
#[case::bad_placeholder("bad-placeholder", 25, "unknown placeholder")]
#[case::placeholder_unknown_person("placeholder-unknown-person", 25, "unknown person `bob`")]
#[case::unknown_login_client("unknown-login-client", 29, "did you mean `k8s`")]
#[case::kubelogin_unknown_flag("kubelogin-unknown-flag", 57, "has no flag `--oidc-extra-scop`")]
#[case::kubelogin_lab_owned_flag("kubelogin-lab-owned-flag", 57, "is set by the lab")]
#[case::kubelogin_refresh_initial("kubelogin-refresh-initial", 61, "put it in a step")]
#[case::refresh_without_kubelogin("refresh-without-kubelogin", 63, "needs `login.via: kubelogin`")]
#[case::kubelogin_with_scopes("kubelogin-with-scopes", 44, "kubelogin decides the scopes")]
#[case::login_without_openid("login-without-openid", 29, "`openid` must be requested")]
#[case::unknown_expect_person("unknown-expect-person", 32, "did you mean `alice`")]
#[case::bad_action_verb("bad-action-verb", 33, "unknown verb `fly`")]
#[case::bad_action_flag("bad-action-flag", 33, "unknown flag")]
#[case::expect_nothing("expect-nothing", 32, "checks nothing")]
#[case::bad_cause("bad-cause", 33, "unknown variant `sunspots`")]
#[case::unauthorized_and_allowed("unauthorized-and-allowed", 32, "excludes")]
#[case::denied_with_k8s_checks("denied-with-k8s-checks", 32, "cannot have Kubernetes expectations")]
#[case::password_needs_policy("password-needs-policy", 6, "MFA policy relaxed")]
#[case::bad_yaml_indentation("bad-yaml-indentation", 6, "missing field `displayName`")]
#[case::wrong_type("wrong-type", 13, "invalid boolean")]
#[case::duplicate_key(
    "duplicate-key",
    2,
    "duplicate key `description`: a key may appear only once"
)]
#[case::empty_file("empty-file", 1, "the file is empty")]
#[case::non_utf8("non-utf8", 7, "not UTF-8 text (byte 0xff)")]
#[case::kanidm_not_mapping("kanidm-not-mapping", 2, "`kanidm` must be a mapping")]
#[case::placeholder_in_display_name(
    "placeholder-in-display-name",
    6,
    "placeholders are not resolved in this field"
)]
#[case::cel_unknown_placeholder("cel-unknown-placeholder", 20, "unknown person `bob`")]
#[case::action_namespace_flag("action-namespace-flag", 33, "namespace is a DNS label")]
#[case::step_unknown_change("step-unknown-change", 37, "unknown variant `promote`")]
#[case::step_unknown_group("step-unknown-group", 37, "no group `k8s_admin`")]
#[case::step_token_from_unknown("step-token-from-unknown", 37, "unknown step `s2`")]
#[case::step_fresh_login_while_stopped(
    "step-fresh-login-while-stopped",
    38,
    "nobody can log in afresh"
)]
#[case::step_duplicate_name("step-duplicate-name", 38, "duplicate step `s1`")]
#[case::step_named_initial("step-named-initial", 35, "cannot name a step")]
#[case::token_from_outside_steps("token-from-outside-steps", 33, "belongs in a step")]
#[case::step_rename_bad_name("step-rename-bad-name", 37, "not a valid Kanidm name")]
#[case::step_person_renamed_away("step-person-renamed-away", 39, "did you mean `alicia`")]
#[case::step_api_server_both_modes("step-api-server-both-modes", 42, "mutually exclusive")]
#[case::step_start_while_running("step-start-while-running", 36, "already running")]
#[case::step_empty_scope_map("step-empty-scope-map", 37, "at least one scope")]
fn broken_scenario_is_rejected_precisely(
    #[case] name: &str,
    #[case] line: u64,
    #[case] needle: &str,
) {
    let path = broken(name);
    let errors = load_file(&path).expect_err("a broken scenario must not load");
    let rendered = errors.to_string();
    let first = &errors.0[0];
    assert_eq!(first.file, path, "{rendered}");
    assert_eq!(first.line, line, "wrong line for {name}: {rendered}");
    assert!(first.column > 0, "no column for {name}: {rendered}");
    assert!(
        rendered.contains(needle),
        "{name}: expected `{needle}` in:\n{rendered}"
    );
    assert!(
        rendered.starts_with(&format!("{}:{}:", path.display(), line)),
        "{rendered}"
    );
}

#[test]
fn corpus_is_big_enough() {
    let n = std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/broken"))
        .unwrap()
        .count();
    assert!(n >= 25, "only {n} broken scenarios");
}

#[test]
fn every_shipped_scenario_loads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = harness::scenario::discover(&dir).unwrap();
    assert!(files.len() >= 10, "only {} scenarios shipped", files.len());
    for f in files {
        let s = load_file(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !s.header.is_empty(),
            "{} has no header comment",
            f.display()
        );
    }
}

#[test]
fn scenario_names_are_one_plain_path_component() {
    use harness::scenario::load::valid_scenario_name as ok;
    for good in ["post1-structured", "my_bug", "a", "Bug-42"] {
        assert!(ok(good), "{good}");
    }
    for bad in [
        "",
        "../../x",
        "/tmp/x",
        ".hidden",
        "-x",
        "a/b",
        "a b",
        "x\u{1b}[31m",
        "a\0b",
        &"x".repeat(65),
    ] {
        assert!(!ok(bad), "{bad:?}");
    }
}
