//! The mapping between a dossier's Automerge document and the typed [`Dossier`] view
//! (layout in the module docs of [`crate::dossier`]).

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc, ScalarValue};
use time::Date;

use super::{
    AbsenceSignal, Contact, Dossier, DossierError, DossierField, SupportAgreement, free_text,
    one_line,
};
use crate::date::date_format;
use crate::docschema::{get_date_opt, get_obj, get_str, get_uint, new_local_id, violation};
use crate::id::PartyName;

/// The dossier schema version this code writes and reads.
pub const DOSSIER_SCHEMA_VERSION: u64 = 1;
const TYPE_DOSSIER: &str = "regiosync/dossier";
const SCALAR_FIELDS: [&str; 4] = ["naam", "opleiding", "locatie", "zorg"];

/// Writes the skeleton of a new dossier into an empty document.
pub fn init_dossier<T: Transactable>(
    tx: &mut T,
    woongemeente: &PartyName,
) -> Result<(), DossierError> {
    tx.put(ROOT, "type", TYPE_DOSSIER)?;
    tx.put(ROOT, "schema", ScalarValue::Uint(DOSSIER_SCHEMA_VERSION))?;
    for f in SCALAR_FIELDS {
        tx.put(ROOT, f, "")?;
    }
    tx.put(ROOT, "geboortedatum", ScalarValue::Null)?;
    tx.put(ROOT, "woongemeente", woongemeente.as_str())?;
    tx.put_object(ROOT, "ondersteuningsbehoefte", ObjType::Text)?;
    for list in ["afspraken", "verzuim", "contacten"] {
        tx.put_object(ROOT, list, ObjType::List)?;
    }
    Ok(())
}

/// Sets a field. The support needs text is applied as a minimal diff, so concurrent
/// edits of other paragraphs survive.
pub fn set_field<T: Transactable>(
    tx: &mut T,
    field: DossierField,
    value: &str,
) -> Result<(), DossierError> {
    check_header(tx)?;
    let key = field.as_str();
    match field {
        DossierField::Geboortedatum => {
            let d = crate::date::parse(value).ok_or(DossierError::BadValue {
                field: key,
                why: "not a date: write it as YYYY-MM-DD",
            })?;
            tx.put(ROOT, key, date_format::format(d))?;
        }
        DossierField::Woongemeente => {
            let p = PartyName::new(value.trim()).map_err(|_| DossierError::BadValue {
                field: key,
                why: "not a party name",
            })?;
            tx.put(ROOT, key, p.as_str())?;
        }
        DossierField::Ondersteuningsbehoefte => {
            if value.len() > super::MAX_TEXT_BYTES {
                return Err(DossierError::BadValue {
                    field: key,
                    why: "longer than 64 KiB",
                });
            }
            let text = get_obj(tx, &ROOT, key, ObjType::Text)?;
            tx.update_text(&text, value)?;
        }
        DossierField::Naam
        | DossierField::Opleiding
        | DossierField::Locatie
        | DossierField::Zorg => {
            tx.put(ROOT, key, one_line(key, value)?)?;
        }
    }
    Ok(())
}

/// Appends a support agreement; returns its id.
pub fn add_support_agreement<T: Transactable>(
    tx: &mut T,
    tekst: &str,
    evaluatie: Option<Date>,
) -> Result<String, DossierError> {
    check_header(tx)?;
    let tekst = free_text("afspraak", tekst)?;
    let list = get_obj(tx, &ROOT, "afspraken", ObjType::List)?;
    let id = new_local_id("o")?;
    let obj = tx.insert_object(&list, tx.length(&list), ObjType::Map)?;
    tx.put(&obj, "id", id.as_str())?;
    tx.put(&obj, "tekst", tekst)?;
    match evaluatie {
        Some(d) => tx.put(&obj, "evaluatie", date_format::format(d))?,
        None => tx.put(&obj, "evaluatie", ScalarValue::Null)?,
    }
    Ok(id)
}

/// Appends an absence signal.
pub fn add_absence<T: Transactable>(
    tx: &mut T,
    datum: Date,
    signaal: &str,
) -> Result<(), DossierError> {
    check_header(tx)?;
    let signaal = free_text("verzuimsignaal", signaal)?;
    let list = get_obj(tx, &ROOT, "verzuim", ObjType::List)?;
    let obj = tx.insert_object(&list, tx.length(&list), ObjType::Map)?;
    tx.put(&obj, "datum", date_format::format(datum))?;
    tx.put(&obj, "signaal", signaal)?;
    Ok(())
}

