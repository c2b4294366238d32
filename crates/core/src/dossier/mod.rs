//! Student dossiers (kind `dossier`): the typed view of one student's dossier and its
//! Automerge schema. Who may read a dossier, and its keys, live in its access log
//! ([`access`]); its changes travel sealed ([`crate::seal`]).
//!
//! A dossier is named by a pseudonymous id (a random [`DocId`](crate::id::DocId)),
//! never by a BSN. Its `Debug` form shows no personal data, so it cannot end up in a
//! log by accident.
//!
//! Layout of schema version 1 (root map):
//!
//! | key | value |
//! |---|---|
//! | `type` | `"regiosync/dossier"` |
//! | `schema` | uint, [`DOSSIER_SCHEMA_VERSION`] |
//! | `naam`, `opleiding`, `locatie`, `zorg` | str (empty when unknown) |
//! | `geboortedatum` | str `YYYY-MM-DD` or null |
//! | `woongemeente` | str, party name |
//! | `ondersteuningsbehoefte` | Text (concurrent edits merge) |
//! | `afspraken` | list of maps `{id, tekst: str, evaluatie: "YYYY-MM-DD" or null}` |
//! | `verzuim` | list of maps `{datum: "YYYY-MM-DD", signaal: str}` |
//! | `contacten` | list of maps `{datum: "YYYY-MM-DD", partij: str, tekst: str}` |
//!
//! ```
//! use automerge::Automerge;
//! use regiosync_core::dossier::{DossierField, init_dossier, read_dossier, set_field};
//! use regiosync_core::id::PartyName;
//!
//! let mut doc = Automerge::new();
//! let mut tx = doc.transaction();
//! init_dossier(&mut tx, &PartyName::new("gemeente-zeist")?)?;
//! set_field(&mut tx, DossierField::Opleiding, "Verzorgende IG, niveau 3")?;
//! tx.commit();
//! assert_eq!(read_dossier(&doc)?.opleiding, "Verzorgende IG, niveau 3");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod access;
pub mod held;
mod schema;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::Date;

use crate::date::date_format;
use crate::id::PartyName;

pub use schema::{
    DOSSIER_SCHEMA_VERSION, add_absence, add_contact, add_support_agreement, init_dossier,
    read_dossier, set_field,
};

/// Longest single-line field (name, programme, location, care), in characters.
pub const MAX_FIELD_CHARS: usize = 300;
/// Largest free text (support needs, a contact note), in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A field of the dossier that `dossier edit ID FIELD VALUE` sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DossierField {
    /// The student's name.
    Naam,
    /// Date of birth, `YYYY-MM-DD`.
    Geboortedatum,
    /// The municipality the student lives in (a party of the region).
    Woongemeente,
    /// The programme (opleiding) and level.
    Opleiding,
    /// The location (vestiging).
    Locatie,
    /// The support the student needs (free text; concurrent edits merge).
    Ondersteuningsbehoefte,
    /// Youth care or adult care involved.
    Zorg,
}

impl DossierField {
    /// Every field.
    pub const ALL: [DossierField; 7] = [
        DossierField::Naam,
        DossierField::Geboortedatum,
        DossierField::Woongemeente,
        DossierField::Opleiding,
        DossierField::Locatie,
        DossierField::Ondersteuningsbehoefte,
        DossierField::Zorg,
    ];

    /// The key in the document and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DossierField::Naam => "naam",
            DossierField::Geboortedatum => "geboortedatum",
            DossierField::Woongemeente => "woongemeente",
            DossierField::Opleiding => "opleiding",
            DossierField::Locatie => "locatie",
            DossierField::Ondersteuningsbehoefte => "ondersteuningsbehoefte",
            DossierField::Zorg => "zorg",
        }
    }
}

impl fmt::Display for DossierField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DossierField {
    type Err = DossierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DossierField::ALL
            .into_iter()
            .find(|f| f.as_str() == s.trim())
            .ok_or_else(|| DossierError::UnknownField(s.chars().take(40).collect()))
    }
}

