//! `serve --tls-self-signed NAME...`: a private CA and a leaf certificate for
//! the given host names, so a resident worker serves `wss://` without an
//! operator running openssl. rustls refuses a lone self-signed certificate
//! as a server certificate (`CaUsedAsEndEntity`), hence a CA plus a leaf.
//!
//! Written to `--tls-dir`: `ca.pem` (the CA certificate, to hand to engines
//! as `run --ca-cert`), `cert.pem` and `key.pem` (the leaf; the key 0600).
//! The CA's own key is never written: nothing else can be signed with it.
//! Existing files are reused, so engines keep trusting the worker across
//! restarts.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The files of a made (or reused) CA and leaf.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The CA certificate engines trust (`run --ca-cert`).
    pub ca: PathBuf,
    /// The leaf certificate chain the worker serves.
    pub cert: PathBuf,
    /// The leaf's private key (0600).
    pub key: PathBuf,
    /// Whether they were made now (not reused).
    pub made: bool,
}

/// Makes a CA and a leaf for `names` in `dir` (created 0700 if missing), or
/// reuses the three files when all are there.
pub fn ensure(dir: &Path, names: &[String]) -> anyhow::Result<SelfSigned> {
    let files = SelfSigned {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        made: false,
    };
    if files.ca.is_file() && files.cert.is_file() && files.key.is_file() {
        return Ok(files);
    }
    if names.iter().any(|n| n.trim().is_empty()) {
        bail!("--tls-self-signed: a name is empty: give the host names (or IP addresses) engines use to reach this worker, e.g. --tls-self-signed localhost gpu-box.lan");
    }
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("--tls-dir: cannot create {}", dir.display()))?;
    }
    let (ca_pem, cert_pem, key_pem) = make(names)?;
    write(&files.ca, ca_pem.as_bytes(), 0o644)?;
    write(&files.cert, cert_pem.as_bytes(), 0o644)?;
    write(&files.key, key_pem.as_bytes(), 0o600)?;
    Ok(SelfSigned {
        made: true,
        ..files
    })
}

/// `(CA certificate, leaf certificate, leaf key)` as PEM.
fn make(names: &[String]) -> anyhow::Result<(String, String, String)> {
    let fail = |what: &'static str| {
        move |e: rcgen::Error| anyhow::anyhow!("--tls-self-signed: cannot {what}: {e}")
    };
    let mut ca_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail("set up the CA"))?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bamboo-worker serve CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().map_err(fail("make the CA key"))?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)
        .map_err(fail("sign the CA certificate"))?;
    // Names that parse as IP addresses become IP entries.
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(fail("use the names given"))?;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    let key = rcgen::KeyPair::generate().map_err(fail("make the certificate key"))?;
    let cert = params
        .signed_by(&key, &ca)
        .map_err(fail("sign the certificate"))?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

/// Writes `bytes` to a new file `path` with `mode` from its creation (a key
/// is never readable by others, not even for a moment).
fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("--tls-dir: cannot write {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("--tls-dir: cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_and_a_leaf_rustls_accepts_are_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let made = ensure(&tls, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(made.made);
        let cert = std::fs::read(&made.cert).unwrap();
        let key = std::fs::read(&made.key).unwrap();
        bamboo_subagent::resident::tls::server_config(&cert, &key).unwrap();
        bamboo_subagent::resident::tls::root_certs(&std::fs::read(&made.ca).unwrap()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&made.key), 0o600);
        assert_eq!(mode(&tls), 0o700);
        assert!(!std::fs::read_to_string(&made.ca)
            .unwrap()
            .contains("PRIVATE KEY"));
        let again = ensure(&tls, &["other".into()]).unwrap();
        assert!(!again.made);
        assert_eq!(std::fs::read(&again.cert).unwrap(), cert, "reused");
    }
}
