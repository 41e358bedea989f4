//! `${…}` placeholders for values known only at run time, so scenario files stay portable.
//!
//! - `${domain}`: the Kanidm domain (`preferred_username` and group SPNs end in `@<domain>`)
//! - `${origin}`: the Kanidm origin URL
//! - `${issuer:<client>}`: the issuer URL of an OAuth2 client
//! - `${uuid:<person>}`: a person's UUID (the `sub` claim; post 2 binds `<issuer>#<uuid>`)
//! - `${jti:<point>:<person>}` (a step's `apiServer` only): the `jti` of the id_token the
//!   person (named as at that point) got at `initial` or an earlier step: Kanidm's session id

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    Domain,
    Origin,
    Issuer(String),
    Uuid(String),
    /// (point, person)
    Jti(String, String),
}

/// The values placeholders resolve to in one lab.
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub domain: String,
    pub origin: String,
    pub issuers: BTreeMap<String, String>,
    pub uuids: BTreeMap<String, String>,
    /// `<point>:<person>` → the `jti` of that kept token.
    pub jtis: BTreeMap<String, String>,
}

/// The issuer URL of a Kanidm OAuth2 client. The one constructor: the browser, the
/// harness and the API server must see it byte for byte the same.
pub fn issuer_url(origin: &str, client: &str) -> String {
    format!("{origin}/oauth2/openid/{client}")
}

impl Values {
    /// The values of a lab whose Kanidm serves `origin` for `domain`, with these clients
    /// and person UUIDs.
    pub fn for_lab<'a>(
        domain: &str,
        origin: &str,
        clients: impl IntoIterator<Item = &'a str>,
        uuids: BTreeMap<String, String>,
    ) -> Values {
        Values {
            domain: domain.to_string(),
            origin: origin.to_string(),
            issuers: clients
                .into_iter()
                .map(|c| (c.to_string(), issuer_url(origin, c)))
                .collect(),
            uuids,
            jtis: BTreeMap::new(),
        }
    }
}

/// Find every placeholder in `text`; an unknown one is an error naming it.
pub fn scan(text: &str) -> Result<Vec<Placeholder>, String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated placeholder in `{text}`: missing `}}`"))?;
        found.push(parse_one(&after[..end])?);
        rest = &after[end + 1..];
    }
    Ok(found)
}

fn parse_one(inner: &str) -> Result<Placeholder, String> {
    match inner.split_once(':') {
        None if inner == "domain" => Ok(Placeholder::Domain),
        None if inner == "origin" => Ok(Placeholder::Origin),
        Some(("issuer", client)) => Ok(Placeholder::Issuer(client.to_string())),
        Some(("uuid", person)) => Ok(Placeholder::Uuid(person.to_string())),
        Some(("jti", rest)) => match rest.split_once(':') {
            Some((point, person)) if !point.is_empty() && !person.is_empty() => {
                Ok(Placeholder::Jti(point.to_string(), person.to_string()))
            }
            _ => Err(format!(
                "`${{{inner}}}`: write it as ${{jti:<step or initial>:<person>}}"
            )),
        },
        _ => Err(format!(
            "unknown placeholder `${{{inner}}}`; expected ${{domain}}, ${{origin}}, ${{issuer:<client>}}, ${{uuid:<person>}} or ${{jti:<step>:<person>}}"
        )),
    }
}

/// Replace every placeholder. Errors name the placeholder that has no value.
pub fn resolve(text: &str, values: &Values) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated placeholder in `{text}`"))?;
        let value =
            match parse_one(&after[..end])? {
                Placeholder::Domain => values.domain.clone(),
                Placeholder::Origin => values.origin.clone(),
                Placeholder::Issuer(c) => values
                    .issuers
                    .get(&c)
                    .cloned()
                    .ok_or(format!("no issuer known for client `{c}`"))?,
                Placeholder::Uuid(p) => values
                    .uuids
                    .get(&p)
                    .cloned()
                    .ok_or(format!("no UUID known for person `{p}`"))?,
                Placeholder::Jti(point, p) => values
                    .jtis
                    .get(&format!("{point}:{p}"))
                    .cloned()
                    .ok_or(format!(
                        "{p} has no token from `{point}` to take a jti from"
                    ))?,
            };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_all_kinds() {
        let mut v = Values {
            domain: "idm.lab".into(),
            origin: "https://idm.lab:8443".into(),
            ..Default::default()
        };
        v.issuers.insert(
            "k8s".into(),
            "https://idm.lab:8443/oauth2/openid/k8s".into(),
        );
        v.uuids.insert("alice".into(), "u-1".into());
        assert_eq!(
            resolve("k8s_users@${domain}", &v).unwrap(),
            "k8s_users@idm.lab"
        );
        assert_eq!(
            resolve("${issuer:k8s}#${uuid:alice}", &v).unwrap(),
            "https://idm.lab:8443/oauth2/openid/k8s#u-1"
        );
        assert!(resolve("${uuid:bob}", &v).unwrap_err().contains("bob"));
    }

    #[test]
    fn scan_rejects_unknown() {
        assert!(scan("${nope}").unwrap_err().contains("unknown placeholder"));
        assert!(scan("${domain").unwrap_err().contains("unterminated"));
        assert_eq!(scan("a ${domain} b ${uuid:x}").unwrap().len(), 2);
        assert_eq!(
            scan("${jti:initial:alice}").unwrap(),
            vec![Placeholder::Jti("initial".into(), "alice".into())]
        );
        assert!(
            scan("${jti:alice}")
                .unwrap_err()
                .contains("jti:<step or initial>")
        );
        let mut v = Values::default();
        v.jtis.insert("initial:alice".into(), "j-1".into());
        assert_eq!(resolve("JTI=${jti:initial:alice}", &v).unwrap(), "JTI=j-1");
        assert!(
            resolve("${jti:s1:alice}", &v)
                .unwrap_err()
                .contains("no token from `s1`")
        );
    }
}
