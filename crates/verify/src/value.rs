//! Typed values of verify's evaluation: column values decoded to their declared type, and the
//! objects and lists built from them; their order (which sorts nested lists and picks the item
//! of a `one` relation) and their JSON form in a document.
//!
//! **Rendering** (README, "Input: Debezium records"): timestamps are RFC 3339 UTC strings
//! (`2022-08-15T08:53:57Z`, with `.123` when the fraction is whole milliseconds, `.123456`
//! otherwise), dates `YYYY-MM-DD`, times `HH:MM:SS` (or `HH:MM:SS.ffffff`), decimals exact JSON
//! numbers without exponent or trailing zeros, floats JSON numbers (non-finite ones `null`),
//! `json` columns the JSON itself. Verify compares these strings exactly.
//!
//! **Order** (README, "Product files", a relation's `order_by`: "the whole item breaks ties …
//! values order by value"): null first (values of other kinds never meet in one list: a column
//! has one type; here they order by kind in the order of [`Val`]'s variants); numbers, dates,
//! times and timestamps by value (floats by IEEE total order), strings by their UTF-8 bytes,
//! `json` values by their compact text (as serde_json writes it, fields in the order written),
//! objects field by field in output order, lists item by item (a prefix first).

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate};

use crate::json::{Dec, Json};

#[derive(Clone, Debug)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal(Dec),
    Str(String),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// A `json` column: the value, and serde_json's compact text of it (its sort key).
    Json(Json, String),
    /// A `many` relation.
    List(Vec<Val>),
    /// A document or an object item: fields in output order.
    Object(Vec<(String, Val)>),
}

