//! Regional plan documents (kind `plan`): the typed view of a plan and its kinds.
//!
//! A plan is an Automerge document; [`schema`] maps it to and from the typed [`Plan`]
//! view, [`markdown`] renders that view for people. The mapping is documented for
//! other implementations in docs/PROTOCOL.md (\"Plan document schema\").

pub mod markdown;
pub mod schema;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::id::PartyName;

pub use schema::{
    AgreementInput, PLAN_SCHEMA_VERSION, SectionEdit, add_agreement, init_plan, read_plan,
    set_section,
};

/// Longest title of a plan, section or agreement, in characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// Largest section text, in bytes (a long policy chapter is ~100 KB).
pub const MAX_SECTION_BYTES: usize = 1024 * 1024;

/// The subkind of a plan document (see DOMAIN.md, "Documents").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PlanKind {
    /// A municipality's youth policy plan (beleidsplan jeugd).
    Jeugdplan,
    /// The samenwerkingsverband's support plan.
    Ondersteuningsplan,
    /// The regional programme against early school leaving.
    VsvProgramma,
    /// Minutes of the consensus-oriented consultation (OOGO).
    OogoVerslag,
}

impl PlanKind {
    /// Every plan kind.
    pub const ALL: [PlanKind; 4] = [
        PlanKind::Jeugdplan,
        PlanKind::Ondersteuningsplan,
        PlanKind::VsvProgramma,
        PlanKind::OogoVerslag,
    ];

    /// The name used on the command line and in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::Jeugdplan => "jeugdplan",
            PlanKind::Ondersteuningsplan => "ondersteuningsplan",
            PlanKind::VsvProgramma => "vsv-programma",
            PlanKind::OogoVerslag => "oogo-verslag",
        }
    }

    /// A human label, as partners write it.
    pub fn label(self) -> &'static str {
        match self {
            PlanKind::Jeugdplan => "Jeugdplan",
            PlanKind::Ondersteuningsplan => "Ondersteuningsplan",
            PlanKind::VsvProgramma => "Regionaal programma vsv",
            PlanKind::OogoVerslag => "OOGO-verslag",
        }
    }
}

impl fmt::Display for PlanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PlanKind {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PlanKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| PlanError::UnknownKind(s.chars().take(80).collect()))
    }
}

/// The status of an agreement (afspraak).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AgreementStatus {
    /// Agreed, not started.
    Open,
    /// Being carried out.
    InUitvoering,
    /// Done.
    Afgerond,
    /// No longer applies.
    Vervallen,
}

impl AgreementStatus {
    /// Every status.
    pub const ALL: [AgreementStatus; 4] = [
        AgreementStatus::Open,
        AgreementStatus::InUitvoering,
        AgreementStatus::Afgerond,
        AgreementStatus::Vervallen,
    ];

    /// The name stored in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            AgreementStatus::Open => "open",
            AgreementStatus::InUitvoering => "in-uitvoering",
            AgreementStatus::Afgerond => "afgerond",
            AgreementStatus::Vervallen => "vervallen",
        }
    }
}

impl fmt::Display for AgreementStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AgreementStatus {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AgreementStatus::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| PlanError::Schema(format!("unknown agreement status '{s}'")))
    }
}

/// The typed view of a plan document, as `doc show --format json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Version of the document schema this plan was written with.
    pub schema: u64,
    /// Which kind of plan.
    pub kind: PlanKind,
    /// The plan's title.
    pub title: String,
    /// The party that owns the plan.
    pub owner: PartyName,
    /// Sections in document order.
    pub sections: Vec<Section>,
    /// Agreements in the order they were added.
    pub agreements: Vec<Agreement>,
}

/// A section of a plan: a title and its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Stable id of the section within the plan (`s-` and 8 hex digits).
    pub id: String,
    /// Section heading.
    pub title: String,
    /// Section text.
    pub text: String,
}

