//! Hostile scenario files (bug reports from strangers): each one is refused with the exact
//! place and what is wrong: never accepted, never a panic, never a hang (< 1 s each).
//! The files are `tests/hostile/*.yaml`, each a one-change mutation of `base.yaml`.

use harness::scenario::load_file;
use rstest::rstest;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[rstest]
#[case::nul_escape_in_display_name("nul-escape-in-display-name", 6, 13, "control character")]
#[case::terminal_escape_in_display_name(
    "terminal-escape-in-display-name",
    6,
    13,
    "control character"
)]
#[case::unicode_escape_control("unicode-escape-control", 10, 13, "control character")]
#[case::raw_control_byte("raw-control-byte", 1, 16, "control character")]
#[case::custom_tag_on_value("custom-tag-on-value", 7, 28, "tag")]
#[case::custom_tag_on_bool("custom-tag-on-bool", 13, 33, "tag")]
#[case::yes_as_boolean("yes-as-boolean", 13, 27, "boolean")]
#[case::quoted_yes_as_boolean("quoted-yes-as-boolean", 13, 27, "boolean")]
#[case::on_as_boolean("on-as-boolean", 13, 27, "boolean")]
#[case::javascript_redirect("javascript-redirect", 10, 13, "not an http(s) URL")]
#[case::file_redirect("file-redirect", 10, 13, "not an http(s) URL")]
#[case::relative_redirect("relative-redirect", 10, 13, "not an absolute URL")]
#[case::landing_url_data("landing-url-data", 10, 13, "not an http(s) URL")]
#[case::url_override_not_url("url-override-not-url", 20, 26, "not an https URL")]
#[case::url_override_http("url-override-http", 20, 26, "not an https URL")]
#[case::redirect_path_no_slash("redirect-path-no-slash", 29, 11, "not a URL path")]
#[case::redirect_path_query("redirect-path-query", 29, 11, "not a URL path")]
#[case::image_path_traversal("image-path-traversal", 10, 13, "not a plain path")]
#[case::image_absolute_path("image-absolute-path", 10, 13, "not a plain path")]
#[case::image_not_image("image-not-image", 10, 13, "is not png")]
#[case::password_file("password-file", 1, 1, "not shown: it is not a plain key")]
#[case::image_wrong_content("image-wrong-content", 10, 13, "does not hold what its name says")]
#[case::image_too_large("image-too-large", 10, 13, "at most 131072 are read")]
#[case::binding_name_uppercase("binding-name-uppercase", 25, 13, "not a Kubernetes name")]
#[case::binding_namespace_invalid("binding-namespace-invalid", 25, 13, "not a namespace name")]
#[case::cluster_role_bad_name("cluster-role-bad-name", 25, 13, "not a Kubernetes name")]
#[case::cluster_role_no_verbs("cluster-role-no-verbs", 25, 13, "at least one verb")]
#[case::cluster_role_builtin("cluster-role-builtin", 25, 13, "ClusterRole every cluster has")]
#[case::person_named_idm_admin("person-named-admin", 6, 13, "reserves for its own accounts")]
#[case::group_named_system_admins("group-named-system-admins", 5, 13, "reserves")]
#[case::person_and_group_same_name("person-and-group-same-name", 5, 13, "unique across")]
#[case::empty_scope_list("empty-scope-list", 15, 18, "at least one scope")]
#[case::mail_without_at("mail-without-at", 6, 13, "not a mail address")]
#[case::mail_two_ats("mail-two-ats", 6, 13, "not a mail address")]
#[case::mail_with_space("mail-with-space", 6, 13, "not a mail address")]
#[case::claim_with_space("claim-with-space", 20, 26, "not a claim name")]
#[case::claim_empty("claim-empty", 20, 26, "not a claim name")]
#[case::action_namespace_is_flag("action-namespace-is-flag", 33, 15, "namespace is a DNS label")]
#[case::action_namespace_uppercase(
    "action-namespace-uppercase",
    33,
    15,
    "namespace is a DNS label"
)]
#[case::action_empty("action-empty", 33, 15, "expected `<verb> <resource>")]
#[case::action_too_many_words("action-too-many-words", 33, 15, "expected `<verb> <resource>")]
#[case::login_scope_with_space("login-scope-with-space", 29, 11, "invalid scope")]
#[case::login_scope_empty("login-scope-empty", 29, 11, "invalid scope")]
#[case::scope_with_space("scope-with-space", 16, 20, "invalid scope")]
#[case::placeholder_in_mail("placeholder-in-mail", 6, 13, "placeholders are not resolved")]
#[case::placeholder_in_landing_url(
    "placeholder-in-landing-url",
    10,
    13,
    "placeholders are not resolved"
)]
#[case::unterminated_placeholder("unterminated-placeholder", 25, 13, "unterminated placeholder")]
#[case::unknown_placeholder_in_cel("unknown-placeholder-in-cel", 20, 26, "unknown placeholder")]
#[case::unknown_client_placeholder_in_user(
    "unknown-client-placeholder-in-user",
    25,
    13,
    "unknown client `kube`"
)]
#[case::group_name_with_slash("group-name-with-slash", 4, 13, "not a valid Kanidm name")]
#[case::person_name_uppercase("person-name-uppercase", 6, 13, "not a valid Kanidm name")]
#[case::person_name_too_long("person-name-too-long", 6, 13, "not a valid Kanidm name")]
#[case::client_name_with_space("client-name-with-space", 10, 13, "not a valid Kanidm name")]
#[case::signing_alg_lowercase(
    "signing-alg-lowercase",
    20,
    19,
    "unsupported signing algorithm `es256`"
)]
#[case::number_as_name("number-as-name", 6, 13, "not a valid Kanidm name")]
#[case::anchor_alias_bomb("anchor-alias-bomb", 2, 1, "unknown field")]
#[case::merge_key_injection("merge-key-injection", 7, 7, "merge keys")]
#[case::tab_indentation(
    "tab-indentation",
    4,
    2,
    "tabs disallowed within this context (block indentation)"
)]
#[case::document_separator_second_doc(
    "document-separator-second-doc",
    28,
    1,
    "missing field `expect`"
)]
#[case::null_description(
    "null-description",
    1,
    14,
    "`description` must be a value (it is empty here)"
)]
#[case::list_for_description(
    "list-for-description",
    1,
    14,
    "`description` must be text (one value)"
)]
#[case::port_out_of_range(
    "port-out-of-range",
    31,
    17,
    "`redirectPort` must be a port number from 1 to 65535"
)]
#[case::negative_port(
    "negative-port",
    31,
    17,
    "`redirectPort` must be a port number from 1 to 65535"
)]
#[case::unknown_cause("unknown-cause", 33, 27, "unknown variant")]
#[case::idm_group_reserved(
    "idm-group-reserved",
    4,
    13,
    "is a name Kanidm reserves for its own entries (names starting with `idm_`"
)]
#[case::empty_person_list_expect("empty-person-list-expect", 32, 13, "unknown person ``")]
#[case::binding_subject_empty(
    "binding-subject-empty",
    25,
    13,
    "at least one of `groups` or `users`"
)]
#[case::login_client_unknown("login-client-unknown", 29, 11, "unknown OAuth2 client `kubernetes`")]
fn hostile_file_is_refused_at_its_place(
    #[case] name: &str,
    #[case] line: u64,
    #[case] column: u64,
    #[case] needle: &str,
) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hostile")
        .join(format!("{name}.yaml"));
    let t = Instant::now();
    let errors = load_file(&path).expect_err("a hostile scenario must not load");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "{name}: took {:?}",
        t.elapsed()
    );
    assert!(
        errors
            .0
            .iter()
            .any(|e| e.line == line && e.column == column && e.message.contains(needle)),
        "{name}: no error at {line}:{column} containing {needle:?}; got:\n{errors}"
    );
}

#[test]
fn the_base_file_itself_loads() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/base.yaml");
    load_file(&path).unwrap();
}

#[test]
fn huge_names_get_no_quadratic_hint_and_devices_are_refused() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let base = std::fs::read_to_string(dir.join("base.yaml")).unwrap();
    let text = base
        .replacen(
            "- name: k8s_users\n  persons",
            &format!(
                "- name: k8s_users\n    - name: {}\n  persons",
                "a".repeat(100_000)
            ),
            1,
        )
        .replacen(
            "groups: [k8s_users]",
            &format!("groups: [{}]", "b".repeat(100_000)),
            1,
        );
    let t = Instant::now();
    let errors = harness::scenario::load_str(&dir.join("huge.yaml"), &text).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    let shown = errors.to_string();
    assert!(shown.contains("unknown group `bbbb"), "{shown}");
    assert!(
        shown.len() < 4_000,
        "values are cut in messages: {} bytes",
        shown.len()
    );
    for special in ["/dev/zero", "/tmp"] {
        let e = load_file(std::path::Path::new(special)).unwrap_err();
        assert!(
            e.to_string().contains("not a regular file"),
            "{special}: {e}"
        );
    }
}
