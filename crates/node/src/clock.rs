//! The node's clock: wall-clock time as the store, the region log and the dossiers
//! record it. One place, so that every timestamp a node writes comes from the same
//! functions.

use time::Date;

/// Now, in Unix milliseconds (store rows, audit entries).
pub(crate) fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Now, in Unix seconds (signed ops, peer contact times).
pub(crate) fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Today's date in UTC (grants in force, contact log entries).
pub(crate) fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}
