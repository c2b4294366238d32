//! The web app's certificate: generated at first start (self-signed, like Syncthing's
//! GUI) into the data dir and reused afterwards, or a real one given by the operator
//! (`--web-cert`/`--web-key`, e.g. PKIoverheid). Either way the SHA-256 fingerprint
//! of the certificate is shown, so a person can check what the browser shows.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// The generated certificate in the data dir.
pub const CERT_FILE: &str = "web-cert.pem";
/// The generated certificate's private key in the data dir (mode 0600).
pub const KEY_FILE: &str = "web-key.pem";
/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1 << 20;
/// How long a generated certificate is valid.
const GENERATED_VALID_DAYS: i64 = 3650;

/// Why the certificate could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A certificate file holds no usable certificate.
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no usable private key.
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A file is larger than any certificate or key.
    #[error("{path} is larger than 1 MiB: not a certificate or key file")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The key does not belong to the certificate, or rustls refuses them.
    #[error(
        "the certificate {cert} and the key {key} do not fit together ({detail}): give the key that belongs to the certificate"
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// Generating a certificate failed.
    #[error("cannot generate the web app's certificate: {0}")]
    Generate(String),
}

/// Where the certificate comes from.
#[derive(Clone, Debug)]
pub enum CertSource {
    /// Generate one into the data dir at first start, reuse it afterwards.
    Generated {
        /// The data dir.
        dir: PathBuf,
    },
    /// A certificate chain and key given by the operator (PEM files).
    Files {
        /// The certificate chain (leaf first).
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
}

/// A ready TLS configuration and what to tell people about it.
#[derive(Clone)]
pub struct TlsSetup {
    /// The rustls configuration (HTTP/2 and HTTP/1.1 by ALPN).
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, as colon-separated hex pairs.
    pub fingerprint: String,
    /// Whether the certificate was generated here (browsers warn about it).
    pub self_signed: bool,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("fingerprint", &self.fingerprint)
            .field("self_signed", &self.self_signed)
            .finish_non_exhaustive()
    }
}

/// Installs the process's rustls crypto provider (aws-lc-rs). Both ring and aws-lc-rs
/// are compiled into the binary (libp2p-quic needs aws-lc-rs), so rustls cannot pick
/// one by itself; call this once at start-up. Calling it again does nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The SHA-256 fingerprint of a DER certificate, as `AB:CD:…`.
pub fn fingerprint(cert_der: &[u8]) -> String {
    Sha256::digest(cert_der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Loads the certificate (generating it first if it is the data dir's and missing)
/// and builds the TLS configuration.
pub fn setup(source: &CertSource) -> Result<TlsSetup, TlsError> {
    let (cert, key, self_signed) = match source {
        CertSource::Generated { dir } => {
            let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
            if !(cert.exists() && key.exists()) {
                generate(&cert, &key)?;
            }
            (cert, key, true)
        }
        CertSource::Files { cert, key } => (cert.clone(), key.clone(), false),
    };
    let chain = read_certs(&cert)?;
    let key_der = read_key(&key)?;
    let fingerprint = fingerprint(chain[0].as_ref());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|e| TlsError::Mismatch {
            cert: cert.clone(),
            key: key.clone(),
            detail: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsSetup {
        config: Arc::new(config),
        fingerprint,
        self_signed,
    })
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_bounded(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = zeroize::Zeroizing::new(read_bounded(path)?);
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::NoKey {
        path: path.to_owned(),
    })
}

/// Generates a self-signed ECDSA P-256 certificate for `localhost` and the loopback
/// addresses, and writes key and certificate, each atomically (a temporary file with
/// mode 0600, fsynced, renamed), the key first: a crash in between leaves no
/// certificate, so the next start generates both again.
fn generate(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(gen_err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "regiosync node");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "regiosync");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(GENERATED_VALID_DAYS);
    let cert = params.self_signed(&key).map_err(gen_err)?;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    write_private(key_path, key_pem.as_bytes())?;
    write_private(cert_path, cert.pem().as_bytes())?;
    tracing::info!("generated the web app's self-signed certificate");
    Ok(())
}

/// Writes a file atomically with mode 0600 (a temporary file in the same folder,
/// fsynced, renamed over the path).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp).map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_with_private_files() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let src = CertSource::Generated {
            dir: dir.path().to_owned(),
        };
        let a = setup(&src).unwrap();
        assert!(a.self_signed);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let b = setup(&src).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        #[cfg(unix)]
        for f in [CERT_FILE, KEY_FILE] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        // A key without its certificate (a crash in between): both are made anew.
        std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let c = setup(&src).unwrap();
        assert_ne!(c.fingerprint, a.fingerprint);
    }

    #[test]
    fn given_files_are_checked() {
        install_crypto_provider();
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        for d in [&one, &two] {
            setup(&CertSource::Generated {
                dir: d.path().to_owned(),
            })
            .unwrap();
        }
        let files = |c: &Path, k: &Path| CertSource::Files {
            cert: c.to_owned(),
            key: k.to_owned(),
        };
        let ok = setup(&files(
            &one.path().join(CERT_FILE),
            &one.path().join(KEY_FILE),
        ))
        .unwrap();
        assert!(!ok.self_signed);
        let mismatch = setup(&files(
            &one.path().join(CERT_FILE),
            &two.path().join(KEY_FILE),
        ));
        assert!(
            matches!(mismatch, Err(TlsError::Mismatch { .. })),
            "{mismatch:?}"
        );
        let missing = setup(&files(
            &one.path().join("nope.pem"),
            &one.path().join(KEY_FILE),
        ));
        assert!(matches!(missing, Err(TlsError::Io { .. })));
        let swapped = setup(&files(
            &one.path().join(KEY_FILE),
            &one.path().join(CERT_FILE),
        ));
        assert!(matches!(swapped, Err(TlsError::NoCertificate { .. })));
    }
}
