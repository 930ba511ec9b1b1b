//! JSON as verify reads it: a tree whose objects keep their fields in order (duplicates too) and
//! whose numbers keep their exact text, parsed by serde_json; exact decimal numbers ([`Dec`]); and
//! the one compact rendering verify prints and keys documents by.
//!
//! serde_json alone turns a fraction into an `f64`, which cannot tell `0.10000000000000001` from
//! `0.1`; its `arbitrary_precision` feature would keep the text but would also change the number
//! type of every crate built with it (the engine included). So each level is read as raw JSON
//! text (serde_json's `RawValue`, which validates it) and numbers stay text.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A parsed JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number as written (valid JSON number syntax).
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Fields in the order written, duplicates kept.
    Object(Vec<(String, Json)>),
}

/// The fields of one object, each value still raw text.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    fields.push((name, map.next_value::<&'de RawValue>()?));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Parses JSON text (UTF-8 bytes).
pub fn parse(bytes: &[u8]) -> Result<Json, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    parse_str(text)
}

/// Parses JSON text.
pub fn parse_str(text: &str) -> Result<Json, String> {
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| e.to_string())?;
    from_raw(raw)
}

fn from_raw(raw: &RawValue) -> Result<Json, String> {
    let text = raw.get();
    let error = |e: serde_json::Error| e.to_string();
    Ok(match text.as_bytes().first() {
        Some(b'{') => {
            let fields: Fields = serde_json::from_str(text).map_err(error)?;
            Json::Object(
                fields
                    .0
                    .into_iter()
                    .map(|(name, value)| Ok((name, from_raw(value)?)))
                    .collect::<Result<_, String>>()?,
            )
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(error)?;
            Json::Array(items.into_iter().map(from_raw).collect::<Result<_, _>>()?)
        }
        Some(b'"') => Json::String(serde_json::from_str(text).map_err(error)?),
        Some(b't') => Json::Bool(true),
        Some(b'f') => Json::Bool(false),
        Some(b'n') => Json::Null,
        _ => Json::Number(text.to_owned()),
    })
}

impl Json {
    /// The value of field `name` (the first, if written twice).
    pub fn get(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// Compact JSON text: numbers as written, strings escaped by [`write_string`].
    pub fn write(&self, out: &mut String) {
        self.write_numbers(out, false);
    }

    /// The form two values that mean the same JSON share: compact, numbers by their exact
    /// decimal value (`1.50` and `1.5e0` are `1.5`), fields in their order. Document keys are
    /// matched by it.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        self.write_numbers(&mut out, true);
        out
    }

    /// Compact JSON text, numbers as written or (`canonical`) by their exact decimal value.
    fn write_numbers(&self, out: &mut String, canonical: bool) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => match canonical.then(|| Dec::parse(n)).flatten() {
                Some(d) => out.push_str(&d.to_plain()),
                None => out.push_str(n),
            },
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_numbers(out, canonical);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(name, out);
                    out.push(':');
                    value.write_numbers(out, canonical);
                }
                out.push('}');
            }
        }
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        f.write_str(&out)
    }
}

/// A JSON string: `"` and `\` escaped, control characters as `\n`, `\t`, ... or `\u00XX`,
/// everything else as itself.
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Decimal exponents beyond this are refused: a number so large or small is no column value,
/// and writing it out in plain notation would take that many digits.
const MAX_EXPONENT: i64 = 4096;

