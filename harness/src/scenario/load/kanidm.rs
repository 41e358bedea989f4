//! The `kanidm:` section: names, duplicates, memberships, clients, scope maps, images, and the
//! values Kanidm accepts.

use super::*;

/// Groups and persons: names, duplicates, memberships, the credential policy.
pub(super) fn check_kanidm(c: &mut Checker<'_>, k: &KanidmState, known: &Known<'_>) {
    let groups = &known.groups;
    for (i, p) in k.persons.iter().enumerate() {
        let f = format!("kanidm.persons[{i}]");
        c.literal(
            &p.display_name,
            p.name.referenced,
            format!("{f}.displayName"),
        );
        for m in &p.mail {
            c.literal(m, p.name.referenced, format!("{f}.mail"));
        }
    }
    duplicates(
        c,
        k.groups
            .iter()
            .enumerate()
            .map(|(i, g)| (&g.name, format!("kanidm.groups[{i}].name"))),
        "group",
    );
    duplicates(
        c,
        k.persons
            .iter()
            .enumerate()
            .map(|(i, p)| (&p.name, format!("kanidm.persons[{i}].name"))),
        "person",
    );
    duplicates(
        c,
        k.oauth2_clients
            .iter()
            .enumerate()
            .map(|(i, o)| (&o.name, format!("kanidm.oauth2Clients[{i}].name"))),
        "OAuth2 client",
    );

    for (i, g) in k.groups.iter().enumerate() {
        c.iname(&g.name, &format!("kanidm.groups[{i}].name"));
        if g.name.value.starts_with("idm_") || KANIDM_BUILTIN_NAMES.contains(&g.name.value.as_str())
        {
            c.err(
                g.name.referenced,
                format!("kanidm.groups[{i}].name"),
                format!(
                    "`{}` is a name Kanidm reserves for its own entries (names starting with `idm_`, and {})",
                    g.name.value.escape_debug(),
                    KANIDM_BUILTIN_NAMES.join(", ")
                ),
            )
            .help = Some("choose another name, e.g. `k8s_admins`".into());
        }
    }
    for (i, p) in k.persons.iter().enumerate() {
        if p.name.value.starts_with("idm_") || KANIDM_BUILTIN_NAMES.contains(&p.name.value.as_str())
        {
            c.err(
                p.name.referenced,
                format!("kanidm.persons[{i}].name"),
                format!(
                    "`{}` is a name Kanidm reserves for its own accounts",
                    p.name.value.escape_debug()
                ),
            )
            .help = Some("choose another name, e.g. `alice`".into());
        }
    }
    // Kanidm names are unique across persons, groups and clients: a second entry with the
    // same name is refused when it is created.
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let all = k
        .persons
        .iter()
        .map(|p| (&p.name, "person"))
        .chain(k.groups.iter().map(|g| (&g.name, "group")))
        .chain(k.oauth2_clients.iter().map(|o| (&o.name, "OAuth2 client")));
    for (name, kind) in all {
        if let Some((_, other)) = seen.iter().find(|(n, k2)| *n == name.value && *k2 != kind) {
            c.err(
                name.referenced,
                "kanidm",
                format!(
                    "`{}` names a {kind} and a {other}; Kanidm names are unique across persons, groups and clients",
                    name.value.escape_debug()
                ),
            )
            .help = Some("rename one of them".into());
        }
        seen.push((name.value.as_str(), kind));
    }
    for (i, p) in k.persons.iter().enumerate() {
        let f = format!("kanidm.persons[{i}]");
        c.iname(&p.name, &format!("{f}.name"));
        for (j, g) in p.groups.iter().enumerate() {
            c.reference(
                g,
                &format!("{f}.groups[{j}]"),
                "group",
                groups,
                "kanidm.groups",
            );
        }
        if p.credential == CredentialKind::Password
            && k.credential_type_minimum != Some(CredentialTypeMinimum::Any)
        {
            c.err(p.name.referenced, format!("{f}.credential"), "a password-only person needs the MFA policy relaxed")
                .help = Some("Kanidm requires MFA for persons by default: add `credentialTypeMinimum: any` under `kanidm`, or use `credential: password-totp`".into());
        }
    }
}

/// One OAuth2 client: name, URLs, scope maps, image, claim maps.
pub(super) fn check_client(c: &mut Checker<'_>, i: usize, o: &OAuth2Client, known: &Known<'_>) {
    let (path, groups) = (c.path, &known.groups);
    let loc = o.name.referenced;
    let base = format!("kanidm.oauth2Clients[{i}]");
    c.literal(&o.display_name, loc, format!("{base}.displayName"));
    c.literal(&o.landing_url, loc, format!("{base}.landingUrl"));
    for u in &o.redirect_urls {
        c.literal(u, loc, format!("{base}.redirectUrls"));
    }
    for v in o.claim_maps.iter().flat_map(|m| &m.values) {
        c.literal(v, loc, format!("{base}.claimMaps"));
    }
    let f = format!("kanidm.oauth2Clients[{i}]");
    c.iname(&o.name, &format!("{f}.name"));
    if !o.public && o.localhost_redirects {
        c.err(
            o.name.referenced,
            format!("{f}.localhostRedirects"),
            "localhost redirects are only allowed for public clients",
        )
        .help = Some("set `public: true` (kubelogin-style clients are public and use PKCE)".into());
    }
    for u in o
        .redirect_urls
        .iter()
        .chain(std::iter::once(&o.landing_url))
    {
        if url::Url::parse(u).is_err() {
            c.err(
                o.name.referenced,
                format!("{f}.redirectUrls"),
                format!("`{u}` is not an absolute URL"),
            );
        }
    }
    check_scope_maps(c, &f, o, groups);
    check_image(c, path, &f, o);
    for (j, m) in o.claim_maps.iter().enumerate() {
        c.reference(
            &m.group,
            &format!("{f}.claimMaps[{j}].group"),
            "group",
            groups,
            "kanidm.groups",
        );
    }
}

