//! Calendar arithmetic for Debezium's date and time encodings: days, micros since midnight and
//! micros since the epoch, to and from ISO-8601 text (always UTC, `Z`).

use std::fmt::Write;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike};

const EPOCH_DAYS_FROM_CE: i32 = 719_163;

pub fn format_date(days: i32) -> String {
    match NaiveDate::from_num_days_from_ce_opt(days + EPOCH_DAYS_FROM_CE) {
        Some(d) => {
            let mut text = String::with_capacity(10);
            write_date(&mut text, d);
            text
        }
        None => days.to_string(),
    }
}

pub fn format_time(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if frac == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}.{frac:06}")
    }
}

/// RFC 3339 in UTC with as many fraction digits as needed: 0, 3 or 6.
pub fn format_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    match DateTime::from_timestamp(secs, frac * 1000) {
        Some(t) => {
            // Written directly, not through chrono's format parser: this runs for every
            // timestamp of every document written.
            let t = t.naive_utc();
            let mut text = String::with_capacity(27);
            write_date(&mut text, t.date());
            let _ = write!(text, "T{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
            if !frac.is_multiple_of(1000) {
                let _ = write!(text, ".{frac:06}");
            } else if frac != 0 {
                let _ = write!(text, ".{:03}", frac / 1000);
            }
            text.push('Z');
            text
        }
        None => micros.to_string(),
    }
}

/// `YYYY-MM-DD`; years outside 0–9999 in chrono's signed, wider form.
fn write_date(text: &mut String, d: NaiveDate) {
    if (0..=9999).contains(&d.year()) {
        let _ = write!(text, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
    } else {
        let _ = write!(text, "{}", d.format("%Y-%m-%d"));
    }
}

pub fn parse_date(text: &str) -> Option<i32> {
    let d = NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()?;
    Some(
        d.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?)
            .num_days() as i32,
    )
}

pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim_end_matches('Z');
    let t = NaiveTime::parse_from_str(text, "%H:%M:%S%.f").ok()?;
    Some(t.num_seconds_from_midnight() as i64 * 1_000_000 + (t.nanosecond() / 1000) as i64)
}

/// Parses RFC 3339 (with offset or `Z`), or a naive `YYYY-MM-DD[T ]HH:MM:SS[.f]` taken as UTC.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    #[test]
    fn round_trips() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_219), "2022-08-15");
        assert_eq!(parse_date("2022-08-15"), Some(19_219));
        assert_eq!(format_time(3_723_000_000), "01:02:03");
        assert_eq!(parse_time("01:02:03.5"), Some(3_723_500_000));
        assert_eq!(
            format_timestamp(1_660_553_637_000_000),
            "2022-08-15T08:53:57Z"
        );
        assert_eq!(
            format_timestamp(1_660_553_637_123_000),
            "2022-08-15T08:53:57.123Z"
        );
        assert_eq!(
            parse_timestamp("2022-08-15T08:53:57+04:30"),
            Some(1_660_553_637_000_000 - 16_200_000_000)
        );
        assert_eq!(
            parse_timestamp("2022-08-15 08:53:57"),
            Some(1_660_553_637_000_000)
        );
        assert_eq!(parse_timestamp("nope"), None);
    }

    /// The chrono format strings the direct formatting replaces.
    fn format_timestamp_chrono(t: NaiveDateTime, frac: u32) -> String {
        if frac == 0 {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else if frac.is_multiple_of(1000) {
            t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        } else {
            t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
        }
    }

    #[test]
    fn direct_formatting_matches_chrono() {
        let mut micros: i64 = -62_167_219_200_000_000; // 0000-01-01
        let step = 7_777_777_777_123; // about 90 days, with a varying fraction
        while micros < 253_402_300_800_000_000 {
            // up to 9999-12-31
            for m in [
                micros,
                micros - micros.rem_euclid(1_000_000),
                micros - micros.rem_euclid(1_000),
            ] {
                let secs = m.div_euclid(1_000_000);
                let frac = m.rem_euclid(1_000_000) as u32;
                let t = DateTime::from_timestamp(secs, frac * 1000)
                    .unwrap()
                    .naive_utc();
                assert_eq!(format_timestamp(m), format_timestamp_chrono(t, frac), "{m}");
                let days = secs.div_euclid(86_400) as i32;
                let d = NaiveDate::from_num_days_from_ce_opt(days + EPOCH_DAYS_FROM_CE).unwrap();
                assert_eq!(format_date(days), d.format("%Y-%m-%d").to_string());
            }
            micros += step;
        }
        // Outside years 0–9999 chrono's form is kept.
        for days in [-800_000, 3_000_000] {
            let d = NaiveDate::from_num_days_from_ce_opt(days + EPOCH_DAYS_FROM_CE).unwrap();
            assert_eq!(format_date(days), d.format("%Y-%m-%d").to_string());
        }
        assert_eq!(
            format_timestamp(253_402_300_800_000_000),
            "+10000-01-01T00:00:00Z"
        );
        assert_eq!(
            format_timestamp(253_402_300_800_123_000),
            "+10000-01-01T00:00:00.123Z"
        );
    }
}
