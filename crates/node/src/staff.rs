//! Staff accounts of this node's web app, and their sessions.
//!
//! Accounts are local to the node (never synced): the people of one party who sign
//! in to its node, each with a [`StaffRole`]. A password is kept only as an Argon2id
//! PHC string (19 MiB, 2 passes, 1 lane: the OWASP minimum), a session only as the
//! SHA-256 of its random 256-bit token. Setting a password or disabling an account
//! ends all its sessions. Checking a password costs tens of milliseconds and 19 MiB:
//! [`Node::staff_credentials`] hands out the hash so that the caller can verify it
//! without holding the node ([`StaffCredentials::verify`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use regiosync_core::identity::SecretString;
use regiosync_store::StoreRead;
use regiosync_store::{SessionRow, StaffRow};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Node;
use crate::clock::now_ms;
use crate::error::NodeError;

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (bytes): bounds the hashing work of a sign-in.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest sign-in name.
pub const MAX_NAME_CHARS: usize = 64;
/// A session's last use is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;

/// What a staff member may do in the web app. The server enforces it on every
/// request; the pages only follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StaffRole {
    /// Manages staff accounts, invitations and devices; reads no dossier by default.
    Beheerder,
    /// Reads, edits and approves plans.
    Beleid,
    /// Works with the dossiers the party may read; reads plans.
    Dossier,
    /// Reads plans.
    Lezer,
}

impl StaffRole {
    /// Every role.
    pub const ALL: [StaffRole; 4] = [Self::Beheerder, Self::Beleid, Self::Dossier, Self::Lezer];

    /// The name used on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Beheerder => "beheerder",
            Self::Beleid => "beleid",
            Self::Dossier => "dossier",
            Self::Lezer => "lezer",
        }
    }

    /// What the role does, in Dutch, for pages.
    pub fn description(self) -> &'static str {
        match self {
            Self::Beheerder => "beheert accounts, uitnodigingen en apparaten",
            Self::Beleid => "leest, bewerkt en keurt plannen goed",
            Self::Dossier => "werkt met de dossiers die de partij mag lezen",
            Self::Lezer => "leest plannen",
        }
    }
}

impl fmt::Display for StaffRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StaffRole {
    type Err = StaffError;
    fn from_str(s: &str) -> Result<Self, StaffError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| StaffError::UnknownRole(s.chars().take(40).collect()))
    }
}

/// Why a staff account operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StaffError {
    /// No account by that name.
    #[error("no staff account '{0}' on this node: see `regiosync user list`")]
    UnknownUser(String),
    /// The name is taken.
    #[error("a staff account '{0}' exists already")]
    NameTaken(String),
    /// The name is not a valid sign-in name.
    #[error(
        "'{0}' is not a valid account name: use 1 to {MAX_NAME_CHARS} letters, digits and . _ - @ (e.g. j.bakker)"
    )]
    BadName(String),
    /// Not a role.
    #[error("unknown role '{0}': the roles are beheerder, beleid, dossier, lezer")]
    UnknownRole(String),
    /// The password is too short or too long.
    #[error(
        "the password must be at least {MIN_PASSWORD_CHARS} characters and at most {MAX_PASSWORD_BYTES} bytes"
    )]
    BadPassword,
    /// Hashing failed (out of memory, no randomness).
    #[error("cannot hash the password: {0}")]
    Hashing(String),
    /// The store holds a role this build does not know.
    #[error("the account '{0}' has a role this regiosync does not know: upgrade regiosync")]
    StoredRole(String),
}

/// A staff account as shown (no password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StaffAccount {
    /// Sign-in name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// The password was set by someone else: it must be changed at sign-in.
    pub must_change: bool,
    /// The account may not sign in.
    pub disabled: bool,
    /// When the account was made, Unix milliseconds.
    pub created_ms: i64,
    /// When the password was last set, Unix milliseconds.
    pub password_ms: i64,
}