/// Appends an entry to the contact log.
pub fn add_contact<T: Transactable>(
    tx: &mut T,
    datum: Date,
    partij: &PartyName,
    tekst: &str,
) -> Result<(), DossierError> {
    check_header(tx)?;
    let tekst = free_text("contact", tekst)?;
    let list = get_obj(tx, &ROOT, "contacten", ObjType::List)?;
    let obj = tx.insert_object(&list, tx.length(&list), ObjType::Map)?;
    tx.put(&obj, "datum", date_format::format(datum))?;
    tx.put(&obj, "partij", partij.as_str())?;
    tx.put(&obj, "tekst", tekst)?;
    Ok(())
}

/// Reads the typed view of a dossier document.
pub fn read_dossier<R: ReadDoc>(doc: &R) -> Result<Dossier, DossierError> {
    let schema = check_header(doc)?;
    let party = |s: String, key: &str| PartyName::new(&s).map_err(|_| violation(key));
    let date = |d: Option<Date>, key: &str| d.ok_or_else(|| violation(key));
    let text = get_obj(doc, &ROOT, "ondersteuningsbehoefte", ObjType::Text)?;

    let mut afspraken = Vec::new();
    let list = get_obj(doc, &ROOT, "afspraken", ObjType::List)?;
    for i in 0..doc.length(&list) {
        let a = get_obj(doc, &list, i, ObjType::Map)?;
        afspraken.push(SupportAgreement {
            id: get_str(doc, &a, "id")?,
            tekst: get_str(doc, &a, "tekst")?,
            evaluatie: get_date_opt(doc, &a, "evaluatie")?,
        });
    }
    let mut verzuim = Vec::new();
    let list = get_obj(doc, &ROOT, "verzuim", ObjType::List)?;
    for i in 0..doc.length(&list) {
        let v = get_obj(doc, &list, i, ObjType::Map)?;
        verzuim.push(AbsenceSignal {
            datum: date(get_date_opt(doc, &v, "datum")?, "datum")?,
            signaal: get_str(doc, &v, "signaal")?,
        });
    }
    let mut contacten = Vec::new();
    let list = get_obj(doc, &ROOT, "contacten", ObjType::List)?;
    for i in 0..doc.length(&list) {
        let c = get_obj(doc, &list, i, ObjType::Map)?;
        contacten.push(Contact {
            datum: date(get_date_opt(doc, &c, "datum")?, "datum")?,
            partij: party(get_str(doc, &c, "partij")?, "partij")?,
            tekst: get_str(doc, &c, "tekst")?,
        });
    }
    Ok(Dossier {
        schema,
        naam: get_str(doc, &ROOT, "naam")?,
        geboortedatum: get_date_opt(doc, &ROOT, "geboortedatum")?,
        woongemeente: party(get_str(doc, &ROOT, "woongemeente")?, "woongemeente")?,
        opleiding: get_str(doc, &ROOT, "opleiding")?,
        locatie: get_str(doc, &ROOT, "locatie")?,
        ondersteuningsbehoefte: doc.text(&text)?,
        zorg: get_str(doc, &ROOT, "zorg")?,
        afspraken,
        verzuim,
        contacten,
    })
}

