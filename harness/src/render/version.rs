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
        let t = s.trim().trim_start_matches('v');
        let mut parts = t.split('.');
        let (major, minor) = (parts.next(), parts.next());
        let minor: u32 = match (major, minor) {
            (Some("1"), Some(m)) => m
                .parse()
                .map_err(|_| format!("`{s}`: minor version is not a number"))?,
            _ => {
                return Err(format!(
                    "`{s}` is not a Kubernetes version; write it like `1.36`"
                ));
            }
        };
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
}