impl StaffAccount {
    fn from_row(row: &StaffRow) -> Result<Self, StaffError> {
        Ok(Self {
            name: row.name.clone(),
            role: row
                .role
                .parse()
                .map_err(|_| StaffError::StoredRole(row.name.clone()))?,
            must_change: row.must_change,
            disabled: row.disabled,
            created_ms: row.created_ms,
            password_ms: row.password_ms,
        })
    }
}

/// An account with its password hash, to check a password without holding the node.
/// Its `Debug` form leaves the hash out.
#[derive(Clone)]
pub struct StaffCredentials {
    id: i64,
    account: StaffAccount,
    hash: String,
}

impl fmt::Debug for StaffCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffCredentials")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl StaffCredentials {
    /// The account.
    pub fn account(&self) -> &StaffAccount {
        &self.account
    }

    /// Whether `password` is the account's password (Argon2id; tens of milliseconds).
    /// A disabled account's password is still checked, so that the time taken says
    /// nothing; the caller refuses the sign-in.
    pub fn verify(&self, password: &SecretString) -> bool {
        verify_hash(&self.hash, password)
    }
}

/// Checks `password` against a PHC string; `false` for a malformed one.
fn verify_hash(hash: &str, password: &SecretString) -> bool {
    use age::secrecy::ExposeSecret;
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.expose_secret().as_bytes(), &parsed)
        .is_ok()
}

/// Burns the time of one password check, for sign-ins with an unknown name (so that
/// the answer's timing does not tell which names exist).
pub fn verify_dummy(password: &SecretString) {
    let _ = verify_hash(DUMMY_HASH, password);
}

/// A valid PHC string with the default parameters, of no password anyone knows.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$cmVnaW9zeW5jZHVtbXk$8rT3a1tqz2mC0r0e1yP0pYw3mXl8m1b0YgqB3Vq2m9E";

/// Hashes a password with Argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &SecretString) -> Result<String, StaffError> {
    use age::secrecy::ExposeSecret;
    check_password(password)?;
    let mut salt = [0u8; 16];
    regiosync_core::id::fill_random(&mut salt).map_err(|e| StaffError::Hashing(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| StaffError::Hashing(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StaffError::Hashing(e.to_string()))
}

/// Checks a new password's length.
pub fn check_password(password: &SecretString) -> Result<(), StaffError> {
    use age::secrecy::ExposeSecret;
    let p = password.expose_secret();
    if p.chars().count() < MIN_PASSWORD_CHARS || p.len() > MAX_PASSWORD_BYTES {
        return Err(StaffError::BadPassword);
    }
    Ok(())
}

/// A random password of 20 characters (about 110 bits) from an alphabet without
/// look-alikes, for a new account's one-time initial password.
pub fn generate_password() -> Result<SecretString, StaffError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = Zeroizing::new(String::with_capacity(23));
    let mut buf = Zeroizing::new([0u8; 64]);
    let mut n = 0;
    while n < 20 {
        regiosync_core::id::fill_random(&mut buf[..])
            .map_err(|e| StaffError::Hashing(e.to_string()))?;
        // Rejection sampling: no bias towards the first letters.
        let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
        for &b in buf.iter().filter(|b| **b < limit) {
            if n == 20 {
                break;
            }
            if n > 0 && n % 5 == 0 {
                out.push('-');
            }
            out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            n += 1;
        }
    }
    Ok(SecretString::from(out.to_string()))
}

/// Checks and normalises a sign-in name (ASCII, lowercased).
pub fn normalize_name(name: &str) -> Result<String, StaffError> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok {
        return Err(StaffError::BadName(
            name.chars().take(MAX_NAME_CHARS).collect(),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// How long sessions live.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(10 * 60 * 60),
        }
    }
}

/// A new session: the token goes into the cookie, and is never stored.
pub struct NewSession {
    /// The session token (64 hex digits).
    pub token: Zeroizing<String>,
    /// The session's CSRF token (64 hex digits), for forms.
    pub csrf: String,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession").finish_non_exhaustive()
    }
}

