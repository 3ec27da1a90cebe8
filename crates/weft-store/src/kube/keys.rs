//! Annotation keys under `--kube-annotation-prefix`, normalised exactly as
//! flannel's `newAnnotations` does, so a prefix that works with flannel
//! names the same keys with weft.

use std::sync::LazyLock;

use regex::Regex;

/// flannel's default `--kube-annotation-prefix`.
pub const DEFAULT_PREFIX: &str = "flannel.alpha.coreos.com";

/// flannel's check, unanchored at the start as Go's `MatchString` is.
static PREFIX_FORMAT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?:[a-z0-9_-]+\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$").ok());

/// Why a prefix was refused. The first two messages are flannel's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("subnet/kube: prefix can contain at most single slash")]
    TooManySlashes,
    #[error("subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*")]
    Format,
    /// flannel accepts these (its regex is not anchored at the start) and
    /// then fails at the first PATCH, when the API server rejects the key.
    #[error(
        "subnet/kube: prefix {prefix:?} gives annotation keys Kubernetes refuses: the part \
         before the slash must be a lowercase DNS name (letters, digits, '-' and '.'), e.g. \
         flannel.alpha.coreos.com"
    )]
    NotDnsSubdomain { prefix: String },
}

/// Every annotation weft reads or writes on a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationKeys {
    /// The normalised prefix (ends in `/` or `-`).
    pub prefix: String,
    pub kube_subnet_manager: String,
    pub backend_data: String,
    pub backend_v6_data: String,
    pub backend_type: String,
    pub public_ip: String,
    pub public_ipv6: String,
    /// Read-only: overrides `--public-ip` at startup.
    pub node_public_ip: String,
    pub node_public_ipv6: String,
    /// Read-only: published as `public-ip` instead of the detected address.
    pub public_ip_overwrite: String,
    pub public_ipv6_overwrite: String,
}

impl AnnotationKeys {
    /// Normalises `prefix` as flannel does: at most one `/`; none → append
    /// `/`; not ending in `/` or `-` → append `-`; then flannel's format
    /// check, then (weft only) Kubernetes' own rule for the DNS part.
    pub fn new(prefix: &str) -> Result<AnnotationKeys, PrefixError> {
        let mut p = prefix.to_owned();
        match p.matches('/').count() {
            0 => p.push('/'),
            1 => {}
            _ => return Err(PrefixError::TooManySlashes),
        }
        if !p.ends_with('/') && !p.ends_with('-') {
            p.push('-');
        }
        let matches = PREFIX_FORMAT.as_ref().is_some_and(|re| re.is_match(&p));
        if !matches {
            return Err(PrefixError::Format);
        }
        let dns = p.split('/').next().unwrap_or_default();
        let dns_ok = dns.len() <= 253
            && dns.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !dns_ok {
            return Err(PrefixError::NotDnsSubdomain {
                prefix: prefix.to_owned(),
            });
        }
        let key = |name: &str| format!("{p}{name}");
        Ok(AnnotationKeys {
            kube_subnet_manager: key("kube-subnet-manager"),
            backend_data: key("backend-data"),
            backend_v6_data: key("backend-v6-data"),
            backend_type: key("backend-type"),
            public_ip: key("public-ip"),
            public_ipv6: key("public-ipv6"),
            node_public_ip: key("node-public-ip"),
            node_public_ipv6: key("node-public-ipv6"),
            public_ip_overwrite: key("public-ip-overwrite"),
            public_ipv6_overwrite: key("public-ipv6-overwrite"),
            prefix: p,
        })
    }

    /// The keys weft writes (and `release` removes).
    pub fn written(&self) -> [&str; 6] {
        [
            &self.kube_subnet_manager,
            &self.backend_type,
            &self.backend_data,
            &self.backend_v6_data,
            &self.public_ip,
            &self.public_ipv6,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> Result<String, PrefixError> {
        AnnotationKeys::new(p).map(|k| k.prefix)
    }

    #[test]
    fn default_prefix_gives_flannels_keys() {
        let k = AnnotationKeys::new(DEFAULT_PREFIX).unwrap();
        assert_eq!(k.backend_data, "flannel.alpha.coreos.com/backend-data");
        assert_eq!(
            k.kube_subnet_manager,
            "flannel.alpha.coreos.com/kube-subnet-manager"
        );
        assert_eq!(
            k.public_ipv6_overwrite,
            "flannel.alpha.coreos.com/public-ipv6-overwrite"
        );
    }

    #[test]
    fn normalisation_follows_flannel() {
        assert_eq!(prefix("example.com").unwrap(), "example.com/");
        assert_eq!(prefix("example.com/").unwrap(), "example.com/");
        assert_eq!(prefix("example.com/weft").unwrap(), "example.com/weft-");
        assert_eq!(prefix("example.com/weft-").unwrap(), "example.com/weft-");
        assert_eq!(prefix("a.b/c_d").unwrap(), "a.b/c_d-");
    }

    #[test]
    fn refusals_carry_flannels_messages() {
        let e = prefix("a.com/b/c").unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet/kube: prefix can contain at most single slash"
        );
        for bad in ["nodots", "example.com/UPPER", "example.com/a.b", "/x", ""] {
            let e = prefix(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*",
                "{bad}"
            );
        }
    }

    #[test]
    fn weft_also_refuses_what_the_api_server_would() {
        // flannel's unanchored regex matches "coreos.com/" inside these.
        for bad in [
            "Flannel.coreos.com",
            "-x.coreos.com",
            "a..coreos.com",
            "a_b.coreos.com",
        ] {
            assert!(
                matches!(prefix(bad), Err(PrefixError::NotDnsSubdomain { .. })),
                "{bad}"
            );
        }
    }
}