impl Val {
    fn rank(&self) -> u8 {
        match self {
            Val::Null => 0,
            Val::Bool(_) => 1,
            Val::Int(_) => 2,
            Val::Float(_) => 3,
            Val::Decimal(_) => 4,
            Val::Str(_) => 5,
            Val::Date(_) => 6,
            Val::Time(_) => 7,
            Val::Timestamp(_) => 8,
            Val::Json(..) => 9,
            Val::List(_) => 10,
            Val::Object(_) => 11,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// A `json` column's value.
    pub fn json(value: Json) -> Val {
        let text = serde_json::from_str::<serde_json::Value>(&value.to_string())
            .map(|v| v.to_string())
            .unwrap_or_else(|_| value.to_string());
        Val::Json(value, text)
    }

    /// The field `name` of an object.
    pub fn field(&self, name: &str) -> Option<&Val> {
        match self {
            Val::Object(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as it appears in a document.
    pub fn to_json(&self) -> Json {
        match self {
            Val::Null => Json::Null,
            Val::Bool(b) => Json::Bool(*b),
            Val::Int(i) => Json::Number(i.to_string()),
            Val::Float(f) if f.is_finite() => Json::Number(format!("{f:?}")),
            Val::Float(_) => Json::Null,
            Val::Decimal(d) => Json::Number(d.to_plain()),
            Val::Str(s) => Json::String(s.clone()),
            Val::Date(days) => Json::String(format_date(*days)),
            Val::Time(micros) => Json::String(format_time(*micros)),
            Val::Timestamp(micros) => Json::String(format_timestamp(*micros)),
            Val::Json(json, _) => json.clone(),
            Val::List(items) => Json::Array(items.iter().map(Val::to_json).collect()),
            Val::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(n, v)| (n.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl Ord for Val {
    fn cmp(&self, other: &Val) -> Ordering {
        match (self, other) {
            (Val::Null, Val::Null) => Ordering::Equal,
            (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
            (Val::Int(a), Val::Int(b)) => a.cmp(b),
            (Val::Float(a), Val::Float(b)) => a.total_cmp(b),
            (Val::Decimal(a), Val::Decimal(b)) => a.cmp(b),
            (Val::Str(a), Val::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Val::Date(a), Val::Date(b)) => a.cmp(b),
            (Val::Time(a), Val::Time(b)) | (Val::Timestamp(a), Val::Timestamp(b)) => a.cmp(b),
            (Val::Json(_, a), Val::Json(_, b)) => a.as_bytes().cmp(b.as_bytes()),
            (Val::List(a), Val::List(b)) => a.cmp(b),
            // Items of one relation have the same field names: their values decide.
            (Val::Object(a), Val::Object(b)) => {
                a.iter().map(|(_, v)| v).cmp(b.iter().map(|(_, v)| v))
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Val {
    fn partial_cmp(&self, other: &Val) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equal when the order says so (floats by bits, decimals by value, `json` by its text).
impl PartialEq for Val {
    fn eq(&self, other: &Val) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Val {}

/// `YYYY-MM-DD` (years outside 0–9999 with a sign and as many digits as they need).
pub fn format_date(days: i32) -> String {
    match date(days) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => format!("(day {days}, out of range)"),
    }
}

/// The date `days` after 1970-01-01, if the calendar goes that far.
pub fn date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?
        .checked_add_signed(chrono::Duration::try_days(days.into())?)
}

/// `HH:MM:SS`, or `HH:MM:SS.ffffff` when there is a fraction.
pub fn format_time(micros: i64) -> String {
    let (seconds, fraction) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if fraction == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}.{fraction:06}")
    }
}

/// RFC 3339 in UTC: `2022-08-15T08:53:57Z`, with `.mmm` when the fraction is whole milliseconds
/// and `.uuuuuu` otherwise.
pub fn format_timestamp(micros: i64) -> String {
    let Some(t) = timestamp(micros) else {
        return format!("({micros} µs, out of range)");
    };
    let fraction = micros.rem_euclid(1_000_000);
    let digits = if fraction == 0 {
        String::new()
    } else if fraction % 1000 == 0 {
        format!(".{:03}", fraction / 1000)
    } else {
        format!(".{fraction:06}")
    };
    format!("{}{digits}Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// The instant `micros` after the epoch, if the calendar goes that far.
pub fn timestamp(micros: i64) -> Option<chrono::NaiveDateTime> {
    DateTime::from_timestamp_micros(micros).map(|t| t.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_render_as_the_readme_says() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_219), "2022-08-15");
        assert_eq!(format_date(-719_528), "0000-01-01");
        assert_eq!(format_date(2_932_897), "+10000-01-01");
        assert_eq!(format_time(3_723_000_000), "01:02:03");
        assert_eq!(format_time(3_723_500_000), "01:02:03.500000");
        assert_eq!(
            format_timestamp(1_660_553_637_000_000),
            "2022-08-15T08:53:57Z"
        );
        assert_eq!(
            format_timestamp(1_660_553_637_120_000),
            "2022-08-15T08:53:57.120Z"
        );
        assert_eq!(
            format_timestamp(1_660_553_637_000_001),
            "2022-08-15T08:53:57.000001Z"
        );
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn kinds_order_null_first_and_values_by_value() {
        let d = |t: &str| Val::Decimal(Dec::parse(t).unwrap());
        let mut values = vec![
            Val::Str("b".into()),
            Val::Null,
            Val::Str("B".into()),
            Val::Str("é".into()),
            Val::Str("ba".into()),
        ];
        values.sort();
        assert_eq!(
            values,
            [
                Val::Null,
                Val::Str("B".into()),
                Val::Str("b".into()),
                Val::Str("ba".into()),
                Val::Str("é".into())
            ]
        );
        assert!(d("1.5") > d("1.25") && d("1.50") == d("1.5"));
        assert!(
            Val::Float(-0.0) < Val::Float(0.0) && Val::Float(f64::NAN) > Val::Float(f64::INFINITY)
        );
        let list = |items: Vec<Val>| Val::List(items);
        assert!(list(vec![]) < list(vec![Val::Int(0)]));
        assert!(list(vec![Val::Int(1)]) > list(vec![Val::Int(0), Val::Int(5)]));
        let object = |a: Val, b: Val| Val::Object(vec![("a".into(), a), ("b".into(), b)]);
        assert!(object(Val::Int(1), Val::Null) < object(Val::Int(1), Val::Int(0)));
        assert!(Val::json(Json::Number("10".into())) < Val::json(Json::Number("9".into())));
    }
}
