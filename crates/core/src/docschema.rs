//! Reading helpers shared by the document schemas (plans, dossiers): typed access to
//! Automerge maps and lists that turns a wrong shape into a schema error instead of
//! a guess, because a document can arrive from any peer.

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value};
use time::Date;

/// Why a document did not read.
#[derive(Debug)]
pub(crate) enum SchemaError {
    /// Automerge refused the operation.
    Automerge(automerge::AutomergeError),
    /// The document breaks the schema (what is wrong).
    Violation(String),
    /// No randomness for a new id.
    NoRandomness,
}

impl From<automerge::AutomergeError> for SchemaError {
    fn from(e: automerge::AutomergeError) -> Self {
        SchemaError::Automerge(e)
    }
}

pub(crate) fn violation(key: &str) -> SchemaError {
    SchemaError::Violation(format!("'{key}' is missing or has the wrong type"))
}

/// The object at `prop` of `obj`, which must be of type `want`.
pub(crate) fn get_obj<R: ReadDoc, P: Into<automerge::Prop>>(
    doc: &R,
    obj: &ObjId,
    prop: P,
    want: ObjType,
) -> Result<ObjId, SchemaError> {
    let prop = prop.into();
    match doc.get(obj, prop.clone())? {
        Some((Value::Object(t), id)) if t == want => Ok(id),
        _ => Err(SchemaError::Violation(format!(
            "'{prop}' is missing or not a {want:?}"
        ))),
    }
}

/// The string at `key` of `obj`.
pub(crate) fn get_str<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Result<String, SchemaError> {
    match doc.get(obj, key)? {
        Some((Value::Scalar(v), _)) => v.as_str().map(str::to_owned).ok_or_else(|| violation(key)),
        _ => Err(violation(key)),
    }
}

/// The unsigned integer at `key` of `obj`.
pub(crate) fn get_uint<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Result<u64, SchemaError> {
    match doc.get(obj, key)? {
        Some((Value::Scalar(v), _)) => match v.as_ref() {
            ScalarValue::Uint(n) => Ok(*n),
            _ => Err(violation(key)),
        },
        _ => Err(violation(key)),
    }
}

/// An optional `YYYY-MM-DD` date at `key` of `obj` (absent or null: none).
pub(crate) fn get_date_opt<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
) -> Result<Option<Date>, SchemaError> {
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((Value::Scalar(v), _)) if v.is_null() => Ok(None),
        Some((Value::Scalar(v), _)) => match v.as_str() {
            Some(s) => crate::date::parse(s)
                .map(Some)
                .ok_or_else(|| violation(key)),
            None => Err(violation(key)),
        },
        Some(_) => Err(violation(key)),
    }
}

/// A short random id (`prefix-` and 8 hex digits), unique within its list with
/// overwhelming probability (32 bits; lists hold tens to hundreds of items).
pub(crate) fn new_local_id(prefix: &str) -> Result<String, SchemaError> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|_| SchemaError::NoRandomness)?;
    Ok(format!("{prefix}-{}", hex::encode(b)))
}
