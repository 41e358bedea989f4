//! The user's names that the lab must replace with its own: their Kanidm's issuer URL, the
//! domain in SPNs, person UUIDs. Every rewrite is recorded for the scenario's header. Pure.

use std::collections::BTreeMap;

/// What is known about the user's Kanidm.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Their issuer URL, as written (`https://sso.kammel.dev/oauth2/openid/k8s`).
    pub issuer: Option<String>,
    /// The OAuth2 client that issuer belongs to.
    pub client: Option<String>,
    /// The host of their Kanidm, the domain in SPNs (`k8s_admins@sso.kammel.dev`).
    pub domain: Option<String>,
    /// Person UUIDs of their Kanidm → person names.
    pub uuids: BTreeMap<String, String>,
}

/// `https://host[:port]/oauth2/openid/<client>[/]` → (client, host).
pub fn kanidm_issuer(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://")?;
    let (hostport, path) = rest.split_once('/')?;
    let client = path.strip_prefix("oauth2/openid/")?.trim_end_matches('/');
    if client.is_empty() || client.contains('/') {
        return None;
    }
    let host = hostport
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(hostport);
    Some((client.to_string(), host.to_string()))
}

/// Rewrites made, for the header (`from → to`), deduplicated in order.
#[derive(Debug, Default)]
pub struct Log(pub Vec<String>);

impl Log {
    pub fn note(&mut self, s: String) {
        if !self.0.contains(&s) {
            self.0.push(s);
        }
    }
}

impl Origin {
    /// The lab's form of a name the API server sees (an RBAC subject, a whoami value):
    /// the issuer URL → `${issuer:<client>}`, `<issuer>#<uuid>` → `…#${uuid:<person>}`,
    /// `<name>@<domain>` → `<name>@${domain}`.
    pub fn subject(&self, s: &str, log: &mut Log) -> String {
        if let (Some(iss), Some(client)) = (&self.issuer, &self.client) {
            let bare = iss.trim_end_matches('/');
            if let Some(rest) = s.strip_prefix(bare) {
                let lab_iss = format!("${{issuer:{client}}}");
                if rest.is_empty() || rest == "/" {
                    log.note(format!("issuer `{s}` → `{lab_iss}`"));
                    return lab_iss;
                }
                if let Some(uuid) = rest.strip_prefix('#') {
                    let to = match self.uuids.get(uuid) {
                        Some(p) => format!("{lab_iss}#${{uuid:{p}}}"),
                        None => format!("{lab_iss}#{uuid}"),
                    };
                    log.note(format!("user `{s}` → `{to}`"));
                    return to;
                }
            }
        }
        if let Some(d) = &self.domain
            && let Some(name) = s.strip_suffix(&format!("@{d}"))
            && !name.is_empty()
        {
            let to = format!("{name}@${{domain}}");
            log.note(format!(
                "domain `{d}` → `${{domain}}` (in group and user names)"
            ));
            return to;
        }
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_posts_names_become_the_labs() {
        assert_eq!(
            kanidm_issuer("https://sso.kammel.dev/oauth2/openid/k8s"),
            Some(("k8s".into(), "sso.kammel.dev".into()))
        );
        assert_eq!(
            kanidm_issuer("https://<MY KANIDM ADDRESS>/oauth2/openid/k8s"),
            Some(("k8s".into(), "<MY KANIDM ADDRESS>".into()))
        );
        assert_eq!(kanidm_issuer("https://accounts.google.com"), None);
        let mut o = Origin {
            issuer: Some("https://sso.kammel.dev/oauth2/openid/k8s".into()),
            client: Some("k8s".into()),
            domain: Some("sso.kammel.dev".into()),
            ..Default::default()
        };
        o.uuids.insert(
            "7b89b6ea-1e8b-4aa8-98fb-a70cba498d16".into(),
            "datosh".into(),
        );
        let mut log = Log::default();
        assert_eq!(
            o.subject(
                "https://sso.kammel.dev/oauth2/openid/k8s#7b89b6ea-1e8b-4aa8-98fb-a70cba498d16",
                &mut log
            ),
            "${issuer:k8s}#${uuid:datosh}"
        );
        assert_eq!(
            o.subject("k8s_admins@sso.kammel.dev", &mut log),
            "k8s_admins@${domain}"
        );
        assert_eq!(o.subject("system:masters", &mut log), "system:masters");
        assert_eq!(log.0.len(), 2);
    }
}
