//! Kubernetes minor versions and what each can express.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct K8sVersion {
    pub minor: u32,
}

impl K8sVersion {
    /// Oldest minor with a beta `AuthenticationConfiguration` on by default.
    pub const MIN: K8sVersion = K8sVersion { minor: 30 };
    pub const MAX: K8sVersion = K8sVersion { minor: 37 };
    pub const DEFAULT: K8sVersion = K8sVersion { minor: 36 };

    /// `apiVersion` of `AuthenticationConfiguration` for this minor, if any.
    pub fn authn_config_api_version(self) -> Option<&'static str> {
        match self.minor {
            30..=33 => Some("apiserver.config.k8s.io/v1beta1"),
            34.. => Some("apiserver.config.k8s.io/v1"),
            _ => None,
        }
    }
}

impl fmt::Display for K8sVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.minor)
    }
}

impl FromStr for K8sVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        let parts: Vec<&str> = t.split('.').collect();
        let minor = match parts.as_slice() {
            // `1.36`, or `1.36.2` (a patch release names its minor).
            ["1", m] | ["1", m, _] if digits(m) && (m.len() == 1 || !m.starts_with('0')) => m,
            _ => {
                return Err(format!(
                    "`{s}` is not a Kubernetes version; write it like `1.36`"
                ));
            }
        };
        if let [_, _, patch] = parts.as_slice()
            && !digits(patch)
        {
            return Err(format!(
                "`{s}`: the patch version must be a number; write it like `1.36` or `1.36.2`"
            ));
        }
        let minor: u32 = minor
            .parse()
            .map_err(|_| format!("`{s}`: minor version is not a number"))?;
        let v = K8sVersion { minor };
        if v < Self::MIN || v > Self::MAX {
            return Err(format!(
                "Kubernetes {v} is not supported; supported: {} to {}",
                Self::MIN,
                Self::MAX
            ));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_by_minor() {
        assert_eq!(
            "1.33"
                .parse::<K8sVersion>()
                .unwrap()
                .authn_config_api_version(),
            Some("apiserver.config.k8s.io/v1beta1")
        );
        assert_eq!(
            "v1.34.2"
                .parse::<K8sVersion>()
                .unwrap()
                .authn_config_api_version(),
            Some("apiserver.config.k8s.io/v1")
        );
        assert!(
            "1.29"
                .parse::<K8sVersion>()
                .unwrap_err()
                .contains("not supported")
        );
        assert!("2.0".parse::<K8sVersion>().is_err());
    }

    #[test]
    fn versions_are_parsed_strictly() {
        for ok in ["1.36", "v1.36", " 1.36 ", "1.36.2", "v1.33.13"] {
            assert!(ok.parse::<K8sVersion>().is_ok(), "{ok}");
        }
        for bad in [
            "1.36.garbage",
            "1.+36",
            "1.036",
            "1.36.",
            "1.36.2.1",
            "1.",
            "1.3 6",
            "vv1.36",
            "1.36-rc",
            "",
            "1.-36",
            "1.٣٦",
        ] {
            let err = bad.parse::<K8sVersion>().unwrap_err();
            assert!(err.contains("1.36"), "{bad}: {err}");
        }
    }
}
