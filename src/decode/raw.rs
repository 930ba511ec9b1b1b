//! Borrowed JSON for the decoder: a record's objects as (key, raw value) pairs that point into
//! the record's bytes, so that only the values the decoder needs are ever parsed. No map, no
//! hashing: objects are small and looked up by a few names.
//!
//! Syntax (and UTF-8) is still checked for every byte, as when the whole record was parsed into
//! a `serde_json::Value`. Duplicate keys: the last one wins, as in `serde_json::Value`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// One JSON object: its entries in document order, duplicates included.
#[derive(Debug, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Object<'a> {
    /// The value of `key` (the last one when the key repeats).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// `{"schema": ..., "payload": ...}`: exactly these two keys (repeats aside).
    pub fn is_schema_wrapper(&self) -> bool {
        self.contains_key("schema")
            && self.contains_key("payload")
            && self.0.iter().all(|(k, _)| k == "schema" || k == "payload")
    }
}

/// A whole JSON document, parsed one level deep.
#[derive(Debug)]
pub enum Doc<'a> {
    Null,
    Object(Object<'a>),
    /// Anything else, by kind ("a number", "an array", ...).
    Other(&'static str),
}

/// Parses `bytes` one level deep; nested values stay raw (but are checked).
pub fn parse(bytes: &[u8]) -> Result<Doc<'_>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Parses a raw value one level deep.
pub fn parse_raw(raw: &RawValue) -> Result<Doc<'_>, serde_json::Error> {
    serde_json::from_str(raw.get())
}

pub fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

pub fn as_bool(raw: &RawValue) -> Option<bool> {
    match raw.get() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The text of a JSON string, borrowed when it has no escapes. `None` for other kinds.
pub fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// An object key, borrowed from the input unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Doc<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocVisitor;
        impl<'de> Visitor<'de> for DocVisitor {
            type Value = Doc<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Doc<'de>, E> {
                Ok(Doc::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Doc<'de>, E> {
                Ok(Doc::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Doc<'de>, E> {
                Ok(Doc::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Doc<'de>, E> {
                Ok(Doc::Other("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Doc<'de>, E> {
                Ok(Doc::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Doc<'de>, E> {
                Ok(Doc::Other("a number"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Doc<'de>, E> {
                Ok(Doc::Other("a string"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
                // Checked like every other nested value.
                while seq.next_element::<&'de RawValue>()?.is_some() {}
                Ok(Doc::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Key(k), v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    entries.push((k, v));
                }
                Ok(Doc::Object(Object(entries)))
            }
        }
        deserializer.deserialize_any(DocVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Object<'_> {
        match parse(text.as_bytes()).unwrap() {
            Doc::Object(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_level_deep_last_key_wins() {
        let o = object(r#"{"a": {"x": [1, 2]}, "b\u0041": "s\"t", "a": 3}"#);
        assert_eq!(o.get("a").unwrap().get(), "3");
        assert_eq!(as_str(o.get("bA").unwrap()).unwrap(), "s\"t");
        assert!(o.get("x").is_none());
        assert!(!o.is_schema_wrapper());
        assert!(object(r#"{"schema": 1, "payload": 2, "schema": 3}"#).is_schema_wrapper());
        assert!(!object(r#"{"schema": 1, "payload": 2, "extra": 3}"#).is_schema_wrapper());
    }

    #[test]
    fn kinds_and_errors() {
        assert!(matches!(parse(b" null "), Ok(Doc::Null)));
        assert!(matches!(parse(b"[1, {}]"), Ok(Doc::Other("an array"))));
        assert!(matches!(parse(b"12.5"), Ok(Doc::Other("a number"))));
        assert!(parse(br#"{"a": [1, }"#).is_err());
        assert!(parse(b"{\"a\": \"\xff\"}").is_err());
        assert!(parse(br#"{"a": 1} x"#).is_err());
    }
}