/// An agreement (afspraak): who does what, by when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// Stable id of the agreement within the plan (`a-` and 8 hex digits).
    pub id: String,
    /// What is agreed.
    pub title: String,
    /// The party that carries it out.
    pub owner: PartyName,
    /// By when, if agreed.
    #[serde(with = "date_format::option")]
    pub deadline: Option<Date>,
    /// Where it stands.
    pub status: AgreementStatus,
}

/// Parses a calendar date written as `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, PlanError> {
    Date::parse(s.trim(), date_format::FORMAT)
        .map_err(|_| PlanError::BadDate(s.chars().take(40).collect()))
}

/// `YYYY-MM-DD` (de)serialisation of dates.
pub mod date_format {
    use time::Date;
    use time::format_description::BorrowedFormatItem;
    use time::macros::format_description;

    /// The one date format of regiosync files and output.
    pub const FORMAT: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

    /// Formats a date as `YYYY-MM-DD`.
    pub fn format(d: Date) -> String {
        d.format(FORMAT).unwrap_or_else(|_| d.to_string())
    }

    /// Serialises a date as `"YYYY-MM-DD"`.
    pub fn serialize<S: serde::Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Serde helpers for `Option<Date>`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::Date;

        /// Serialises as `"YYYY-MM-DD"` or `null`.
        pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&super::format(*d)),
                None => s.serialize_none(),
            }
        }

        /// Deserialises from `"YYYY-MM-DD"` or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| crate::plan::parse_date(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// Why a plan could not be read or edited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The plan kind is unknown.
    #[error(
        "unknown plan kind '{0}': use one of jeugdplan, ondersteuningsplan, vsv-programma, oogo-verslag"
    )]
    UnknownKind(String),
    /// A date is not `YYYY-MM-DD` or does not exist.
    #[error("'{0}' is not a valid date: write it as YYYY-MM-DD, e.g. 2027-03-31")]
    BadDate(String),
    /// A title is empty, too long or contains control characters.
    #[error("the {what} is invalid: {why}")]
    BadTitle {
        /// Which title.
        what: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// A section text is too large.
    #[error("the section text is {0} bytes; the limit is {MAX_SECTION_BYTES} bytes")]
    TextTooLarge(usize),
    /// A section reference matches more than one section.
    #[error("'{0}' matches more than one section title: use the section id from `doc show`")]
    AmbiguousSection(String),
    /// The document is not a plan, or breaks the plan schema.
    #[error("the document does not follow the plan schema: {0}")]
    Schema(String),
    /// The document was written by a newer regiosync.
    #[error(
        "the plan uses schema version {0}, newer than this regiosync understands: upgrade regiosync"
    )]
    NewerSchema(u64),
    /// The randomness for a new id was not available.
    #[error("the operating system's random number generator is unavailable")]
    NoRandomness,
    /// Automerge refused an operation.
    #[error("document operation failed: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

impl From<crate::docschema::SchemaError> for PlanError {
    fn from(e: crate::docschema::SchemaError) -> Self {
        use crate::docschema::SchemaError as S;
        match e {
            S::Automerge(e) => PlanError::Automerge(e),
            S::Violation(why) => PlanError::Schema(why),
            S::NoRandomness => PlanError::NoRandomness,
        }
    }
}

/// Checks a one-line title: non-empty, at most [`MAX_TITLE_CHARS`], no control characters.
pub fn validate_title(what: &'static str, title: &str) -> Result<String, PlanError> {
    let t = title.trim();
    if t.is_empty() {
        return Err(PlanError::BadTitle {
            what,
            why: "it is empty",
        });
    }
    if t.chars().count() > MAX_TITLE_CHARS {
        return Err(PlanError::BadTitle {
            what,
            why: "it is longer than 300 characters",
        });
    }
    if t.chars().any(char::is_control) {
        return Err(PlanError::BadTitle {
            what,
            why: "it contains a line break or control character",
        });
    }
    Ok(t.to_owned())
}
