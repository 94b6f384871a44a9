//! What the store holds: blobs named by digest, items, and manifests (an
//! artifact's files or items, whose canonical JSON's digest is the
//! artifact's version).

use super::Files;
use crate::digest::{Digest, canonical_json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A stored file: its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

/// Whether an artifact is a set of named files or a collection of items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    #[default]
    Artifact,
    Collection,
}

/// One item of a collection: a key, its files and small metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub key: String,
    #[serde(default)]
    pub files: Files,
    #[serde(default)]
    pub meta: Value,
}

impl Item {
    /// The digest of the item's key, files and metadata: what per-item
    /// caching keys on.
    pub fn digest(&self) -> Digest {
        Digest::of(self.canonical().as_bytes())
    }

    /// The item's canonical JSON: what its digest hashes, and its text in
    /// a manifest.
    pub fn canonical(&self) -> String {
        canonical_json(&serde_json::to_value(self).expect("items serialise"))
    }
}

/// A collection manifest's canonical JSON from its items' canonical JSON
/// ([`Item::canonical`]), no files and no metadata: the bytes
/// [`Manifest::canonical`] writes for the same items.
pub fn collection_canonical<S: AsRef<str>>(items: &[S]) -> String {
    let len = items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>();
    let mut out = String::with_capacity(32 + len);
    out.push('{');
    push_items(&mut out, items.iter());
    out.push_str("\"kind\":\"collection\"}");
    out
}

/// `"items":[...],` when there are items.
fn push_items(out: &mut String, items: impl ExactSizeIterator<Item = impl AsRef<str>>) {
    if items.len() == 0 {
        return;
    }
    out.push_str("\"items\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item.as_ref());
    }
    out.push_str("],");
}

/// An artifact: the manifest whose digest is the artifact's version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Manifest {
    pub kind: ArtifactKind,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, BlobRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub meta: Value,
}

impl Manifest {
    pub fn digest(&self) -> Digest {
        Digest::of(self.canonical().as_bytes())
    }

    /// The manifest's canonical JSON, which its digest hashes and the store
    /// keeps: the bytes of `canonical_json` of the whole manifest, written
    /// item by item. The whole collection as one `Value` tree, plus the
    /// sorted copy `canonical_json` makes, took several KB an item: GBs
    /// for a million-item map stage.
    pub(super) fn canonical(&self) -> String {
        let value =
            |v: Result<Value, serde_json::Error>| canonical_json(&v.expect("manifests serialise"));
        let mut out = String::from("{");
        // Top-level keys in sorted order, the empty ones skipped as
        // `Serialize` skips them: files, items, kind, meta.
        if !self.files.is_empty() {
            out.push_str("\"files\":");
            out.push_str(&value(serde_json::to_value(&self.files)));
            out.push(',');
        }
        push_items(&mut out, self.items.iter().map(Item::canonical));
        out.push_str("\"kind\":");
        out.push_str(&value(serde_json::to_value(self.kind)));
        if !self.meta.is_null() {
            out.push_str(",\"meta\":");
            out.push_str(&canonical_json(&self.meta));
        }
        out.push('}');
        out
    }

    /// Every blob the manifest lists: its files and its items' files.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobRef> {
        self.files
            .values()
            .chain(self.items.iter().flat_map(|i| i.files.values()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_written_item_by_item_has_the_bytes_of_the_whole_tree() {
        let whole = |m: &Manifest| canonical_json(&serde_json::to_value(m).unwrap());
        let blob = |s: &str| BlobRef {
            digest: Digest::of(s.as_bytes()),
            size: s.len() as u64,
        };
        let item = |key: &str, meta: Value| Item {
            key: key.into(),
            files: [
                ("b.txt".to_string(), blob(key)),
                ("a \"q\"/ä".to_string(), blob("a")),
            ]
            .into_iter()
            .collect(),
            meta,
        };
        let mut files = BTreeMap::new();
        files.insert("z.json".to_string(), blob("z"));
        files.insert("model.json".to_string(), blob("m"));
        let cases = [
            Manifest::default(),
            Manifest {
                kind: ArtifactKind::Collection,
                ..Default::default()
            },
            Manifest {
                files: files.clone(),
                meta: serde_json::json!({"z": 1, "a": {"y": [1, {"c": 2, "b": null}], "x": "é"}}),
                ..Default::default()
            },
            Manifest {
                kind: ArtifactKind::Collection,
                items: vec![
                    item("k1", Value::Null),
                    item("k0", serde_json::json!({"w": 2.5, "v": [true]})),
                    Item {
                        key: "bare".into(),
                        files: Files::new(),
                        meta: Value::Null,
                    },
                ],
                meta: serde_json::json!({"count": 3}),
                files,
            },
        ];
        let texts: Vec<String> = cases[3].items.iter().map(Item::canonical).collect();
        let bare = Manifest {
            kind: ArtifactKind::Collection,
            items: cases[3].items.clone(),
            ..Default::default()
        };
        assert_eq!(collection_canonical(&texts), whole(&bare));
        assert_eq!(collection_canonical::<String>(&[]), whole(&cases[1]));
        for m in &cases {
            assert_eq!(m.canonical(), whole(m));
            assert_eq!(m.digest(), Digest::of(whole(m).as_bytes()));
            let back: Manifest = serde_json::from_str(&m.canonical()).unwrap();
            assert_eq!(&back, m);
        }
    }
}
