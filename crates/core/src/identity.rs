//! A node's secret identity: its Ed25519 signing key and its age X25519 identity, and
//! the versioned format of the secret key file (optionally passphrase-protected).
//!
//! The file format (version 1) is three lines of text:
//!
//! ```text
//! regiosync-node-secret/1
//! ed25519 <64 hex digits of the 32-byte secret key>
//! age AGE-SECRET-KEY-1…
//! ```
//!
//! With a passphrase the whole text is encrypted with age's scrypt recipient and
//! ASCII-armored. We use age here instead of a hand-made KDF+AEAD because it is the
//! audited format the design already relies on, and `rage -d` can recover the keys.

use std::io::{Read, Write};

pub use age::secrecy::{ExposeSecret, SecretString};
pub use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use crate::id::NodeId;

/// The first line of a version-1 secret file.
const MAGIC_V1: &str = "regiosync-node-secret/1";
/// The start of every secret file, any version.
const MAGIC_PREFIX: &str = "regiosync-node-secret/";
/// The ASCII armor that marks a passphrase-protected secret file.
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// Secret files are tiny; anything larger is not ours.
const MAX_SECRET_FILE: usize = 16 * 1024;

/// The secret keys of one node (device). Never logged; zeroized on drop.
pub struct NodeSecret {
    signing: ed25519_dalek::SigningKey,
    age: age::x25519::Identity,
}

#[cfg(test)]
impl NodeSecret {
    /// A copy, for fixtures that need the same device twice.
    pub(crate) fn clone_for_tests(&self) -> Self {
        Self {
            signing: self.signing.clone(),
            age: self.age.clone(),
        }
    }
}

impl NodeSecret {
    /// Generates fresh keys from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| IdentityError::NoRandomness)?;
        Ok(Self {
            signing: ed25519_dalek::SigningKey::from_bytes(&seed),
            age: age::x25519::Identity::generate(),
        })
    }

    /// The public node id (Ed25519 public key / libp2p peer id).
    pub fn node_id(&self) -> NodeId {
        // A verifying key derived from a signing key is always a valid point.
        match NodeId::from_public_key_bytes(self.signing.verifying_key().to_bytes()) {
            Ok(id) => id,
            Err(_) => unreachable!("a derived Ed25519 public key is always valid"),
        }
    }

    /// The age recipient (`age1…`) that other parties wrap dossier keys to.
    pub fn age_recipient(&self) -> age::x25519::Recipient {
        self.age.to_public()
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> &ed25519_dalek::SigningKey {
        &self.signing
    }

    /// The age identity that unwraps keys sent to this node.
    pub fn age_identity(&self) -> &age::x25519::Identity {
        &self.age
    }

    /// The 32 secret bytes of the signing key, for building the libp2p identity
    /// (`Keypair::ed25519_from_bytes`) from the same key.
    pub fn signing_key_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// Encodes the secret file, encrypted with `passphrase` if one is given.
    pub fn to_file_bytes(
        &self,
        passphrase: Option<&SecretString>,
    ) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
        let plain = Zeroizing::new(format!(
            "{MAGIC_V1}\ned25519 {}\nage {}\n",
            Zeroizing::new(hex::encode(self.signing.to_bytes())).as_str(),
            self.age.to_string().expose_secret()
        ));
        let Some(pass) = passphrase else {
            return Ok(Zeroizing::new(plain.as_bytes().to_vec()));
        };
        if pass.expose_secret().is_empty() {
            return Err(IdentityError::EmptyPassphrase);
        }
        let recipient = age::scrypt::Recipient::new(pass.clone());
        let mut out = Vec::new();
        let armored =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| IdentityError::Encrypt(e.to_string()))?;
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| IdentityError::Encrypt(e.to_string()))?;
        let mut writer = encryptor
            .wrap_output(armored)
            .map_err(|e| IdentityError::Encrypt(e.to_string()))?;
        writer
            .write_all(plain.as_bytes())
            .and_then(|_| writer.finish())
            .and_then(|armored| armored.finish())
            .map_err(|e| IdentityError::Encrypt(e.to_string()))?;
        Ok(Zeroizing::new(out))
    }

    /// Whether the file bytes are passphrase-protected.
    pub fn file_is_encrypted(bytes: &[u8]) -> bool {
        bytes.trim_ascii_start().starts_with(ARMOR_BEGIN.as_bytes())
    }

    /// Decodes a secret file. `passphrase` is needed exactly when the file is encrypted.
    pub fn from_file_bytes(
        bytes: &[u8],
        passphrase: Option<&SecretString>,
    ) -> Result<Self, IdentityError> {
        if bytes.len() > MAX_SECRET_FILE {
            return Err(IdentityError::Malformed("file is too large"));
        }
        if Self::file_is_encrypted(bytes) {
            let pass = passphrase.ok_or(IdentityError::PassphraseRequired)?;
            let identity = age::scrypt::Identity::new(pass.clone());
            let reader = age::armor::ArmoredReader::new(bytes);
            let decryptor =
                age::Decryptor::new(reader).map_err(|e| IdentityError::Decrypt(e.to_string()))?;
            let mut stream = decryptor
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                        IdentityError::WrongPassphrase
                    }
                    other => IdentityError::Decrypt(other.to_string()),
                })?;
            let mut plain = Zeroizing::new(Vec::new());
            stream
                .by_ref()
                .take(MAX_SECRET_FILE as u64 + 1)
                .read_to_end(&mut plain)
                .map_err(|e| IdentityError::Decrypt(e.to_string()))?;
            return Self::parse_plain(&plain);
        }
        Self::parse_plain(bytes)
    }

    fn parse_plain(bytes: &[u8]) -> Result<Self, IdentityError> {
        let text = std::str::from_utf8(bytes).map_err(|_| IdentityError::Malformed("not text"))?;
        let mut lines = text.lines();
        match lines.next() {
            Some(MAGIC_V1) => {}
            Some(l) if l.starts_with(MAGIC_PREFIX) => {
                return Err(IdentityError::UnknownVersion(
                    l[MAGIC_PREFIX.len()..].chars().take(16).collect(),
                ));
            }
            _ => return Err(IdentityError::Malformed("not a regiosync secret key file")),
        }
        let mut signing = None;
        let mut age_id = None;
        for line in lines.filter(|l| !l.trim().is_empty()) {
            match line.split_once(' ') {
                Some(("ed25519", hexkey)) => {
                    let mut seed = Zeroizing::new([0u8; 32]);
                    hex::decode_to_slice(hexkey.trim(), seed.as_mut())
                        .map_err(|_| IdentityError::Malformed("bad ed25519 line"))?;
                    signing = Some(ed25519_dalek::SigningKey::from_bytes(&seed));
                }
                Some(("age", key)) => {
                    age_id = Some(
                        key.trim()
                            .parse::<age::x25519::Identity>()
                            .map_err(|_| IdentityError::Malformed("bad age line"))?,
                    );
                }
                _ => return Err(IdentityError::Malformed("unknown line")),
            }
        }
        Ok(Self {
            signing: signing.ok_or(IdentityError::Malformed("no ed25519 key"))?,
            age: age_id.ok_or(IdentityError::Malformed("no age identity"))?,
        })
    }
}