/// A support agreement of the bijlage bij de onderwijsovereenkomst.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SupportAgreement {
    /// Stable id within the dossier.
    pub id: String,
    /// What was agreed.
    pub tekst: String,
    /// The yearly evaluation date.
    #[serde(with = "date_format::option")]
    pub evaluatie: Option<Date>,
}

/// An absence signal (verzuimsignaal).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct AbsenceSignal {
    /// The day.
    #[serde(serialize_with = "date_format::serialize")]
    pub datum: Date,
    /// What was signalled.
    pub signaal: String,
}

/// An entry of the contact log.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    /// The day.
    #[serde(serialize_with = "date_format::serialize")]
    pub datum: Date,
    /// The party that wrote it.
    pub partij: PartyName,
    /// What happened.
    pub tekst: String,
}

/// The typed view of a dossier. Personal data: its `Debug` form shows none of it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Dossier {
    /// Schema version the document was written with.
    pub schema: u64,
    /// Name.
    pub naam: String,
    /// Date of birth.
    #[serde(with = "date_format::option")]
    pub geboortedatum: Option<Date>,
    /// Municipality of residence.
    pub woongemeente: PartyName,
    /// Programme and level.
    pub opleiding: String,
    /// Location.
    pub locatie: String,
    /// Support needs.
    pub ondersteuningsbehoefte: String,
    /// Care involved.
    pub zorg: String,
    /// Support agreements.
    pub afspraken: Vec<SupportAgreement>,
    /// Absence signals.
    pub verzuim: Vec<AbsenceSignal>,
    /// Contact log, in the order written.
    pub contacten: Vec<Contact>,
}

impl fmt::Debug for Dossier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dossier")
            .field("schema", &self.schema)
            .field("afspraken", &self.afspraken.len())
            .field("verzuim", &self.verzuim.len())
            .field("contacten", &self.contacten.len())
            .finish_non_exhaustive()
    }
}

/// Why a dossier could not be read or edited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DossierError {
    /// An unknown field name.
    #[error(
        "unknown dossier field '{0}': use one of naam, geboortedatum, woongemeente, opleiding, locatie, ondersteuningsbehoefte, zorg"
    )]
    UnknownField(String),
    /// A value that does not fit its field.
    #[error("invalid value for {field}: {why}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// The document is not a dossier, or breaks the schema.
    #[error("the document does not follow the dossier schema: {0}")]
    Schema(String),
    /// Written by a newer regiosync.
    #[error(
        "the dossier uses schema version {0}, newer than this regiosync understands: upgrade regiosync"
    )]
    NewerSchema(u64),
    /// No randomness for a new id.
    #[error("the operating system's random number generator is unavailable")]
    NoRandomness,
    /// Automerge refused an operation.
    #[error("document operation failed: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

impl From<crate::docschema::SchemaError> for DossierError {
    fn from(e: crate::docschema::SchemaError) -> Self {
        use crate::docschema::SchemaError as S;
        match e {
            S::Automerge(e) => DossierError::Automerge(e),
            S::Violation(why) => DossierError::Schema(why),
            S::NoRandomness => DossierError::NoRandomness,
        }
    }
}

/// Checks a one-line field value: at most [`MAX_FIELD_CHARS`], no control characters
/// (empty is allowed: unknown).
fn one_line(field: &'static str, v: &str) -> Result<String, DossierError> {
    let t = v.trim();
    if t.chars().count() > MAX_FIELD_CHARS {
        return Err(DossierError::BadValue {
            field,
            why: "longer than 300 characters",
        });
    }
    if t.chars().any(char::is_control) {
        return Err(DossierError::BadValue {
            field,
            why: "contains a line break or control character",
        });
    }
    Ok(t.to_owned())
}

/// Checks a free text: non-empty, at most [`MAX_TEXT_BYTES`].
fn free_text(field: &'static str, v: &str) -> Result<String, DossierError> {
    if v.len() > MAX_TEXT_BYTES {
        return Err(DossierError::BadValue {
            field,
            why: "longer than 64 KiB",
        });
    }
    if v.trim().is_empty() {
        return Err(DossierError::BadValue {
            field,
            why: "empty",
        });
    }
    Ok(v.to_owned())
}
