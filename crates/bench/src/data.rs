//! The workloads' data, generated deterministically from a seed: the same seed gives
//! the same dossier fields, contact notes and plan text in every run (the ids, keys
//! and signatures of course differ: they come from the nodes).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regiosync_core::dossier::DossierField;

/// What one dossier-sized document holds: two fields in its first change, then one
/// contact note per further change.
#[derive(Clone, Debug)]
pub(crate) struct DossierContent {
    pub(crate) fields: Vec<(DossierField, String)>,
    pub(crate) notes: Vec<String>,
}

const OPLEIDINGEN: [&str; 6] = [
    "Verzorgende IG niveau 3",
    "Mediavormgever niveau 4",
    "Entree",
    "Eerste monteur elektrotechniek niveau 3",
    "Pedagogisch medewerker kinderopvang niveau 3",
    "Logistiek medewerker niveau 2",
];

const WORDS: [&str; 24] = [
    "gesprek",
    "over",
    "voortgang",
    "aanwezigheid",
    "stage",
    "mentor",
    "ouders",
    "afgesproken",
    "volgende",
    "week",
    "contact",
    "met",
    "jeugdconsulent",
    "leerplicht",
    "begeleiding",
    "rooster",
    "thuis",
    "school",
    "verzuim",
    "zorgcoördinator",
    "plan",
    "doel",
    "bijgesteld",
    "telefonisch",
];

/// The content of dossier `i` of a workload with `seed`: `changes` changes in all.
pub(crate) fn dossier(seed: u64, i: usize, changes: usize) -> DossierContent {
    let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let fields = vec![
        (DossierField::Naam, format!("Student {i:05}")),
        (
            DossierField::Opleiding,
            OPLEIDINGEN[rng.random_range(0..OPLEIDINGEN.len())].to_owned(),
        ),
    ];
    let notes = (1..changes)
        .map(|k| format!("Contactmoment {k}: {}.", sentence(&mut rng, 6, 14)))
        .collect();
    DossierContent { fields, notes }
}

/// `len` characters of plan text for transaction `i` of the large plan.
pub(crate) fn plan_text(seed: u64, i: usize, len: usize) -> String {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64));
    let mut s = String::with_capacity(len + 16);
    while s.chars().count() < len {
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        s.push(' ');
    }
    s.chars().take(len).collect()
}

fn sentence(rng: &mut StdRng, min: usize, max: usize) -> String {
    let n = rng.random_range(min..=max);
    (0..n)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let a = dossier(7, 3, 20);
        let b = dossier(7, 3, 20);
        let c = dossier(8, 3, 20);
        assert_eq!(a.notes, b.notes);
        assert_eq!(a.notes.len(), 19);
        assert_ne!(a.notes, c.notes);
        assert_eq!(plan_text(1, 5, 100), plan_text(1, 5, 100));
        assert_eq!(plan_text(1, 5, 100).chars().count(), 100);
        assert_ne!(plan_text(1, 5, 100), plan_text(1, 6, 100));
    }
}