impl std::fmt::Debug for NodeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSecret")
            .field("node_id", &self.node_id())
            .finish_non_exhaustive()
    }
}

/// Why a node secret could not be made, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator is unavailable")]
    NoRandomness,
    /// The key file is protected and no passphrase was given.
    #[error("the node's key file is passphrase-protected: pass --passphrase-file FILE")]
    PassphraseRequired,
    /// The passphrase does not open the key file.
    #[error("the passphrase does not open the node's key file")]
    WrongPassphrase,
    /// An empty passphrase protects nothing.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The key file was written by a newer regiosync.
    #[error(
        "the key file has format version {0}, which this regiosync does not know: upgrade regiosync"
    )]
    UnknownVersion(String),
    /// The key file is damaged or not a key file.
    #[error("the key file is damaged or not a regiosync key file ({0})")]
    Malformed(&'static str),
    /// age failed to encrypt.
    #[error("could not encrypt the key file: {0}")]
    Encrypt(String),
    /// age failed to decrypt for another reason than a wrong passphrase.
    #[error("could not decrypt the key file: {0}")]
    Decrypt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn plain_file_roundtrips() {
        let s = NodeSecret::generate().unwrap();
        let bytes = s.to_file_bytes(None).unwrap();
        assert!(!NodeSecret::file_is_encrypted(&bytes));
        let back = NodeSecret::from_file_bytes(&bytes, None).unwrap();
        assert_eq!(back.node_id(), s.node_id());
        assert_eq!(
            back.age_recipient().to_string(),
            s.age_recipient().to_string()
        );
    }

    #[test]
    fn passphrase_file_needs_the_right_passphrase() {
        let s = NodeSecret::generate().unwrap();
        let bytes = s.to_file_bytes(Some(&pass("correct horse"))).unwrap();
        assert!(NodeSecret::file_is_encrypted(&bytes));
        // The secret must not appear in the encrypted file.
        let hexkey = hex::encode(*s.signing_key_bytes());
        assert!(!String::from_utf8_lossy(&bytes).contains(&hexkey));
        assert!(matches!(
            NodeSecret::from_file_bytes(&bytes, None),
            Err(IdentityError::PassphraseRequired)
        ));
        assert!(matches!(
            NodeSecret::from_file_bytes(&bytes, Some(&pass("wrong"))),
            Err(IdentityError::WrongPassphrase)
        ));
        let back = NodeSecret::from_file_bytes(&bytes, Some(&pass("correct horse"))).unwrap();
        assert_eq!(back.node_id(), s.node_id());
        assert!(matches!(
            s.to_file_bytes(Some(&pass(""))),
            Err(IdentityError::EmptyPassphrase)
        ));
    }

    #[test]
    fn damaged_files_are_refused() {
        for bad in [
            &b""[..],
            b"hello",
            b"regiosync-node-secret/1\ned25519 zz\nage x\n",
            b"regiosync-node-secret/1\nage AGE-SECRET-KEY-1\n",
            &[0xff, 0xfe, 0x00][..],
        ] {
            assert!(matches!(
                NodeSecret::from_file_bytes(bad, None),
                Err(IdentityError::Malformed(_))
            ));
        }
        assert!(matches!(
            NodeSecret::from_file_bytes(b"regiosync-node-secret/9\n", None),
            Err(IdentityError::UnknownVersion(v)) if v == "9"
        ));
        let huge = vec![b'a'; MAX_SECRET_FILE + 1];
        assert!(NodeSecret::from_file_bytes(&huge, None).is_err());
    }

    #[test]
    fn libp2p_identity_from_the_same_key_has_the_same_peer_id() {
        let s = NodeSecret::generate().unwrap();
        let mut bytes = *s.signing_key_bytes();
        let sk = libp2p_identity::ed25519::SecretKey::try_from_bytes(&mut bytes).unwrap();
        let kp = libp2p_identity::ed25519::Keypair::from(sk);
        let peer = libp2p_identity::PublicKey::from(kp.public()).to_peer_id();
        assert_eq!(peer.to_string(), s.node_id().to_string());
    }
}
