//! Reading files a stranger names: only regular files, never more than a stated number of
//! bytes, never a FIFO (which blocks), a device (`/dev/zero` never ends) or a kernel
//! pseudo-file (`/proc/self/environ`). Errors say what the path is, never what it holds.

use std::io::Read;
use std::path::Path;

/// Why a file was not read. The message names the path and the reason, never the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Trees of the kernel's pseudo-files: they claim to be regular files of size 0 and hold
/// process state and secrets; no input of ours lives there.
const PSEUDO_TREES: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The bytes of `path`, if it is a regular file (symlinks followed) of at most `max` bytes.
/// `what` names the input in messages ("the token file", "the CA file").
pub fn read_bytes(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, Refused> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| Refused(format!("{what} {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Refused(format!(
            "{what} {shown} is not a regular file ({}); give a file",
            kind_of(&meta)
        )));
    }
    if let Ok(real) = std::fs::canonicalize(path)
        && PSEUDO_TREES.iter().any(|t| real.starts_with(t))
    {
        return Err(Refused(format!(
            "{what} {shown} is a kernel pseudo-file ({}); give a file",
            real.display()
        )));
    }
    if meta.len() > max {
        return Err(Refused(format!(
            "{what} {shown} has {} bytes; at most {max} are read",
            meta.len()
        )));
    }
    // Opened without blocking (a FIFO swapped in after the check must not hang us), then
    // checked again on the descriptor itself.
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Refused(format!("{what} {shown}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| Refused(format!("{what} {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Refused(format!(
            "{what} {shown} changed into {} while being opened",
            kind_of(&meta)
        )));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Refused(format!("{what} {shown}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(Refused(format!(
            "{what} {shown} grew past {max} bytes while being read"
        )));
    }
    Ok(bytes)
}

/// [`read_bytes`], as UTF-8 text.
pub fn read_text(path: &Path, max: u64, what: &str) -> Result<String, Refused> {
    let bytes = read_bytes(path, max, what)?;
    String::from_utf8(bytes).map_err(|e| {
        Refused(format!(
            "{what} {} is not UTF-8 text (byte {} is not)",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// A decoder's message without the values it quotes from the input (`invalid type: string
/// "root:$6$…"` becomes `invalid type: string`): an error about a file names where and what
/// kind of problem, never what the file holds.
pub fn redact_values(msg: &str) -> String {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r#"(invalid (?:type|value|length): [a-z ]+?) (?:"(?:[^"\\]|\\.)*"|`[^`]*`)"#,
        )
        .ok()
    });
    let msg = match re {
        Some(re) => re.replace_all(msg, "$1").into_owned(),
        None => msg.to_string(),
    };
    // An unknown field is named only when its name looks like a key: a file that is not YAML
    // at all (a password file) would otherwise be echoed as one long "field name".
    static FIELD: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let field = FIELD.get_or_init(|| regex::Regex::new(r"unknown field `([^`]*)`").ok());
    match field {
        Some(f) => f
            .replace_all(&msg, |c: &regex::Captures<'_>| {
                let name = &c[1];
                let plain = name.len() <= 64
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch));
                if plain {
                    format!("unknown field `{name}`")
                } else {
                    "unknown field (not shown: it is not a plain key)".to_string()
                }
            })
            .into_owned(),
        None => msg,
    }
}

/// A YAML decoder's error without the source lines it quotes and the values it names.
pub fn yaml_error(e: &serde_saphyr::Error) -> String {
    redact_values(&e.without_snippet().to_string())
}

/// `s` as it may be printed to a terminal: control characters (escape sequences, carriage
/// returns, bidi overrides) written as `\u{…}`, so a value taken from a token or a file can
/// neither move the cursor nor forge a line of our output.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = std::time::Instant::now();
        let e = read_bytes(&fifo, 10, "the token file").unwrap_err();
        assert!(e.0.contains("a FIFO"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            read_bytes(Path::new("/dev/zero"), 10, "x")
                .unwrap_err()
                .0
                .contains("character device")
        );
        assert!(
            read_bytes(Path::new("/proc/self/environ"), 1 << 20, "x")
                .unwrap_err()
                .0
                .contains("pseudo-file")
        );
        assert!(
            read_bytes(dir.path(), 10, "x")
                .unwrap_err()
                .0
                .contains("directory")
        );
        let link = dir.path().join("env");
        std::os::unix::fs::symlink("/proc/self/environ", &link).unwrap();
        let e = read_bytes(&link, 1 << 20, "x").unwrap_err();
        assert!(e.0.contains("pseudo-file"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, "secret-content-0123456789").unwrap();
        let e = read_bytes(&big, 10, "x").unwrap_err();
        assert!(e.0.contains("25 bytes") && !e.0.contains("secret"), "{e}");
        assert_eq!(read_bytes(&big, 100, "x").unwrap().len(), 25);
        std::fs::write(&big, [0xff, 0xfe]).unwrap();
        assert!(
            read_text(&big, 100, "x")
                .unwrap_err()
                .0
                .contains("not UTF-8")
        );
    }

    #[test]
    fn decoder_messages_lose_the_values_they_quote() {
        assert_eq!(
            redact_values(
                "invalid type: string \"root:$6$abc:19000\", expected struct X at line 1"
            ),
            "invalid type: string, expected struct X at line 1"
        );
        assert_eq!(
            redact_values("invalid value: integer `5`, expected a bool"),
            "invalid value: integer, expected a bool"
        );
        assert_eq!(
            redact_values("unknown field `jwts`"),
            "unknown field `jwts`"
        );
        assert_eq!(
            redact_values("unknown field `root:$6$SECRET:19000::`, expected one of name"),
            "unknown field (not shown: it is not a plain key), expected one of name"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("alice"), "alice");
        assert_eq!(printable("a\u{1b}[2Jb\r\n"), "a\\u{1b}[2Jb\\u{d}\\u{a}");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
    }
}
