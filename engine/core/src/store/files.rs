//! [`Files`]: an item's files by name, in as little memory as a handful of
//! entries needs.
//!
//! A collection holds one of these per item, and a map stage holds two
//! collections at once (its input and its results). As a `BTreeMap` every
//! item paid for a whole B-tree node (eleven slots, about 640 bytes) to
//! keep one or two files: 864 bytes an item in all, so a million-item map
//! stage needed 1.7 GB for its two collections alone. A sorted `Vec`
//! sized to its entries costs 64 bytes for one file. Items have few files,
//! so lookups by binary search and inserts that shift are cheap.
//!
//! It reads and writes the same JSON as the `BTreeMap` it replaces (an
//! object, keys in sorted order), so stored manifests and cache entries
//! keep their bytes and digests.

use super::BlobRef;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// File name -> blob, sorted by name, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Files(Vec<(String, BlobRef)>);

impl Files {
    pub fn new() -> Self {
        Files(Vec::new())
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&BlobRef> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Adds or replaces a file; returns the blob it replaced.
    pub fn insert(&mut self, name: String, blob: BlobRef) -> Option<BlobRef> {
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, blob)),
            Err(i) => {
                // Exactly one more slot: `push` would round up to four.
                self.0.reserve_exact(1);
                self.0.insert(i, (name, blob));
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<BlobRef> {
        self.find(name).ok().map(|i| self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(name, blob)` in name order, like `BTreeMap::iter`.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &BlobRef)> + Clone {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> + Clone {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &BlobRef> + Clone {
        self.0.iter().map(|(_, v)| v)
    }

    /// Builds from entries in any order; a later duplicate name wins, as
    /// with `BTreeMap::insert`.
    fn from_entries(mut v: Vec<(String, BlobRef)>) -> Self {
        // Stable, so equal names keep their order and the last one is kept.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, BlobRef)> = Vec::with_capacity(v.len());
        for e in v {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => out.push(e),
            }
        }
        out.shrink_to_fit();
        Files(out)
    }
}

/// `files["name"]` and `files[&name]`, as with a `BTreeMap`.
impl<Q: AsRef<str> + ?Sized> std::ops::Index<&Q> for Files {
    type Output = BlobRef;
    fn index(&self, name: &Q) -> &BlobRef {
        let name = name.as_ref();
        self.get(name)
            .unwrap_or_else(|| panic!("no file `{name}` in this item"))
    }
}

impl FromIterator<(String, BlobRef)> for Files {
    fn from_iter<I: IntoIterator<Item = (String, BlobRef)>>(it: I) -> Self {
        Files::from_entries(it.into_iter().collect())
    }
}

impl From<BTreeMap<String, BlobRef>> for Files {
    fn from(m: BTreeMap<String, BlobRef>) -> Self {
        // Already sorted and unique.
        let mut v: Vec<_> = m.into_iter().collect();
        v.shrink_to_fit();
        Files(v)
    }
}

impl<const N: usize> From<[(String, BlobRef); N]> for Files {
    fn from(a: [(String, BlobRef); N]) -> Self {
        Files::from_entries(a.into())
    }
}

impl From<Files> for BTreeMap<String, BlobRef> {
    fn from(f: Files) -> Self {
        f.0.into_iter().collect()
    }
}

impl IntoIterator for Files {
    type Item = (String, BlobRef);
    type IntoIter = std::vec::IntoIter<(String, BlobRef)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Files {
    type Item = (&'a String, &'a BlobRef);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, BlobRef)>,
        fn(&'a (String, BlobRef)) -> (&'a String, &'a BlobRef),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for Files {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Files {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Files;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of file names to blobs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Files, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(64));
                while let Some(e) = a.next_entry::<String, BlobRef>()? {
                    v.push(e);
                }
                Ok(Files::from_entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn blob(s: &str, size: u64) -> BlobRef {
        BlobRef {
            digest: Digest::of(s.as_bytes()),
            size,
        }
    }

    #[test]
    fn reads_and_writes_the_json_of_the_btreemap_it_replaces() {
        let mut m = BTreeMap::new();
        for (i, name) in ["b.txt", "a/c.bin", "z", "a.txt", "ä"].iter().enumerate() {
            m.insert(name.to_string(), blob(name, i as u64));
        }
        let mut f = Files::new();
        for (k, v) in m.clone().into_iter().rev() {
            f.insert(k, v);
        }
        let want = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::to_string(&f).unwrap(), want);
        let back: Files = serde_json::from_str(&want).unwrap();
        assert_eq!(back, f);
        assert_eq!(BTreeMap::from(back), m);
        assert_eq!(f.keys().collect::<Vec<_>>(), m.keys().collect::<Vec<_>>());
        assert_eq!(f["z"], m["z"]);
        assert_eq!(serde_json::to_string(&Files::new()).unwrap(), "{}");
    }

    #[test]
    fn a_later_duplicate_wins_as_with_a_btreemap() {
        let back: Files = serde_json::from_str(&format!(
            r#"{{"x":{},"x":{}}}"#,
            serde_json::to_string(&blob("1", 1)).unwrap(),
            serde_json::to_string(&blob("2", 2)).unwrap()
        ))
        .unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back["x"].size, 2);
        let mut f = Files::new();
        assert_eq!(f.insert("x".into(), blob("1", 1)), None);
        assert_eq!(f.insert("x".into(), blob("2", 2)).map(|b| b.size), Some(1));
        assert_eq!(f.remove("x").map(|b| b.size), Some(2));
        assert!(f.is_empty());
    }

    #[test]
    fn holds_no_spare_slots() {
        let mut f = Files::new();
        f.insert("data.txt".into(), blob("d", 1));
        assert_eq!(f.0.capacity(), 1);
        let back: Files = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back.0.capacity(), 1);
    }
}
