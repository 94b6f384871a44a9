//! The two stage contexts. Both deref to [`StageEnv`] for everything they
//! share; what they add is where their results go: a task's named outputs
//! and values, an item's files and metadata.

use super::{OutputDecl, StageEnv, StageError};
use crate::store::{ArtifactKind, BlobRef, Files, Item, Manifest, check_rel_path};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::Path;

/// What a task gets: its [`StageEnv`], its matrix values and attempt
/// number, and the outputs it declared.
pub struct TaskCtx {
    pub(crate) env: StageEnv,
    pub(crate) matrix: BTreeMap<String, Value>,
    pub(crate) declared: Vec<OutputDecl>,
    pub(crate) outputs: BTreeMap<String, Manifest>,
    pub(crate) values: BTreeMap<String, Value>,
    pub(crate) attempt: u32,
    /// Hashes of the item keys in each collection output, so `add_item`
    /// finds a duplicate key without a scan: scanning made a million
    /// `add_item` calls quadratic (5 * 10^11 key comparisons).
    item_keys: BTreeMap<String, std::collections::HashSet<u64>>,
}

impl Deref for TaskCtx {
    type Target = StageEnv;
    fn deref(&self) -> &StageEnv {
        &self.env
    }
}

impl TaskCtx {
    pub(crate) fn new(
        env: StageEnv,
        matrix: BTreeMap<String, Value>,
        declared: Vec<OutputDecl>,
        attempt: u32,
    ) -> Self {
        TaskCtx {
            env,
            matrix,
            declared,
            outputs: BTreeMap::new(),
            values: BTreeMap::new(),
            attempt,
            item_keys: BTreeMap::new(),
        }
    }
    pub fn env(&self) -> &StageEnv {
        &self.env
    }
    /// Matrix values of this task (empty without a matrix).
    pub fn matrix(&self) -> &BTreeMap<String, Value> {
        &self.matrix
    }
    /// 1 for the first attempt, 2 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    fn output_mut(
        &mut self,
        output: &str,
        kind: ArtifactKind,
    ) -> Result<&mut Manifest, StageError> {
        let Some(decl) = self.declared.iter().find(|d| d.name == output) else {
            let names: Vec<&str> = self.declared.iter().map(|d| d.name.as_str()).collect();
            return Err(StageError::msg(format!(
                "task `{}` wrote output `{output}`, which the stage does not declare (declared: {})",
                self.env.task,
                names.join(", ")
            )));
        };
        if decl.kind != kind {
            return Err(StageError::msg(format!(
                "output `{output}` of task `{}` is a {:?}, not a {kind:?}",
                self.env.task, decl.kind
            )));
        }
        Ok(self
            .outputs
            .entry(output.into())
            .or_insert_with(|| Manifest {
                kind,
                ..Default::default()
            }))
    }

    /// Stores bytes as file `name` of artifact output `output`.
    pub async fn put_file(
        &mut self,
        output: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<BlobRef, StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        let blob = self.env.store.put_blob(bytes).await?;
        self.attach_file(output, name, blob.clone())?;
        Ok(blob)
    }

    /// Stores a local file as file `name` of artifact output `output`.
    pub async fn put_file_from(
        &mut self,
        output: &str,
        name: &str,
        path: &Path,
    ) -> Result<BlobRef, StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        let blob = self.env.store.put_blob_file(path).await?;
        self.attach_file(output, name, blob.clone())?;
        Ok(blob)
    }

    /// Adds a blob already in the store (an input's file) as file `name` of
    /// artifact output `output`, without reading or writing its bytes.
    pub fn attach_file(
        &mut self,
        output: &str,
        name: &str,
        blob: BlobRef,
    ) -> Result<(), StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        self.output_mut(output, ArtifactKind::Artifact)?
            .files
            .insert(name.into(), blob);
        Ok(())
    }

    /// Appends an item to collection output `output`.
    pub fn add_item(&mut self, output: &str, item: Item) -> Result<(), StageError> {
        check_rel_path(&item.key).map_err(|m| StageError::msg(format!("item key: {m}")))?;
        for name in item.files.keys() {
            check_rel_path(name).map_err(StageError::msg)?;
        }
        let hash = |key: &str| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key)
        };
        self.output_mut(output, ArtifactKind::Collection)?;
        let m = self.outputs.get_mut(output).expect("made by output_mut");
        let keys = self
            .item_keys
            .entry(output.into())
            // Also after `set_output`, which drops the output's hashes.
            .or_insert_with(|| m.items.iter().map(|i| hash(&i.key)).collect());
        // A hash seen before is a duplicate key or (rarely) a collision:
        // only then are the keys compared.
        if !keys.insert(hash(&item.key)) && m.items.iter().any(|i| i.key == item.key) {
            return Err(StageError::msg(format!(
                "collection `{output}` already has an item `{}`",
                item.key
            )));
        }
        m.items.push(item);
        Ok(())
    }

    /// Sets an output to an existing manifest (e.g. one read from the store
    /// by ref); its digest stays the same.
    pub fn set_output(&mut self, output: &str, manifest: Manifest) {
        self.item_keys.remove(output);
        self.outputs.insert(output.into(), manifest);
    }

    /// Sets the small JSON metadata of an output (metrics, counts).
    pub fn set_meta(&mut self, output: &str, meta: Value) -> Result<(), StageError> {
        let kind = self
            .declared
            .iter()
            .find(|d| d.name == output)
            .map(|d| d.kind)
            .unwrap_or_default();
        self.output_mut(output, kind)?.meta = meta;
        Ok(())
    }

    /// Sets a value downstream `when:` expressions can read as `stage.key`.
    pub fn set_value(&mut self, key: &str, value: Value) {
        self.values.insert(key.into(), value);
    }
}

