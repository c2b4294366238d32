//! Form bodies (`application/x-www-form-urlencoded`), parsed strictly: the body must
//! be within the size limit, every name and value must be valid UTF-8 after
//! percent-decoding (malformed input is refused, not replaced with `�`), and no
//! field may be longer than [`MAX_FIELD_BYTES`].

use axum::body::Body;
use axum::http::{HeaderMap, header};

use crate::error::WebError;

/// Longest field value accepted in this step's forms.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Most fields in one form.
const MAX_FIELDS: usize = 64;

/// The fields of a form, in order.
#[derive(Default)]
pub struct Fields(Vec<(String, String)>);

impl std::fmt::Debug for Fields {
    // Field values may be passwords: only the names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Fields {
    /// Reads and parses a form body of at most `limit` bytes.
    pub async fn from_body(
        headers: &HeaderMap,
        body: Body,
        limit: usize,
    ) -> Result<Self, WebError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(WebError::TooLarge);
        }
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(WebError::BadRequest(
                "Het formulier is niet als gewoon formulier verstuurd.".into(),
            ));
        }
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| WebError::TooLarge)?;
        Self::parse(&bytes)
    }

    /// Parses `a=b&c=d` with `+` as space and `%XX` escapes.
    pub fn parse(bytes: &[u8]) -> Result<Self, WebError> {
        let mut out = Vec::new();
        for pair in bytes.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            if out.len() == MAX_FIELDS {
                return Err(WebError::BadRequest(
                    "Het formulier heeft te veel velden.".into(),
                ));
            }
            let mut kv = pair.splitn(2, |b| *b == b'=');
            let k = decode(kv.next().unwrap_or_default())?;
            let v = decode(kv.next().unwrap_or_default())?;
            if v.len() > MAX_FIELD_BYTES {
                return Err(WebError::TooLarge);
            }
            out.push((k, v));
        }
        Ok(Self(out))
    }

    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a field that must be there, at most `max` bytes long.
    pub fn required(&self, name: &str, label: &str, max: usize) -> Result<&str, WebError> {
        let v = self
            .get(name)
            .ok_or_else(|| WebError::BadRequest(format!("Het veld ‘{label}’ ontbreekt.")))?;
        if v.len() > max {
            return Err(WebError::BadRequest(format!(
                "Het veld ‘{label}’ is te lang."
            )));
        }
        Ok(v)
    }
}

fn decode(raw: &[u8]) -> Result<String, WebError> {
    let bad = || WebError::BadRequest("Het formulier bevat ongeldige tekens (geen UTF-8).".into());
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or_else(bad)?;
                let s = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(s, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_malformed() {
        let f = Fields::parse(b"naam=j.bakker&wachtwoord=a+b%26c%C3%A9&leeg=").unwrap();
        assert_eq!(f.get("naam"), Some("j.bakker"));
        assert_eq!(f.get("wachtwoord"), Some("a b&cé"));
        assert_eq!(f.get("leeg"), Some(""));
        assert!(matches!(
            Fields::parse(b"naam=%FF%FE"),
            Err(WebError::BadRequest(_))
        ));
        assert!(matches!(
            Fields::parse(b"naam=%F"),
            Err(WebError::BadRequest(_))
        ));
        assert!(matches!(
            Fields::parse(b"naam=%zz"),
            Err(WebError::BadRequest(_))
        ));
        assert!(matches!(
            Fields::parse(b"naam=\xff"),
            Err(WebError::BadRequest(_))
        ));
        let long = format!("x={}", "a".repeat(MAX_FIELD_BYTES + 1));
        assert!(matches!(
            Fields::parse(long.as_bytes()),
            Err(WebError::TooLarge)
        ));
        assert!(!format!("{f:?}").contains("a b"));
    }
}