/// An exact decimal number `±digits × 10^exponent`, normalised (no leading or trailing zeros in
/// `digits`; zero is empty digits, positive, exponent 0) so that equal numbers are equal values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dec {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Dec {
    /// `±digits × 10^-scale`, `digits` in base 10 (leading zeros allowed).
    pub fn from_digits(negative: bool, digits: &str, scale: i64) -> Dec {
        let trimmed = digits.trim_start_matches('0');
        let significant = trimmed.trim_end_matches('0');
        if significant.is_empty() {
            return Dec::zero();
        }
        Dec {
            negative,
            digits: significant.to_owned(),
            exponent: (trimmed.len() - significant.len()) as i64 - scale,
        }
    }

    pub fn zero() -> Dec {
        Dec {
            negative: false,
            digits: String::new(),
            exponent: 0,
        }
    }

    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (JSON numbers, and plain decimal text; a
    /// leading `+`, a leading or trailing `.` and surrounding spaces are accepted too).
    pub fn parse(text: &str) -> Option<Dec> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let exponent: i64 = match exponent {
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty()
                    || digits.len() > 9
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                e.parse().ok()?
            }
            None => 0,
        };
        let d = Dec::from_digits(
            negative,
            &format!("{int}{frac}"),
            frac.len() as i64 - exponent,
        );
        (d.exponent.abs() <= MAX_EXPONENT).then_some(d)
    }

    /// Plain notation without exponent: `-12.5`, `200000`, `0.001`, `0`.
    pub fn to_plain(&self) -> String {
        if self.digits.is_empty() {
            return "0".to_owned();
        }
        let mut out = String::new();
        if self.negative {
            out.push('-');
        }
        if self.exponent >= 0 {
            out.push_str(&self.digits);
            out.extend(std::iter::repeat_n('0', self.exponent as usize));
        } else {
            let scale = (-self.exponent) as usize;
            if self.digits.len() > scale {
                let (int, frac) = self.digits.split_at(self.digits.len() - scale);
                let _ = write!(out, "{int}.{frac}");
            } else {
                out.push_str("0.");
                out.extend(std::iter::repeat_n('0', scale - self.digits.len()));
                out.push_str(&self.digits);
            }
        }
        out
    }

    /// Whether it is a whole number.
    pub fn is_integer(&self) -> bool {
        self.exponent >= 0
    }

    /// The position of the leading digit: `digits.len() + exponent` (numbers of the same sign
    /// with a larger one are larger in magnitude).
    fn magnitude(&self) -> i64 {
        self.digits.len() as i64 + self.exponent
    }
}

impl Ord for Dec {
    fn cmp(&self, other: &Dec) -> Ordering {
        let sign = |d: &Dec| match (d.digits.is_empty(), d.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        let by_sign = sign(self).cmp(&sign(other));
        if by_sign != Ordering::Equal || self.digits.is_empty() {
            return by_sign;
        }
        // Same sign, both non-zero: compare magnitudes, then the digits from the leading one
        // (normalised digits end in a non-zero digit, so a prefix is the smaller number).
        let magnitude = self
            .magnitude()
            .cmp(&other.magnitude())
            .then_with(|| self.digits.cmp(&other.digits));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl PartialOrd for Dec {
    fn partial_cmp(&self, other: &Dec) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Dec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_plain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_text_and_fields_their_order() {
        let j = parse(br#" {"b":0.10000000000000001,"a":[1,"x\"y",null,true],"b":-2e3} "#).unwrap();
        assert_eq!(
            j.to_string(),
            r#"{"b":0.10000000000000001,"a":[1,"x\"y",null,true],"b":-2e3}"#
        );
        assert_eq!(
            j.get("b"),
            Some(&Json::Number("0.10000000000000001".into()))
        );
        assert_eq!(
            j.canonical(),
            r#"{"b":0.10000000000000001,"a":[1,"x\"y",null,true],"b":-2000}"#
        );
        assert!(parse(b"{\"a\":}").is_err());
        assert!(parse(b"[1,2").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(&[0xff]).is_err());
    }

    #[test]
    fn decimals_are_exact_and_ordered() {
        let d = |t: &str| Dec::parse(t).unwrap();
        assert_eq!(d("12.50"), d("1.25e1"));
        assert_eq!(d("200000.0000").to_plain(), "200000");
        assert_eq!(d("-0.050").to_plain(), "-0.05");
        assert_eq!(d("-0").to_plain(), "0");
        assert_eq!(d("0.001").to_plain(), "0.001");
        assert_eq!(Dec::from_digits(true, "0012300", 4).to_plain(), "-1.23");
        assert_ne!(d("0.10000000000000001"), d("0.1"));
        let mut sorted = [
            d("1.5"),
            d("-3"),
            d("0.001"),
            d("1.25"),
            d("0"),
            d("-3.5"),
            d("100"),
        ];
        sorted.sort();
        let text: Vec<String> = sorted.iter().map(Dec::to_plain).collect();
        assert_eq!(text, ["-3.5", "-3", "0", "0.001", "1.25", "1.5", "100"]);
        for bad in ["", "-", ".", "1.2.3", "abc", "1e", "0x10", "1e99999"] {
            assert!(Dec::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_controls_only() {
        let mut out = String::new();
        write_string("a\"b\\c\nd\u{1}é", &mut out);
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }
}