/// What one item of a map stage gets: its [`StageEnv`] and the files and
/// metadata of its output.
pub struct ItemCtx {
    pub(crate) env: StageEnv,
    pub(crate) files: Files,
    pub(crate) meta: Value,
}

impl Deref for ItemCtx {
    type Target = StageEnv;
    fn deref(&self) -> &StageEnv {
        &self.env
    }
}

impl ItemCtx {
    pub(crate) fn new(env: StageEnv) -> Self {
        ItemCtx {
            env,
            files: Files::new(),
            meta: Value::Null,
        }
    }
    pub fn env(&self) -> &StageEnv {
        &self.env
    }
    /// Stores bytes as file `name` of this item's output.
    pub async fn put_file(&mut self, name: &str, bytes: Vec<u8>) -> Result<BlobRef, StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        let blob = self.env.store.put_blob(bytes).await?;
        self.files.insert(name.into(), blob.clone());
        Ok(blob)
    }
    pub async fn put_file_from(&mut self, name: &str, path: &Path) -> Result<BlobRef, StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        let blob = self.env.store.put_blob_file(path).await?;
        self.files.insert(name.into(), blob.clone());
        Ok(blob)
    }
    /// Keeps an existing blob (e.g. an input file) as file `name` of this
    /// item's output, without copying it.
    pub fn attach_file(&mut self, name: &str, blob: BlobRef) -> Result<(), StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        self.files.insert(name.into(), blob);
        Ok(())
    }
    /// Sets this item's output metadata.
    pub fn set_meta(&mut self, meta: Value) {
        self.meta = meta;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::OutputDecl;

    fn ctx(dir: &Path) -> TaskCtx {
        let store = crate::store::Store::open("memory://ctx-tests", dir).unwrap();
        let env = StageEnv::new(
            store,
            "t",
            Default::default(),
            crate::stage::Log::new("t", Default::default()),
            Default::default(),
            dir.join("scratch"),
            1,
        );
        TaskCtx::new(
            env,
            BTreeMap::new(),
            vec![OutputDecl::collection("items")],
            1,
        )
    }

    fn item(key: &str) -> Item {
        Item {
            key: key.into(),
            files: Files::new(),
            meta: Value::Null,
        }
    }

    #[test]
    fn add_item_refuses_a_key_twice_also_after_set_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ctx(dir.path());
        for i in 0..1000 {
            c.add_item("items", item(&format!("k{i}"))).unwrap();
        }
        let e = c.add_item("items", item("k500")).unwrap_err().to_string();
        assert!(e.contains("already has an item `k500`"), "{e}");
        assert_eq!(c.outputs["items"].items.len(), 1000);
        // A manifest set whole: its keys count too.
        c.set_output(
            "items",
            Manifest {
                kind: ArtifactKind::Collection,
                items: vec![item("a"), item("b")],
                ..Default::default()
            },
        );
        assert!(c.add_item("items", item("b")).is_err());
        c.add_item("items", item("k500")).unwrap();
        assert_eq!(c.outputs["items"].items.len(), 3);
    }
}
