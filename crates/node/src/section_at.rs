//! Saving a section's text from the version a person started from (the web app's
//! editor): the edit is merged, line by line, with what was written into the
//! section since, so nothing written meanwhile is lost.
//!
//! Why not an Automerge change made at the old heads (`transaction_at`)? A change's
//! actor is the writing device, and Automerge cannot make a change by one actor that
//! does not follow that actor's previous change: when this node itself wrote the
//! section since (another person, another browser on the same node), there is no
//! concurrent change to make. So the node merges itself, with the same line-wise
//! three-way merge readers apply to concurrent `written` values
//! ([`regiosync_core::plan::paragraphs`]): the section as it was at the base, the
//! person's text, and the section now. Lines only one side changed take that side's;
//! a line both rewrote merges word by word where the words do not overlap; otherwise
//! nothing is written and the caller gets both versions ([`SectionSave::Clash`]), to
//! settle by choosing or editing. The look and the write happen in one store
//! transaction, so no other process writes in between.

use automerge::ChangeHash;
use regiosync_core::id::DocId;
use regiosync_core::plan::{self, PlanError, paragraphs, richtext};

use crate::Node;
use crate::documents::read_plan_of;
use crate::error::NodeError;
use crate::plan_versions::fork_at;

/// What [`Node::set_section_at`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SectionSave {
    /// The text is written (or was the section's text already).
    Saved {
        /// Whether others had changed the section since the base, and their lines
        /// were kept alongside the person's.
        merged: bool,
        /// The new change, `None` if nothing changed.
        change: Option<ChangeHash>,
    },
    /// Others rewrote some of the same lines since the base: nothing was written.
    Clash(SectionClash),
}

/// A save that rewrote lines others rewrote too since it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionClash {
    /// The section id.
    pub section: String,
    /// The section's text now (Markdown).
    pub current: String,
    /// The text the person saved, as Markdown (normalised).
    pub yours: String,
    /// Each place where both rewrote the same lines.
    pub lines: Vec<LineClash>,
    /// Everything both wrote, with the person's version where they clash: what
    /// "keep mine" saves from [`SectionClash::heads`].
    pub with_yours: String,
    /// Everything both wrote, with the version written meanwhile where they clash.
    pub with_theirs: String,
    /// The plan's heads now: a save that settles the clash starts from here.
    pub heads: Vec<ChangeHash>,
}

/// One place both rewrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineClash {
    /// The person's version of the lines.
    pub yours: String,
    /// The version written meanwhile (in the section now).
    pub theirs: String,
}

/// Markdown as `set_section` would store it: line breaks `\n` (browsers send
/// `\r\n`), parsed and written back.
pub fn normalize_markdown(text: &str) -> String {
    let unix = text.replace("\r\n", "\n").replace('\r', "\n");
    richtext::to_markdown(&richtext::parse_markdown(&unix))
}

/// What the look inside the transaction decided.
enum Plan {
    Write { text: String, merged: bool },
    Nothing,
    Clash(SectionClash),
}

/// What the edit did.
enum Done {
    Saved(bool),
    Clash(SectionClash),
}

