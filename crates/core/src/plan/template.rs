//! Templates: the sections each kind of plan usually has, in the order partners
//! write them. A new plan starts with these sections, empty; sections can be added,
//! renamed or left empty as the region sees fit.

use super::PlanKind;

/// The usual sections of a plan of this kind.
pub fn sections(kind: PlanKind) -> &'static [&'static str] {
    match kind {
        PlanKind::Jeugdplan => &[
            "Inleiding",
            "Visie en ambities",
            "Analyse: cijfers en trends",
            "Doelen en resultaten",
            "Preventie en voorliggend veld",
            "Samenwerking onderwijs en jeugdhulp",
            "Financiën",
            "Monitoring en evaluatie",
        ],
        PlanKind::Ondersteuningsplan => &[
            "Inleiding",
            "Visie op passend onderwijs",
            "Basisondersteuning",
            "Extra ondersteuning en arrangementen",
            "Toelaatbaarheidsverklaringen",
            "Thuiszitters en verzuim",
            "Samenwerking met gemeenten (OOGO)",
            "Financiën",
            "Kwaliteitszorg",
        ],
        PlanKind::VsvProgramma => &[
            "Inleiding",
            "Regionale analyse voortijdig schoolverlaten",
            "Preventie",
            "Jongeren in een kwetsbare positie",
            "Maatregelen en aanpak",
            "Rol van de partners",
            "Monitoring",
        ],
        PlanKind::OogoVerslag => &[
            "Aanwezigen",
            "Agenda",
            "Bespreking",
            "Besluiten en afspraken",
            "Standpunten van partijen",
            "Vervolg",
        ],
    }
}
