//! A request's reference to an entity, as the caller gave it.
//!
//! Callers name entities either `{"type": T, "id": I}` or `"T::\"i\""`, or
//! in any other form Cedar reads. The first is by far the most common, and
//! reading it into a JSON object (a map, two keys, two values) only to take
//! the two strings out again was a tenth of a cached decision's work. So
//! that form is read into its two strings; every other form is kept as the
//! JSON it was, for Cedar's reader and its error messages.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// An entity reference of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UidRef {
    /// `{"type": T, "id": I}`.
    Parts {
        /// The entity type's name, e.g. `User`.
        ty: String,
        /// The entity id.
        id: String,
    },
    /// Any other form, as given.
    Json(Value),
}

impl UidRef {
    /// `{"type": ty, "id": id}`.
    pub fn parts(ty: impl Into<String>, id: impl Into<String>) -> Self {
        Self::Parts {
            ty: ty.into(),
            id: id.into(),
        }
    }

    /// The reference as JSON (`{"type", "id"}` for [`UidRef::Parts`]).
    pub fn to_json(&self) -> Value {
        match self {
            Self::Parts { ty, id } => serde_json::json!({"type": ty, "id": id}),
            Self::Json(value) => value.clone(),
        }
    }
}

impl From<Value> for UidRef {
    fn from(value: Value) -> Self {
        Self::Json(value)
    }
}

impl fmt::Display for UidRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parts { .. } => self.to_json().fmt(f),
            Self::Json(value) => value.fmt(f),
        }
    }
}

impl Serialize for UidRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Parts { .. } => self.to_json().serialize(serializer),
            Self::Json(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for UidRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UidVisitor)
    }
}

struct UidVisitor;

impl<'de> Visitor<'de> for UidVisitor {
    type Value = UidRef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entity reference")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UidRef, A::Error> {
        // Read as serde_json would (a repeated key keeps its last value),
        // without building the object unless the form is another one.
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(2);
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key, value)),
            }
        }
        let at = |key: &str| entries.iter().position(|(k, _)| k == key);
        if let (2, Some(t), Some(i)) = (entries.len(), at("type"), at("id"))
            && entries[t].1.is_string()
            && entries[i].1.is_string()
        {
            let mut text = |n: usize| match entries[n].1.take() {
                Value::String(s) => s,
                _ => String::new(),
            };
            return Ok(UidRef::Parts {
                ty: text(t),
                id: text(i),
            });
        }
        Ok(UidRef::Json(Value::Object(entries.into_iter().collect())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<UidRef, E> {
        Ok(UidRef::Json(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<UidRef, E> {
        Ok(UidRef::Json(Value::String(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<UidRef, E> {
        Ok(UidRef::Json(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<UidRef, E> {
        Ok(UidRef::Json(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<UidRef, E> {
        Ok(UidRef::Json(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<UidRef, E> {
        Ok(UidRef::Json(Value::from(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<UidRef, E> {
        Ok(UidRef::Json(Value::Null))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<UidRef, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(UidRef::Json(Value::Array(items)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> UidRef {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn type_and_id_in_either_order_are_read_as_parts() {
        assert_eq!(
            read(r#"{"type": "User", "id": "alice"}"#),
            UidRef::parts("User", "alice")
        );
        assert_eq!(
            read(r#"{"id": "alice", "type": "User"}"#),
            UidRef::parts("User", "alice")
        );
    }

    #[test]
    fn every_other_form_is_kept_as_the_json_serde_json_reads() {
        for text in [
            r#""User::\"alice\"""#,
            r#"{"type": "User"}"#,
            r#"{"type": "User", "id": 7}"#,
            r#"{"type": "User", "id": "a", "x": 1}"#,
            r#"{"__entity": {"type": "User", "id": "a"}}"#,
            r#"{"type": "User", "type": "Group", "id": "a", "id": "b", "x": null}"#,
            r#"[1, "a"]"#,
            "null",
            "true",
            "-3",
            "2.5",
        ] {
            let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read(text), UidRef::Json(value), "{text}");
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_serde_json_does() {
        assert_eq!(
            read(r#"{"type": "Group", "id": "a", "type": "User"}"#),
            UidRef::parts("User", "a")
        );
    }

    #[test]
    fn parts_are_shown_and_written_as_the_object() {
        let uid = UidRef::parts("User", "alice");

        assert_eq!(uid.to_json(), json!({"type": "User", "id": "alice"}));
        assert_eq!(
            serde_json::to_value(&uid).unwrap_or_default(),
            uid.to_json()
        );
        assert_eq!(uid.to_string(), uid.to_json().to_string());
    }
}
