//! Lab PKI: a fresh CA per lab and the certificates the topology needs.
//!
//! Everything that talks to Kanidm or the API server trusts exactly this CA; nothing is
//! relaxed. Private keys are written with mode 0600 and disappear with the lab directory.

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time_shim::validity;

/// Paths of the PEM files of one lab's PKI.
#[derive(Debug, Clone)]
pub struct LabPki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_pem: String,
    /// Kanidm serving chain (leaf + CA) and key.
    pub kanidm_chain: PathBuf,
    pub kanidm_key: PathBuf,
    /// base64(SHA-256(SubjectPublicKeyInfo)) of Kanidm's leaf: Chromium's
    /// `--ignore-certificate-errors-spki-list` pins exactly this key.
    pub kanidm_spki_sha256: String,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    /// Client certificate with O=system:masters for the harness's admin access.
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// etcd's certificate (serving clients and its peer port: 127.0.0.1) and key.
    pub etcd_cert: PathBuf,
    pub etcd_key: PathBuf,
    /// The client certificate kube-apiserver (and the harness) present to etcd.
    pub etcd_client_cert: PathBuf,
    pub etcd_client_key: PathBuf,
    /// Service-account signing key and its public key (kube-apiserver requires both).
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

/// Names a serving certificate must carry.
#[derive(Debug, Clone)]
pub struct ServingNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ServingNames {
    pub fn loopback(dns: &[&str]) -> Self {
        ServingNames {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ips: vec![IpAddr::from([127, 0, 0, 1])],
        }
    }
}

mod time_shim {
    use rcgen::CertificateParams;
    /// Valid from one hour ago for 30 days: labs are short-lived, clocks are not perfect.
    pub fn validity(p: &mut CertificateParams) {
        let now = std::time::SystemTime::now();
        let back = now - std::time::Duration::from_secs(3600);
        let fwd = now + std::time::Duration::from_secs(30 * 24 * 3600);
        p.not_before = back.into();
        p.not_after = fwd.into();
    }
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    if let Some(o) = org {
        d.push(DnType::OrganizationName, o);
    }
    d
}

/// Write a file only its owner can read (keys, tokens, kubeconfigs with tokens).
pub fn write_secret(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn write_public(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

fn leaf(
    names: &ServingNames,
    cn: &str,
    org: Option<&str>,
    eku: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, KeyPair)> {
    leaf_for(names, cn, org, vec![eku], issuer)
}

fn leaf_for(
    names: &ServingNames,
    cn: &str,
    org: Option<&str>,
    ekus: Vec<ExtendedKeyUsagePurpose>,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, KeyPair)> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, org);
    p.subject_alt_names = names
        .dns
        .iter()
        .map(|d| Ok(SanType::DnsName(d.clone().try_into()?)))
        .chain(names.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, rcgen::Error>>()?;
    p.extended_key_usages = ekus;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut p);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key))
}

/// The local topology's PKI: Kanidm and the API server both served as localhost/127.0.0.1.
pub fn generate_local(dir: &Path) -> Result<LabPki> {
    let names = ServingNames::loopback(&["localhost"]);
    generate(dir, &names, &names)
}

