//! Container image references as the harness accepts them from users.

/// A plausible `[registry/]name[:tag][@digest]`: no spaces, no shell or YAML specials.
pub fn valid_image_ref(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && !s.starts_with(['-', '/', ':', '@'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@+".contains(c))
}
