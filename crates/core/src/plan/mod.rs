//! Regional plan documents (kind `plan`): the typed view of a plan and its kinds.
//!
//! A plan is an Automerge document; [`schema`] maps it to and from the typed [`Plan`]
//! view, [`richtext`] maps section text to and from Markdown, [`template`] holds the
//! usual sections of each kind, [`markdown`] and [`html`] render a plan for people
//! and [`diff`] compares two versions. The mapping is documented for other
//! implementations in docs/SCHEMA.md.

pub mod diff;
pub mod html;
pub mod kind;
pub mod markdown;
pub mod order;
pub mod paragraphs;
pub mod received;
pub mod richtext;
pub mod schema;
pub mod template;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::id::PartyName;

pub use kind::{PLAN_FAMILY, PlanDocKind};
pub use richtext::{Block, BlockKind, Run};
pub use schema::{
    AgreementInput, AgreementUpdate, CommentInput, PLAN_SCHEMA_VERSION, SectionEdit, SectionMove,
    SectionPlace, add_agreement, add_comment, delete_section, init_plan, move_section, read_plan,
    read_title, remove_agreement, rename_section, resolve_comment, set_section, update_agreement,
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

    /// Whether an agreement may go from this status to `to`: work starts, ends or
    /// lapses; finished work can be reopened and a lapsed agreement revived, but what
    /// was finished does not lapse and what lapsed is not finished.
    pub fn may_become(self, to: AgreementStatus) -> bool {
        use AgreementStatus::*;
        matches!(
            (self, to),
            (Open, InUitvoering | Afgerond | Vervallen)
                | (InUitvoering, Open | Afgerond | Vervallen)
                | (Afgerond, InUitvoering)
                | (Vervallen, Open)
        )
    }

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
            .ok_or_else(|| {
                PlanError::Schema(format!(
                    "unknown agreement status '{s}' (the statuses are: {})",
                    AgreementStatus::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
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
    /// Sections in the plan's order: by rank, then list position (docs/SCHEMA.md,
    /// "Order of sections"; [`order`]).
    pub sections: Vec<Section>,
    /// Agreements in the order they were added.
    pub agreements: Vec<Agreement>,
    /// Comments in the order they were added.
    #[serde(default)]
    pub comments: Vec<Comment>,
    /// Fields written concurrently with different values, not yet resolved.
    #[serde(default)]
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    /// The section with this title (exactly), if any.
    pub fn titled(&self, title: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.title == title)
    }

    /// The section with this id.
    pub fn section(&self, id: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.id == id)
    }

    /// The values of a field in conflict (`target`: `"agreement a-…"`, `"section s-…"`
    /// or `"plan"`), if it is.
    pub fn conflict_values(&self, target: &str, field: &str) -> Option<Vec<&str>> {
        self.conflicts
            .iter()
            .find(|c| c.target == target && c.field == field)
            .map(|c| c.values.iter().map(|v| v.value.as_str()).collect())
    }
}

/// A comment on a passage of a section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// Stable id within the plan (`c-` and 8 hex digits).
    pub id: String,
    /// The section it is on.
    pub section: String,
    /// The text that was quoted when the comment was made.
    pub quote: String,
    /// The text the anchor covers now (`None` when all of it was deleted or the
    /// section is gone).
    pub anchored: Option<String>,
    /// The anchor's character range in the section's text object (block markers
    /// count as one), when anchored.
    pub range: Option<(usize, usize)>,
    /// The commenting party.
    pub author: PartyName,
    /// When, Unix seconds (the author's clock).
    pub time: i64,
    /// The comment.
    pub text: String,
    /// Whether it was resolved.
    pub resolved: bool,
}

/// One field with concurrent values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// What holds the field: `plan`, `section s-…` or `agreement a-…`.
    pub target: String,
    /// The field (`status`, `deadline`, …).
    pub field: String,
    /// Every value, in Automerge's order (the one shown by default is the last).
    pub values: Vec<ConflictValue>,
}

