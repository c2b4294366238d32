//! Calendar dates as regiosync writes them: `YYYY-MM-DD`, in documents (plans,
//! dossiers), files and output. Shared by the plan and dossier schemas, which is why
//! it lives on its own rather than in either.

use time::Date;

/// Parses a calendar date written as `YYYY-MM-DD` (surrounding blanks ignored);
/// `None` if it is not one or does not exist (2027-02-30).
pub fn parse(s: &str) -> Option<Date> {
    Date::parse(s.trim(), date_format::FORMAT).ok()
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
                .map(|s| {
                    crate::date::parse(&s).ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "'{}' is not a valid date: write it as YYYY-MM-DD",
                            s.chars().take(40).collect::<String>()
                        ))
                    })
                })
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_strictly() {
        assert_eq!(
            parse(" 2027-03-31 "),
            Some(time::macros::date!(2027 - 03 - 31))
        );
        for bad in ["2027-02-30", "31-03-2027", "2027-3-31", "", "morgen"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(
            date_format::format(time::macros::date!(2027 - 01 - 05)),
            "2027-01-05"
        );
    }
}
