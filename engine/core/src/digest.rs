//! Content digests: blake3, hex-encoded.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A blake3 digest in lowercase hex (64 characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(blake3::hash(bytes).to_hex().to_string())
    }

    pub fn from_hasher(h: &blake3::Hasher) -> Digest {
        Digest(h.finalize().to_hex().to_string())
    }

    /// Parses a full hex digest; `None` when it is not 64 hex characters.
    pub fn parse(s: &str) -> Option<Digest> {
        (s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Digest(s.to_string()))
    }

    /// A git blob id standing in for a content digest (`git-blob:ID`), for
    /// dependency files a clean repository already names by content.
    pub fn git_blob(id: &str) -> Digest {
        Digest(format!("git-blob:{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters, for display.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JSON document as dotted keys (`train.lr`): objects are walked, arrays
/// and scalars (and empty objects) are leaves; a bare scalar has no key.
pub fn flatten_json(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut std::collections::BTreeMap<String, serde_json::Value>,
) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.to_string(), v.clone());
        }
        _ => {}
    }
}

/// JSON with object keys sorted at every level, so equal values hash equal
/// whatever order they were written in.
pub fn canonical_json(v: &serde_json::Value) -> String {
    if *MAPS_SORTED {
        return serde_json::to_string(v).expect("JSON values always serialise");
    }
    sorted_json(v)
}

/// Whether `serde_json`'s maps keep their keys sorted: they are B-trees
/// unless a crate in the build turns on its `preserve_order` feature.
/// Then every value is already canonical, and [`canonical_json`] writes it
/// as it is, without the sorted copy [`sorted_json`] makes (a tenth of
/// deciding each task of a no-op rerun).
static MAPS_SORTED: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
    let mut m = serde_json::Map::new();
    m.insert("b".into(), serde_json::Value::Null);
    m.insert("a".into(), serde_json::Value::Null);
    m.keys().next().is_some_and(|k| k == "a")
});

/// [`canonical_json`] for maps that keep insertion order: a copy with
/// the keys of every object sorted.
fn sorted_json(v: &serde_json::Value) -> String {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sort(v)).expect("JSON values always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level_whatever_the_maps_keep() {
        let a: serde_json::Value = serde_json::from_str(
            r#"{"z": 1, "a": {"y": [{"d": 1, "c": 2}], "b": null}, "m": "x"}"#,
        )
        .unwrap();
        let b: serde_json::Value = serde_json::from_str(
            r#"{"m": "x", "a": {"b": null, "y": [{"c": 2, "d": 1}]}, "z": 1}"#,
        )
        .unwrap();
        let want = r#"{"a":{"b":null,"y":[{"c":2,"d":1}]},"m":"x","z":1}"#;
        assert_eq!(canonical_json(&a), want);
        assert_eq!(canonical_json(&b), want);
        // The copy made where maps keep insertion order writes the same.
        assert_eq!(sorted_json(&a), want);
        assert_eq!(sorted_json(&b), want);
    }
}