/// Scope maps and supplementary scope maps: known groups, scopes Kanidm accepts.
pub(super) fn check_scope_maps(
    c: &mut Checker<'_>,
    f: &str,
    o: &OAuth2Client,
    groups: &BTreeSet<&str>,
) {
    for (kind, maps) in [
        ("scopeMaps", &o.scope_maps),
        ("supScopeMaps", &o.sup_scope_maps),
    ] {
        for (j, m) in maps.iter().enumerate() {
            c.reference(
                &m.group,
                &format!("{f}.{kind}[{j}].group"),
                "group",
                groups,
                "kanidm.groups",
            );
            for (n, sc) in m.scopes.iter().enumerate() {
                if sc.value.is_empty()
                    || !sc
                        .value
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                {
                    c.err(
                        sc.referenced,
                        format!("{f}.{kind}[{j}].scopes[{n}]"),
                        format!("invalid scope `{}`", sc.value),
                    )
                    .help = Some("Kanidm scopes match ^[0-9a-zA-Z_]+$".into());
                }
            }
        }
    }
}

/// The client image: a format Kanidm takes, next to the scenario file.
pub(super) fn check_image(c: &mut Checker<'_>, path: &Path, f: &str, o: &OAuth2Client) {
    if let Some(img) = &o.image
        && Path::new(img)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        c.err(o.name.referenced, format!("{f}.image"), format!("`{}` is not a plain path below the scenario's folder", img.escape_debug()))
            .help = Some("the image is read next to the scenario file: write e.g. `k8s.png` or `images/k8s.png`, no `..` and no absolute path".into());
        return;
    }
    if let Some(img) = &o.image {
        let file = path.parent().unwrap_or(Path::new(".")).join(img);
        let ext_ok = ["png", "jpg", "jpeg", "gif", "svg", "webp"]
            .iter()
            .any(|e| img.to_lowercase().ends_with(&format!(".{e}")));
        if !ext_ok {
            c.err(
                o.name.referenced,
                format!("{f}.image"),
                format!("`{img}` is not png, jpg, gif, svg or webp"),
            );
        } else if !file.is_file() {
            c.err(
                o.name.referenced,
                format!("{f}.image"),
                format!("image `{}` not found", file.display()),
            )
            .help = Some("the path is relative to the scenario file".into());
        } else if let Err(why) = image_content(&file, img) {
            c.err(o.name.referenced, format!("{f}.image"), why).help = Some(format!(
                "Kanidm takes an image of at most {} KiB whose content is the type its name says",
                MAX_IMAGE_BYTES / 1024
            ));
        }
    }
}

/// Kanidm refuses a client image over 128 KiB, or one whose bytes are not its type.
const MAX_IMAGE_BYTES: u64 = 128 * 1024;

fn image_content(file: &Path, name: &str) -> Result<(), String> {
    let bytes =
        crate::input_file::read_bytes(file, MAX_IMAGE_BYTES, "the image").map_err(|e| e.0)?;
    let lower = name.to_lowercase();
    let ok = if lower.ends_with(".png") {
        bytes.starts_with(b"\x89PNG\r\n\x1a\n")
    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        bytes.starts_with(&[0xff, 0xd8, 0xff])
    } else if lower.ends_with(".gif") {
        bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a")
    } else if lower.ends_with(".webp") {
        bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP"
    } else {
        // SVG: XML text with an <svg element.
        std::str::from_utf8(&bytes).is_ok_and(|t| t.contains("<svg"))
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` does not hold what its name says (its bytes are not that image type)",
            name.escape_debug()
        ))
    }
}

/// A client's URLs (http(s) only) and scope maps (at least one scope).
pub(super) fn check_client_values(c: &mut Checker<'_>, i: usize, o: &OAuth2Client) {
    let f = format!("kanidm.oauth2Clients[{i}]");
    for (field, u) in std::iter::once(("landingUrl", &o.landing_url))
        .chain(o.redirect_urls.iter().map(|u| ("redirectUrls", u)))
    {
        if url::Url::parse(u).is_ok() && !web_url(u) {
            c.err(o.name.referenced, format!("{f}.{field}"), format!("`{}` is not an http(s) URL", u.escape_debug()))
                .help = Some("Kanidm redirects browsers only to http:// or https:// URLs, e.g. `http://localhost:8000`".into());
        }
    }
    for (kind, maps) in [
        ("scopeMaps", &o.scope_maps),
        ("supScopeMaps", &o.sup_scope_maps),
    ] {
        for (j, m) in maps.iter().enumerate() {
            if m.scopes.is_empty() {
                c.err(
                    m.group.referenced,
                    format!("{f}.{kind}[{j}].scopes"),
                    "a scope map needs at least one scope",
                )
                .help = Some("e.g. `scopes: [openid, groups]`".into());
            }
        }
    }
}

/// A mail address Kanidm stores: one `@`, something on both sides, no spaces.
pub(super) fn plausible_mail(s: &str) -> bool {
    matches!(s.split_once('@'), Some((local, domain))
        if !local.is_empty() && domain.contains('.') && !domain.contains('@')
            && !s.chars().any(char::is_whitespace))
}

/// An absolute http(s) URL (Kanidm accepts nothing else for landing and redirect URLs).
pub(super) fn web_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}