/// One of the values of a conflict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictValue {
    /// The value as text (`(none)` for an empty deadline).
    pub value: String,
    /// The Automerge actor (hex) that wrote it: the writing device.
    pub actor: String,
}

/// A section of a plan: a title and its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Stable id of the section within the plan (`s-` and 8 hex digits).
    pub id: String,
    /// Section heading.
    pub title: String,
    /// Section text, as Markdown.
    pub text: String,
    /// Section text as blocks with marks (what [`Section::text`] is written from).
    #[serde(default)]
    pub blocks: Vec<Block>,
}

/// An agreement (afspraak): who does what, by when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// Stable id of the agreement within the plan (`a-` and 8 hex digits).
    pub id: String,
    /// What is agreed.
    pub title: String,
    /// More about it (plain text).
    #[serde(default)]
    pub description: String,
    /// The party that carries it out.
    pub owner: PartyName,
    /// By when, if agreed.
    #[serde(with = "date_format::option")]
    pub deadline: Option<Date>,
    /// Where it stands.
    pub status: AgreementStatus,
    /// How it is paid for, if noted.
    #[serde(default)]
    pub funding: Option<String>,
    /// Ids of the sections it belongs to.
    #[serde(default)]
    pub sections: Vec<String>,
}

/// Parses a calendar date written as `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, PlanError> {
    crate::date::parse(s).ok_or_else(|| PlanError::BadDate(s.chars().take(40).collect()))
}

pub use crate::date::date_format;

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
    /// No section has this id or title.
    #[error("no section '{0}' in this plan: see the section titles and ids with `doc show`")]
    UnknownSection(String),
    /// No agreement has this id.
    #[error("no agreement '{0}' in this plan: see the agreement ids with `doc show`")]
    UnknownAgreement(String),
    /// No comment has this id.
    #[error("no comment '{0}' in this plan: see the comment ids with `doc comment list`")]
    UnknownComment(String),
    /// The quoted text is not in the section.
    #[error(
        "the section does not contain the text '{0}': quote it exactly as `doc show` prints it, within one paragraph"
    )]
    QuoteNotFound(String),
    /// The quoted text occurs more than once.
    #[error(
        "the text '{quote}' occurs {count} times in the section: quote more words so it is unique"
    )]
    AmbiguousQuote {
        /// The quote.
        quote: String,
        /// How often it occurs.
        count: usize,
    },
    /// A status change that is not allowed.
    #[error(
        "an agreement cannot go from '{from}' to '{to}' (allowed: open → in-uitvoering, afgerond, vervallen; in-uitvoering → open, afgerond, vervallen; afgerond → in-uitvoering; vervallen → open)"
    )]
    BadTransition {
        /// The current status (several when in conflict).
        from: String,
        /// The requested status.
        to: AgreementStatus,
    },
    /// Another section has this title already (compared after Unicode NFC, case
    /// and spaces).
    #[error("another section is called '{0}' already: choose another title, or edit that section")]
    DuplicateSection(String),
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
    if t.chars().any(crate::text::is_misleading) {
        return Err(PlanError::BadTitle {
            what,
            why: "it contains a text-direction override or a line separator",
        });
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_with_control_characters_or_direction_overrides_are_refused() {
        assert_eq!(
            validate_title("plan title", "  Jeugdplan  ").unwrap(),
            "Jeugdplan"
        );
        for bad in [
            "",
            "Jeugd\nplan",
            "Jeugd\u{1b}[2Jplan",
            // "Gemeente Gouda" shown as "aduoG etneemeG" by a right-to-left override.
            "Gemeente \u{202e}aduoG",
            "Plan \u{2066}x\u{2069}",
            "Regel\u{2028}twee",
        ] {
            assert!(
                matches!(
                    validate_title("plan title", bad),
                    Err(PlanError::BadTitle { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
