//! Checks and comparisons for the short human names people type and others read:
//! section titles, party display names. Shared so that every name is held to the
//! same rules.

/// Whether `c` makes a one-line name read differently from what it holds or break
/// onto another line: control characters, bidirectional overrides and isolates (a
/// name shown reversed, "Gemeente \u{202e}aduoG"), line and paragraph separators.
pub fn is_misleading(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// A name as compared for sameness: Unicode NFC, runs of white space as one space,
/// lower case. "Aanpak  In de regio" and "aanpak in de Regio" are the same name, and
/// so are the two ways Unicode can write "é".
///
/// ```
/// use regiosync_core::text::sameness_key;
/// assert_eq!(sameness_key("Gemeente  Gouda"), sameness_key("gemeente gouda"));
/// assert_eq!(sameness_key("Caf\u{e9}"), sameness_key("Cafe\u{301}"));
/// ```
pub fn sameness_key(name: &str) -> String {
    icu_normalizer::ComposingNormalizerBorrowed::new_nfc()
        .normalize(name)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}