fn check_header<R: ReadDoc>(doc: &R) -> Result<u64, DossierError> {
    if get_str(doc, &ROOT, "type")? != TYPE_DOSSIER {
        return Err(DossierError::Schema("the document is not a dossier".into()));
    }
    let schema = get_uint(doc, &ROOT, "schema")?;
    if schema > DOSSIER_SCHEMA_VERSION {
        return Err(DossierError::NewerSchema(schema));
    }
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::Automerge;

    fn p(s: &str) -> PartyName {
        PartyName::new(s).unwrap()
    }

    fn new_dossier() -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init_dossier(&mut tx, &p("gemeente-zeist")).unwrap();
        tx.commit();
        doc
    }

    #[test]
    fn fields_lists_and_log_read_back() {
        let mut doc = new_dossier();
        let mut tx = doc.transaction();
        set_field(&mut tx, DossierField::Naam, "Sanne de Vries").unwrap();
        set_field(&mut tx, DossierField::Geboortedatum, "2008-04-12").unwrap();
        set_field(&mut tx, DossierField::Opleiding, "Verzorgende IG, niveau 3").unwrap();
        set_field(
            &mut tx,
            DossierField::Ondersteuningsbehoefte,
            "Rustige werkplek.\n",
        )
        .unwrap();
        let id = add_support_agreement(
            &mut tx,
            "Extra tijd bij toetsen",
            Some(crate::date::parse("2027-09-01").unwrap()),
        )
        .unwrap();
        add_absence(
            &mut tx,
            crate::date::parse("2026-11-03").unwrap(),
            "3 dagen ongeoorloofd",
        )
        .unwrap();
        add_contact(
            &mut tx,
            crate::date::parse("2026-11-04").unwrap(),
            &p("roc-midden"),
            "Huisbezoek met ouders.",
        )
        .unwrap();
        tx.commit();
        let d = read_dossier(&doc).unwrap();
        assert_eq!(d.naam, "Sanne de Vries");
        assert_eq!(
            d.geboortedatum,
            Some(crate::date::parse("2008-04-12").unwrap())
        );
        assert_eq!(d.woongemeente, p("gemeente-zeist"));
        assert_eq!(d.ondersteuningsbehoefte, "Rustige werkplek.\n");
        assert_eq!(d.afspraken[0].id, id);
        assert_eq!(d.verzuim.len(), 1);
        assert_eq!(d.contacten[0].partij, p("roc-midden"));
        // No personal data in the Debug form.
        let shown = format!("{d:?}");
        assert!(
            !shown.contains("Sanne") && !shown.contains("2008") && !shown.contains("Huisbezoek")
        );
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"geboortedatum\":\"2008-04-12\""), "{json}");
    }

    #[test]
    fn concurrent_notes_and_support_text_edits_all_survive() {
        let mut base = new_dossier();
        let mut tx = base.transaction();
        set_field(
            &mut tx,
            DossierField::Ondersteuningsbehoefte,
            "een\ntwee\ndrie\n",
        )
        .unwrap();
        tx.commit();
        let mut a = base.fork();
        let mut b = base.fork();
        let mut tx = a.transaction();
        set_field(
            &mut tx,
            DossierField::Ondersteuningsbehoefte,
            "EEN\ntwee\ndrie\n",
        )
        .unwrap();
        add_contact(
            &mut tx,
            crate::date::parse("2026-11-05").unwrap(),
            &p("roc-midden"),
            "a",
        )
        .unwrap();
        tx.commit();
        let mut tx = b.transaction();
        set_field(
            &mut tx,
            DossierField::Ondersteuningsbehoefte,
            "een\ntwee\nDRIE\n",
        )
        .unwrap();
        add_contact(
            &mut tx,
            crate::date::parse("2026-11-05").unwrap(),
            &p("gemeente-zeist"),
            "b",
        )
        .unwrap();
        tx.commit();
        a.merge(&mut b).unwrap();
        let d = read_dossier(&a).unwrap();
        assert_eq!(d.ondersteuningsbehoefte, "EEN\ntwee\nDRIE\n");
        assert_eq!(d.contacten.len(), 2);
    }

    #[test]
    fn bad_values_and_foreign_documents_are_refused() {
        let mut doc = new_dossier();
        let heads = doc.get_heads();
        let mut tx = doc.transaction();
        for (f, v) in [
            (DossierField::Geboortedatum, "12-04-2008"),
            (DossierField::Woongemeente, "Gemeente Zeist!"),
            (DossierField::Naam, "a\nb"),
        ] {
            assert!(
                matches!(set_field(&mut tx, f, v), Err(DossierError::BadValue { .. })),
                "{f}"
            );
        }
        assert!(
            add_contact(
                &mut tx,
                crate::date::parse("2026-11-05").unwrap(),
                &p("roc-midden"),
                " "
            )
            .is_err()
        );
        tx.rollback();
        assert_eq!(doc.get_heads(), heads);
        assert!("bsn".parse::<DossierField>().is_err());
        // A plan is not a dossier; a newer schema is refused.
        let mut plan = Automerge::new();
        let mut tx = plan.transaction();
        crate::plan::init_plan(
            &mut tx,
            crate::plan::PlanKind::Jeugdplan,
            "x",
            &p("roc-midden"),
        )
        .unwrap();
        tx.commit();
        assert!(matches!(read_dossier(&plan), Err(DossierError::Schema(_))));
        let mut tx = doc.transaction();
        tx.put(ROOT, "schema", ScalarValue::Uint(7)).unwrap();
        tx.commit();
        assert!(matches!(
            read_dossier(&doc),
            Err(DossierError::NewerSchema(7))
        ));
    }
}