/// A live session, as found from its token.
#[derive(Clone)]
pub struct StaffSession {
    /// Who is signed in.
    pub account: StaffAccount,
    /// The CSRF token bound to the session (64 hex digits).
    pub csrf: String,
    /// When it was made, Unix milliseconds.
    pub created_ms: i64,
}

impl fmt::Debug for StaffSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffSession")
            .field("account", &self.account.name)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of a session token as the store keeps it; `None` for a string that
/// cannot be a token (not 64 hex digits).
fn token_hash(token: &str) -> Option<[u8; 32]> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Sha256::digest(token.as_bytes()).into())
}

fn random_hex() -> Result<(Zeroizing<String>, [u8; 32]), StaffError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    regiosync_core::id::fill_random(&mut bytes[..])
        .map_err(|e| StaffError::Hashing(e.to_string()))?;
    Ok((Zeroizing::new(hex::encode(&bytes[..])), *bytes))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Node {
    /// Every staff account, by name.
    pub fn staff_accounts(&self) -> Result<Vec<StaffAccount>, NodeError> {
        self.store()
            .staff_users()?
            .iter()
            .map(|r| StaffAccount::from_row(r).map_err(NodeError::from))
            .collect()
    }

    /// Adds a staff account with a password (at least [`MIN_PASSWORD_CHARS`]
    /// characters); `must_change`: the person must choose their own at sign-in.
    pub fn add_staff(
        &mut self,
        name: &str,
        role: StaffRole,
        password: &SecretString,
        must_change: bool,
    ) -> Result<StaffAccount, NodeError> {
        let name = normalize_name(name)?;
        let hash = hash_password(password)?;
        let now = now_ms();
        let row = StaffRow {
            id: 0,
            name: name.clone(),
            role: role.as_str().into(),
            password_hash: hash,
            must_change,
            disabled: false,
            created_ms: now,
            password_ms: now,
        };
        match self.store.write(|tx| tx.insert_staff_user(&row))? {
            Some(_) => {
                tracing::info!(role = %role, "staff account added");
                Ok(StaffAccount::from_row(&row)?)
            }
            None => Err(StaffError::NameTaken(name).into()),
        }
    }

    /// Sets an account's password and ends all its sessions.
    pub fn set_staff_password(
        &mut self,
        name: &str,
        password: &SecretString,
        must_change: bool,
    ) -> Result<(), NodeError> {
        let name = normalize_name(name)?;
        let hash = hash_password(password)?;
        let now = now_ms();
        self.store.write(|tx| {
            let user = tx
                .staff_user(&name)?
                .ok_or_else(|| StaffError::UnknownUser(name.clone()))?;
            tx.set_staff_password(user.id, &hash, must_change, now)?;
            Ok::<_, NodeError>(())
        })?;
        tracing::info!("staff password set; the account's sessions ended");
        Ok(())
    }

    /// Disables an account (ending all its sessions) or enables it again.
    pub fn set_staff_disabled(&mut self, name: &str, disabled: bool) -> Result<(), NodeError> {
        let name = normalize_name(name)?;
        self.store.write(|tx| {
            let user = tx
                .staff_user(&name)?
                .ok_or_else(|| StaffError::UnknownUser(name.clone()))?;
            tx.set_staff_disabled(user.id, disabled)?;
            Ok::<_, NodeError>(())
        })?;
        tracing::info!(disabled, "staff account changed");
        Ok(())
    }

    /// The account and its password hash, for a sign-in; `None` if there is no
    /// account by that name (or the name cannot be one).
    pub fn staff_credentials(&self, name: &str) -> Result<Option<StaffCredentials>, NodeError> {
        let Ok(name) = normalize_name(name) else {
            return Ok(None);
        };
        let Some(row) = self.store().staff_user(&name)? else {
            return Ok(None);
        };
        Ok(Some(StaffCredentials {
            id: row.id,
            account: StaffAccount::from_row(&row)?,
            hash: row.password_hash,
        }))
    }

    /// Starts a session for an account whose password was just verified. Also
    /// deletes the expired sessions of every account.
    pub fn start_staff_session(
        &mut self,
        who: &StaffCredentials,
        limits: SessionLimits,
    ) -> Result<NewSession, NodeError> {
        let (token, _) = random_hex()?;
        let (csrf, csrf_bytes) = random_hex()?;
        let hash = token_hash(&token).ok_or_else(|| StaffError::Hashing("token".into()))?;
        let now = now_ms();
        let row = SessionRow {
            token_hash: hash,
            user_id: who.id,
            csrf: csrf_bytes,
            created_ms: now,
            last_seen_ms: now,
        };
        self.store.write(|tx| {
            tx.delete_expired_staff_sessions(
                now.saturating_sub(ms(limits.idle)),
                now.saturating_sub(ms(limits.absolute)),
            )?;
            tx.insert_staff_session(&row)
        })?;
        Ok(NewSession {
            token,
            csrf: csrf.to_string(),
        })
    }

    /// The live session with this token, or `None` (unknown, malformed, expired, or
    /// its account disabled). Records its use (at most once a minute); an expired
    /// session found is deleted.
    pub fn staff_session(
        &mut self,
        token: &str,
        limits: SessionLimits,
    ) -> Result<Option<StaffSession>, NodeError> {
        let Some(hash) = token_hash(token) else {
            return Ok(None);
        };
        let Some(row) = self.store().staff_session(&hash)? else {
            return Ok(None);
        };
        let now = now_ms();
        let expired = now.saturating_sub(row.last_seen_ms) > ms(limits.idle)
            || now.saturating_sub(row.created_ms) > ms(limits.absolute);
        let user = self.store().staff_user_by_id(row.user_id)?;
        let Some(user) = user.filter(|u| !u.disabled && !expired) else {
            self.store.write(|tx| tx.delete_staff_session(&hash))?;
            return Ok(None);
        };
        if now.saturating_sub(row.last_seen_ms) >= TOUCH_EVERY_MS {
            self.store.write(|tx| tx.touch_staff_session(&hash, now))?;
        }
        Ok(Some(StaffSession {
            account: StaffAccount::from_row(&user)?,
            csrf: hex::encode(row.csrf),
            created_ms: row.created_ms,
        }))
    }

    /// Whether the session with this token is still live, decided as
    /// [`Node::staff_session`] decides, but without recording a use or deleting
    /// anything: a page that only listens for changes (the web app's live plan
    /// page) must not keep its session from timing out.
    pub fn staff_session_is_live(
        &self,
        token: &str,
        limits: SessionLimits,
    ) -> Result<bool, NodeError> {
        let Some(hash) = token_hash(token) else {
            return Ok(false);
        };
        let Some(row) = self.store().staff_session(&hash)? else {
            return Ok(false);
        };
        let now = now_ms();
        if now.saturating_sub(row.last_seen_ms) > ms(limits.idle)
            || now.saturating_sub(row.created_ms) > ms(limits.absolute)
        {
            return Ok(false);
        }
        Ok(self
            .store()
            .staff_user_by_id(row.user_id)?
            .is_some_and(|u| !u.disabled))
    }

    /// Ends the session with this token (sign-out); `false` if there was none.
    pub fn end_staff_session(&mut self, token: &str) -> Result<bool, NodeError> {
        let Some(hash) = token_hash(token) else {
            return Ok(false);
        };
        Ok(self.store.write(|tx| tx.delete_staff_session(&hash))?)
    }

    /// Moves a session's clock back by `by`, for tests of expiry.
    #[doc(hidden)]
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn age_staff_session_for_tests(
        &mut self,
        token: &str,
        by: Duration,
    ) -> Result<(), NodeError> {
        let hash = token_hash(token).ok_or_else(|| StaffError::Hashing("token".into()))?;
        let Some(row) = self.store().staff_session(&hash)? else {
            return Ok(());
        };
        let back = ms(by);
        self.store.write(|tx| {
            tx.delete_staff_session(&hash)?;
            tx.insert_staff_session(&SessionRow {
                created_ms: row.created_ms - back,
                last_seen_ms: row.last_seen_ms - back,
                ..row
            })
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn accounts_sign_in_and_sessions_end() {
        let dir = tempfile::tempdir().unwrap();
        Node::init(
            dir.path(),
            regiosync_core::id::PartyName::new("gemeente-gouda").unwrap(),
            regiosync_core::id::Role::Gemeente,
            None,
        )
        .unwrap();
        let mut node = Node::open(dir.path()).unwrap();
        assert!(matches!(
            node.add_staff("J.Bakker", StaffRole::Beleid, &pass("kort"), true),
            Err(NodeError::Staff(StaffError::BadPassword))
        ));
        let a = node
            .add_staff(
                "J.Bakker",
                StaffRole::Beleid,
                &pass("lang genoeg wachtwoord"),
                true,
            )
            .unwrap();
        assert_eq!(a.name, "j.bakker");
        assert!(a.must_change);
        assert!(matches!(
            node.add_staff(
                "j.bakker",
                StaffRole::Lezer,
                &pass("lang genoeg wachtwoord"),
                true
            ),
            Err(NodeError::Staff(StaffError::NameTaken(_)))
        ));
        assert!(matches!(
            node.add_staff(
                "<script>",
                StaffRole::Lezer,
                &pass("lang genoeg wachtwoord"),
                true
            ),
            Err(NodeError::Staff(StaffError::BadName(_)))
        ));
        let creds = node.staff_credentials("j.bakker").unwrap().unwrap();
        assert!(creds.verify(&pass("lang genoeg wachtwoord")));
        assert!(!creds.verify(&pass("lang genoeg wachtwoorD")));
        assert!(!format!("{creds:?}").contains("argon2"));

        let limits = SessionLimits::default();
        let s = node.start_staff_session(&creds, limits).unwrap();
        let live = node.staff_session(&s.token, limits).unwrap().unwrap();
        assert_eq!(live.account.name, "j.bakker");
        assert_eq!(live.csrf, s.csrf);
        // Only the hash of the token is stored.
        let raw = std::fs::read(dir.path().join(crate::data_dir::STORE_FILE)).unwrap();
        assert!(!raw.windows(64).any(|w| w == s.token.as_bytes()));
        // A forged or malformed token finds nothing.
        assert!(
            node.staff_session(&"0".repeat(64), limits)
                .unwrap()
                .is_none()
        );
        assert!(node.staff_session("x", limits).unwrap().is_none());
        // Idle timeout.
        node.age_staff_session_for_tests(&s.token, Duration::from_secs(31 * 60))
            .unwrap();
        assert!(node.staff_session(&s.token, limits).unwrap().is_none());
        // A new password ends the sessions; so does disabling.
        let s2 = node.start_staff_session(&creds, limits).unwrap();
        node.set_staff_password("j.bakker", &pass("een ander wachtwoord"), false)
            .unwrap();
        assert!(node.staff_session(&s2.token, limits).unwrap().is_none());
        let creds = node.staff_credentials("j.bakker").unwrap().unwrap();
        assert!(!creds.account().must_change);
        let s3 = node.start_staff_session(&creds, limits).unwrap();
        node.set_staff_disabled("j.bakker", true).unwrap();
        assert!(node.staff_session(&s3.token, limits).unwrap().is_none());
        // Sign-out.
        node.set_staff_disabled("j.bakker", false).unwrap();
        let s4 = node.start_staff_session(&creds, limits).unwrap();
        assert!(node.end_staff_session(&s4.token).unwrap());
        assert!(node.staff_session(&s4.token, limits).unwrap().is_none());
    }

    #[test]
    fn the_dummy_hash_is_checked_like_a_real_one() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        let real = hash_password(&pass("lang genoeg wachtwoord")).unwrap();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(parsed.params, real.params);
        assert_eq!(parsed.algorithm, real.algorithm);
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        use age::secrecy::ExposeSecret;
        assert_eq!(a.expose_secret().len(), 23);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(check_password(&a).is_ok());
    }
}