impl Node {
    /// Sets the text of section `section` (its id) as a person who started from the
    /// plan's version `base` (heads this node has) wrote it, merged with what was
    /// written into that section since. See the module documentation.
    ///
    /// Errors: [`NodeError::UnknownVersion`] if `base` is empty or names a change
    /// this node does not have; [`PlanError::UnknownSection`] if the section is not
    /// in the plan at `base` or no longer in it now. Nothing is written then.
    pub fn set_section_at(
        &mut self,
        id: &DocId,
        section: &str,
        text: &str,
        base: &[ChangeHash],
    ) -> Result<SectionSave, NodeError> {
        if text.len() > plan::MAX_SECTION_BYTES {
            return Err(PlanError::TextTooLarge(text.len()).into());
        }
        if base.is_empty() {
            return Err(NodeError::UnknownVersion(String::new()));
        }
        let sid = section.trim().to_owned();
        let yours = normalize_markdown(text);
        let message = format!("set section {sid}");
        let unknown =
            |s: &str| NodeError::from(PlanError::UnknownSection(s.chars().take(80).collect()));
        let edited = self.edit_plan_with(
            id,
            &message,
            |doc, folded| {
                let now = read_plan_of(doc, &folded.state, id)?;
                let current = now.section(&sid).ok_or_else(|| unknown(&sid))?;
                let at = fork_at(doc, base)?;
                let then = read_plan_of(&at, &folded.state, id)?;
                let before = then.section(&sid).ok_or_else(|| unknown(&sid))?;
                if before.text == current.text {
                    // Nobody wrote the section since: the person's text as it is
                    // (set_section makes no change if it is the same).
                    return Ok(Plan::Write {
                        text: yours.clone(),
                        merged: false,
                    });
                }
                if yours == before.text || yours == current.text {
                    // The person changed nothing, or wrote what is there now.
                    return Ok(Plan::Nothing);
                }
                let base_lines = paragraphs::base_of(&before.text);
                let old = |hash: &str| {
                    before
                        .text
                        .split('\n')
                        .find(|l| paragraphs::base_of(l) == hash)
                        .map(str::to_owned)
                };
                let clash = |lines: Vec<LineClash>, with_yours: String| {
                    // The same merge the other way round: their lines where both
                    // rewrote.
                    let with_theirs = paragraphs::merge_with(
                        &base_lines,
                        &current.text,
                        &base_lines,
                        &yours,
                        old,
                    )
                    .map_or_else(|| current.text.clone(), |m| m.text);
                    SectionClash {
                        section: sid.clone(),
                        current: current.text.clone(),
                        yours: yours.clone(),
                        lines,
                        with_yours,
                        with_theirs,
                        heads: doc.get_heads(),
                    }
                };
                match paragraphs::merge_with(&base_lines, &yours, &base_lines, &current.text, old) {
                    Some(m) if m.conflicts.is_empty() => Ok(Plan::Write {
                        text: m.text,
                        merged: true,
                    }),
                    Some(m) => Ok(Plan::Clash(clash(
                        m.conflicts
                            .into_iter()
                            .map(|c| LineClash {
                                yours: c.first,
                                theirs: c.second,
                            })
                            .collect(),
                        m.text,
                    ))),
                    // Too large for a line-wise merge: the whole texts clash.
                    None => Ok(Plan::Clash(clash(
                        vec![LineClash {
                            yours: yours.clone(),
                            theirs: current.text.clone(),
                        }],
                        yours.clone(),
                    ))),
                }
            },
            |t, decided| match decided {
                Plan::Write { text, merged } => {
                    plan::set_section(t, &sid, &text)?;
                    Ok(Done::Saved(merged))
                }
                Plan::Nothing => Ok(Done::Saved(false)),
                Plan::Clash(c) => Ok(Done::Clash(c)),
            },
        )?;
        match edited.value {
            Done::Saved(merged) => {
                tracing::info!(doc = %id, merged, "saved a section from a version");
                Ok(SectionSave::Saved {
                    merged,
                    change: edited.change,
                })
            }
            Done::Clash(c) => {
                tracing::info!(doc = %id, lines = c.lines.len(), "a section save clashed; nothing written");
                Ok(SectionSave::Clash(c))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use regiosync_core::id::{PartyName, Role};
    use regiosync_core::plan::PlanKind;

    use super::*;

    fn node() -> (tempfile::TempDir, Node, DocId, String) {
        let dir = tempfile::tempdir().unwrap();
        Node::init(
            dir.path(),
            PartyName::new("gemeente-gouda").unwrap(),
            Role::Kerngemeente,
            None,
        )
        .unwrap();
        let mut n = Node::open(dir.path()).unwrap();
        n.create_region("Regio").unwrap();
        let plan = n.create_plan(PlanKind::Jeugdplan, "Plan").unwrap();
        let sid = n
            .set_section(
                &plan,
                "Inleiding",
                "Eerste alinea.\n\nTweede alinea.\n\nDerde.",
            )
            .unwrap()
            .value
            .id;
        (dir, n, plan, sid)
    }

    fn text(n: &Node, plan: &DocId, sid: &str) -> String {
        n.plan(plan).unwrap().section(sid).unwrap().text.clone()
    }

    #[test]
    fn two_saves_from_one_version_of_different_paragraphs_both_stay() {
        let (_d, mut n, plan, sid) = node();
        let base = n.plan_heads(&plan).unwrap();
        let a = n
            .set_section_at(
                &plan,
                &sid,
                "Eerste alinea, van A.\r\n\r\nTweede alinea.\r\n\r\nDerde.",
                &base,
            )
            .unwrap();
        assert!(matches!(
            a,
            SectionSave::Saved {
                merged: false,
                change: Some(_)
            }
        ));
        let b = n
            .set_section_at(
                &plan,
                &sid,
                "Eerste alinea.\n\nTweede alinea, van **B**.\n\nDerde.",
                &base,
            )
            .unwrap();
        assert!(
            matches!(
                b,
                SectionSave::Saved {
                    merged: true,
                    change: Some(_)
                }
            ),
            "{b:?}"
        );
        assert_eq!(
            text(&n, &plan, &sid),
            "Eerste alinea, van A.\n\nTweede alinea, van **B**.\n\nDerde."
        );
        assert!(n.plan(&plan).unwrap().conflicts.is_empty());
    }

    #[test]
    fn the_same_paragraph_rewritten_twice_clashes_and_writes_nothing() {
        let (_d, mut n, plan, sid) = node();
        let base = n.plan_heads(&plan).unwrap();
        n.set_section_at(
            &plan,
            &sid,
            "Iets heel anders.\n\nTweede alinea.\n\nDerde.",
            &base,
        )
        .unwrap();
        let heads = n.plan_heads(&plan).unwrap();
        let r = n
            .set_section_at(
                &plan,
                &sid,
                "Weer wat anders hier.\n\nTweede alinea.\n\nDerde.",
                &base,
            )
            .unwrap();
        let SectionSave::Clash(c) = r else {
            panic!("expected a clash: {r:?}")
        };
        assert_eq!(c.lines.len(), 1);
        assert_eq!(c.lines[0].yours, "Weer wat anders hier.");
        assert_eq!(c.lines[0].theirs, "Iets heel anders.");
        assert_eq!(c.heads, heads);
        assert!(c.with_yours.starts_with("Weer wat anders hier.\n"));
        assert!(c.with_theirs.starts_with("Iets heel anders.\n"));
        assert_eq!(n.plan_heads(&plan).unwrap(), heads, "nothing written");
        assert_eq!(
            text(&n, &plan, &sid),
            "Iets heel anders.\n\nTweede alinea.\n\nDerde."
        );
        // Settled from the current version: written as given.
        let r = n
            .set_section_at(
                &plan,
                &sid,
                "Samen besloten.\n\nTweede alinea.\n\nDerde.",
                &c.heads,
            )
            .unwrap();
        assert!(matches!(r, SectionSave::Saved { merged: false, .. }));
        assert!(text(&n, &plan, &sid).starts_with("Samen besloten."));
    }

    #[test]
    fn different_words_of_one_paragraph_merge_word_by_word() {
        let (_d, mut n, plan, sid) = node();
        let base = n.plan_heads(&plan).unwrap();
        n.set_section_at(
            &plan,
            &sid,
            "Allereerste alinea.\n\nTweede alinea.\n\nDerde.",
            &base,
        )
        .unwrap();
        let r = n
            .set_section_at(
                &plan,
                &sid,
                "Eerste paragraaf.\n\nTweede alinea.\n\nDerde.",
                &base,
            )
            .unwrap();
        assert!(
            matches!(r, SectionSave::Saved { merged: true, .. }),
            "{r:?}"
        );
        assert_eq!(
            text(&n, &plan, &sid),
            "Allereerste paragraaf.\n\nTweede alinea.\n\nDerde."
        );
    }

    #[test]
    fn unknown_versions_and_sections_change_nothing() {
        let (_d, mut n, plan, sid) = node();
        let heads = n.plan_heads(&plan).unwrap();
        let unknown = [ChangeHash([7; 32])];
        for base in [&[][..], &unknown[..]] {
            let r = n.set_section_at(&plan, &sid, "x", base);
            assert!(matches!(r, Err(NodeError::UnknownVersion(_))), "{r:?}");
        }
        let r = n.set_section_at(&plan, "s-00000000", "x", &heads);
        assert!(
            matches!(r, Err(NodeError::Plan(PlanError::UnknownSection(_)))),
            "{r:?}"
        );
        // A section made after the base is unknown at the base.
        let late = n.set_section(&plan, "Later", "Nieuw.").unwrap().value.id;
        let r = n.set_section_at(&plan, &late, "x", &heads);
        assert!(matches!(
            r,
            Err(NodeError::Plan(PlanError::UnknownSection(_)))
        ));
        // A section deleted since the base is unknown now.
        let heads = n.plan_heads(&plan).unwrap();
        n.delete_section(&plan, &late).unwrap();
        let after = n.plan_heads(&plan).unwrap();
        let r = n.set_section_at(&plan, &late, "x", &heads);
        assert!(matches!(
            r,
            Err(NodeError::Plan(PlanError::UnknownSection(_)))
        ));
        assert_eq!(n.plan_heads(&plan).unwrap(), after);
    }

    #[test]
    fn an_unchanged_save_writes_nothing_and_keeps_others_text() {
        let (_d, mut n, plan, sid) = node();
        let base = n.plan_heads(&plan).unwrap();
        let before = text(&n, &plan, &sid);
        n.set_section_at(
            &plan,
            &sid,
            "Ander begin.\n\nTweede alinea.\n\nDerde.",
            &base,
        )
        .unwrap();
        let heads = n.plan_heads(&plan).unwrap();
        let r = n.set_section_at(&plan, &sid, &before, &base).unwrap();
        assert_eq!(
            r,
            SectionSave::Saved {
                merged: false,
                change: None
            }
        );
        assert_eq!(n.plan_heads(&plan).unwrap(), heads);
        assert!(text(&n, &plan, &sid).starts_with("Ander begin."));
    }
}
