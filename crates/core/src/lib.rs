//! # regiosync-core
//!
//! The pure logic of regiosync: identifiers, node identities and their key file
//! format, and the document schemas. No I/O, no async, no clocks: the store and the
//! node runtime drive these functions, so everything here is unit- and
//! property-testable. See docs/ARCHITECTURE.md for where this crate sits.
//!
//! ```
//! use automerge::Automerge;
//! use regiosync_core::id::PartyName;
//! use regiosync_core::plan::{self, PlanKind};
//!
//! let owner = PartyName::new("gemeente-utrecht")?;
//! let mut doc = Automerge::new();
//! let mut tx = doc.transaction();
//! plan::init_plan(&mut tx, PlanKind::Jeugdplan, "Jeugdplan 2027", &owner)?;
//! plan::set_section(&mut tx, "Inleiding", "Samen met het onderwijs.")?;
//! tx.commit();
//!
//! let view = plan::read_plan(&doc)?;
//! assert_eq!(view.sections[0].text, "Samen met het onderwijs.");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

pub mod audit;
pub mod change_chunk;
pub mod control;
pub mod cores;
pub mod date;
mod docschema;
pub mod dossier;
pub mod envelope;
pub mod id;
pub mod identity;
pub mod kind;
pub mod plan;
pub mod seal;
mod signature_memo;
pub mod text;
#[doc(hidden)]
#[cfg(any(test, feature = "test-hooks"))]
pub use signature_memo::forget_all as forget_verified_signatures_for_bench;
pub mod sync;

pub use automerge;

#[cfg(test)]
mod decoders_never_panic;
#[cfg(test)]
mod testkit;
