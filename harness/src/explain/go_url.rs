//! Go's `net/url.Parse`, as far as the API server's URL checks depend on it: what it refuses,
//! and the scheme, userinfo, query and fragment it finds. (Rust's `url` crate is a WHATWG
//! parser and disagrees: it refuses `https://`, which Go accepts, and accepts hosts Go
//! refuses.) The conformance run holds this to the real kube-apiserver.

/// The parts the API server looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoUrl {
    /// Lower-cased, as Go stores it.
    pub scheme: String,
    pub has_user: bool,
    pub raw_query: String,
    pub fragment: String,
}

/// `url.Parse(raw)`; the error as Go words it.
pub fn parse(raw: &str) -> Result<GoUrl, String> {
    let fail = |why: String| Err(format!("parse {raw:?}: {why}"));
    let (u, frag) = raw.split_once('#').unwrap_or((raw, ""));
    if u.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return fail("net/url: invalid control character in URL".into());
    }
    let (scheme, rest) = match scheme_of(u) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let scheme = scheme.to_ascii_lowercase();
    let (rest, raw_query) = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        (&rest[..rest.len() - 1], "")
    } else {
        rest.split_once('?').unwrap_or((rest, ""))
    };
    let mut has_user = false;
    let mut path = rest;
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            // An opaque URL (`https:x`): no host, no path to check.
            return finish(raw, scheme, false, raw_query, frag);
        }
        if rest.split('/').next().unwrap_or_default().contains(':') {
            return fail("first path segment in URL cannot contain colon".into());
        }
    }
    if rest.starts_with("//") && (!scheme.is_empty() || !rest.starts_with("///")) {
        let after = &rest[2..];
        let (authority, p) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        path = p;
        let host = match authority.rfind('@') {
            Some(i) => {
                has_user = true;
                let userinfo = &authority[..i];
                if !userinfo.bytes().all(valid_userinfo) {
                    return fail("net/url: invalid userinfo".into());
                }
                unescape(userinfo).map_err(|e| format!("parse {raw:?}: {e}"))?;
                &authority[i + 1..]
            }
            None => authority,
        };
        if let Err(e) = check_host(host) {
            return fail(e);
        }
    }
    if let Err(e) = unescape(path) {
        return fail(e);
    }
    finish(raw, scheme, has_user, raw_query, frag)
}

fn finish(raw: &str, scheme: String, has_user: bool, q: &str, frag: &str) -> Result<GoUrl, String> {
    let fragment = unescape(frag).map_err(|e| format!("parse {raw:?}: {e}"))?;
    Ok(GoUrl {
        scheme,
        has_user,
        raw_query: q.to_string(),
        fragment,
    })
}

/// Go's `getScheme`.
fn scheme_of(u: &str) -> Result<(&str, &str), String> {
    for (i, c) in u.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err("missing protocol scheme".into()),
            ':' => return Ok((&u[..i], &u[i + 1..])),
            _ => return Ok(("", u)),
        }
    }
    Ok(("", u))
}

fn valid_userinfo(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b) || b >= 0x80
}

/// Go's `parseHost`: a bracketed IPv6 literal or a name, an optional numeric port, and only
/// the characters a host may hold.
fn check_host(host: &str) -> Result<(), String> {
    let name = if let Some(stripped) = host.strip_prefix('[') {
        let Some(end) = stripped.find(']') else {
            return Err("missing ']' in host".into());
        };
        let port = &stripped[end + 1..];
        if !valid_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
        return Ok(());
    } else if let Some(i) = host.rfind(':') {
        let port = &host[i..];
        if !valid_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
        &host[..i]
    } else {
        host
    };
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let esc = name.get(i..i + 3).unwrap_or(&name[i..]);
            let hex = esc.len() == 3 && esc[1..].bytes().all(|x| x.is_ascii_hexdigit());
            if !hex || (u8::from_str_radix(&esc[1..2], 16).unwrap_or(0) < 8 && esc != "%25") {
                return Err(format!("invalid URL escape {esc:?}"));
            }
            i += 3;
            continue;
        }
        let ok = b >= 0x80 || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"".contains(&b);
        if !ok {
            return Err(format!(
                "invalid character {:?} in host name",
                (b as char).to_string()
            ));
        }
        i += 1;
    }
    Ok(())
}

fn valid_port(p: &str) -> bool {
    p.is_empty()
        || p.strip_prefix(':')
            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
}

/// Percent-escapes must be `%` and two hex digits.
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let esc = s.get(i..(i + 3).min(s.len())).unwrap_or("%");
            if esc.len() < 3 || !esc[1..].bytes().all(|x| x.is_ascii_hexdigit()) {
                return Err(format!("invalid URL escape {esc:?}"));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_go_parses() {
        let ok = |s: &str| parse(s).unwrap();
        assert_eq!(ok("https://").scheme, "https");
        assert_eq!(ok("HTTPS://issuer.example/x").scheme, "https");
        assert!(ok("https://u:p@h/x").has_user);
        assert_eq!(ok("https://h/x?a=1").raw_query, "a=1");
        assert_eq!(ok("https://h/x?").raw_query, "");
        assert_eq!(ok("https://h/x#f").fragment, "f");
        assert_eq!(ok("issuer.example").scheme, "");
        assert!(ok("https://h/a b").raw_query.is_empty());
        assert!(
            parse("https://h:abc/x")
                .unwrap_err()
                .contains("invalid port")
        );
        assert!(
            parse("https://a b/x")
                .unwrap_err()
                .contains("invalid character")
        );
        assert!(
            parse("https://h/%zz")
                .unwrap_err()
                .contains("invalid URL escape")
        );
        assert!(parse(":x").unwrap_err().contains("missing protocol scheme"));
        assert!(parse("a:b/c").is_ok());
        assert!(parse("x/a:b").is_ok());
        assert!(parse("ab:c").is_ok());
        assert!(
            parse("https://h/\u{7f}")
                .unwrap_err()
                .contains("control character")
        );
        assert!(parse("https://[::1]:8443/x").is_ok());
        assert!(parse("https://[::1/x").unwrap_err().contains("missing ']'"));
    }
}