/// Generate a fresh CA and all lab certificates into `dir` (created with mode 0700).
pub fn generate(
    dir: &Path,
    kanidm_names: &ServingNames,
    apiserver_names: &ServingNames,
) -> Result<LabPki> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;

    let mut ca = CertificateParams::default();
    ca.distinguished_name = dn("kanidm-k8s-lab CA", Some("kanidm-k8s-lab"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca, ca_key);

    let (k_cert, k_key) = leaf(
        kanidm_names,
        "kanidm",
        None,
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
    )?;
    let spki = Sha256::digest(k_key.subject_public_key_info());
    let (a_cert, a_key) = leaf(
        apiserver_names,
        "kube-apiserver",
        None,
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
    )?;
    let none = ServingNames {
        dns: vec![],
        ips: vec![],
    };
    let (m_cert, m_key) = leaf(
        &none,
        "kanidm-k8s-lab-admin",
        Some("system:masters"),
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    )?;
    // etcd serves clients and its peer port with one certificate (both ends of a peer
    // connection present it), and accepts only clients the lab CA signed.
    let (e_cert, e_key) = leaf_for(
        &ServingNames::loopback(&["localhost"]),
        "etcd",
        None,
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        &issuer,
    )?;
    let (ec_cert, ec_key) = leaf(
        &none,
        "kube-apiserver-etcd-client",
        None,
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    )?;
    let sa = KeyPair::generate()?;

    let pki = LabPki {
        dir: dir.to_path_buf(),
        ca_cert: dir.join("ca.pem"),
        ca_pem: ca_pem.clone(),
        kanidm_chain: dir.join("kanidm-chain.pem"),
        kanidm_key: dir.join("kanidm-key.pem"),
        kanidm_spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki),
        apiserver_cert: dir.join("apiserver.pem"),
        apiserver_key: dir.join("apiserver-key.pem"),
        admin_cert: dir.join("admin.pem"),
        admin_key: dir.join("admin-key.pem"),
        etcd_cert: dir.join("etcd.pem"),
        etcd_key: dir.join("etcd-key.pem"),
        etcd_client_cert: dir.join("etcd-client.pem"),
        etcd_client_key: dir.join("etcd-client-key.pem"),
        sa_key: dir.join("sa-key.pem"),
        sa_pub: dir.join("sa.pub"),
    };
    write_public(&pki.ca_cert, &ca_pem)?;
    write_public(&pki.kanidm_chain, &format!("{k_cert}{ca_pem}"))?;
    write_secret(&pki.kanidm_key, &k_key.serialize_pem())?;
    write_public(&pki.apiserver_cert, &format!("{a_cert}{ca_pem}"))?;
    write_secret(&pki.apiserver_key, &a_key.serialize_pem())?;
    write_public(&pki.admin_cert, &m_cert)?;
    write_secret(&pki.admin_key, &m_key.serialize_pem())?;
    write_public(&pki.etcd_cert, &e_cert)?;
    write_secret(&pki.etcd_key, &e_key.serialize_pem())?;
    write_public(&pki.etcd_client_cert, &ec_cert)?;
    write_secret(&pki.etcd_client_key, &ec_key.serialize_pem())?;
    write_secret(&pki.sa_key, &sa.serialize_pem())?;
    write_public(&pki.sa_pub, &sa.public_key_pem())?;
    Ok(pki)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_private_and_chain_has_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = generate(
            &dir.path().join("pki"),
            &ServingNames::loopback(&["localhost"]),
            &ServingNames::loopback(&["localhost"]),
        )
        .unwrap();
        for key in [
            &pki.kanidm_key,
            &pki.apiserver_key,
            &pki.admin_key,
            &pki.sa_key,
        ] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let chain = std::fs::read_to_string(&pki.kanidm_chain).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(chain.ends_with(&pki.ca_pem));
        assert_eq!(pki.kanidm_spki_sha256.len(), 44);
    }

    #[test]
    fn serving_cert_verifies_against_ca_with_rustls() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let pki = generate(
            &dir.path().join("pki"),
            &ServingNames::loopback(&["localhost"]),
            &ServingNames::loopback(&[]),
        )
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        let ca_der = pem_to_der(&pki.ca_pem);
        roots.add(ca_der.into()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder(roots.into())
            .build()
            .unwrap();
        let chain = std::fs::read_to_string(&pki.kanidm_chain).unwrap();
        let leaf = pem_to_der(
            chain
                .split_inclusive("-----END CERTIFICATE-----\n")
                .next()
                .unwrap(),
        );
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        verifier
            .verify_server_cert(
                &leaf.into(),
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("kanidm leaf verifies for localhost");
        let wrong = rustls::pki_types::ServerName::try_from("example.com").unwrap();
        let leaf2 = pem_to_der(
            chain
                .split_inclusive("-----END CERTIFICATE-----\n")
                .next()
                .unwrap(),
        );
        assert!(
            verifier
                .verify_server_cert(
                    &leaf2.into(),
                    &[],
                    &wrong,
                    &[],
                    rustls::pki_types::UnixTime::now()
                )
                .is_err()
        );
    }

    fn pem_to_der(pem: &str) -> Vec<u8> {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }
}
