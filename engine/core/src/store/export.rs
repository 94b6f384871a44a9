//! Copying an artifact out of the store into a local folder: what a stage
//! does with an input it hands to a tool, and what `engine get` does.

use super::{Manifest, Store, StoreError, check_rel_path};
use std::path::{Path, PathBuf};

impl Store {
    /// Writes `manifest`'s files into `dir`, and its items' files under
    /// `dir/KEY/`; returns the paths written. Every blob is verified (see
    /// [`Store::get_blob_to_file`]); a name that would leave `dir` is refused
    /// before anything is written under it.
    pub async fn export(
        &self,
        manifest: &Manifest,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, StoreError> {
        let unsafe_path = |e: super::RelPathError| StoreError::UnsafePath(e.to_string());
        let mut written = vec![];
        for (name, blob) in &manifest.files {
            check_rel_path(name).map_err(unsafe_path)?;
            let p = dir.join(name);
            self.get_blob_to_file(&blob.digest, &p).await?;
            written.push(p);
        }
        for item in &manifest.items {
            check_rel_path(&item.key).map_err(unsafe_path)?;
            for (name, blob) in &item.files {
                check_rel_path(name).map_err(unsafe_path)?;
                let p = dir.join(&item.key).join(name);
                self.get_blob_to_file(&blob.digest, &p).await?;
                written.push(p);
            }
        }
        Ok(written)
    }
}
