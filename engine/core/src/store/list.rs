//! Listing the store: a folder's entries, or every object under it with
//! its size and age (what `engine gc` and `engine fsck` walk).

use super::{Backend, Listed, Store, StoreError};
use opendal::ErrorKind;

impl Store {
    /// Names of the entries directly under a folder (files and folders).
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let dir = if dir.ends_with('/') {
            dir.to_string()
        } else {
            format!("{dir}/")
        };
        let op = match &self.backend {
            Backend::Dal(op) => op,
            Backend::Fs(fs) => {
                return match std::fs::read_dir(fs.path(&dir)) {
                    Ok(rd) => Ok(rd
                        .filter_map(|e| {
                            e.ok().map(|e| e.file_name().to_string_lossy().into_owned())
                        })
                        .collect()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
                    Err(e) => Err(self.local_io("list", &dir, e)),
                };
            }
        };
        match op.list(&dir).await {
            Ok(entries) => Ok(entries
                .into_iter()
                .map(|e| {
                    e.path()
                        .trim_start_matches(&dir)
                        .trim_end_matches('/')
                        .to_string()
                })
                .filter(|n| !n.is_empty())
                .collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(self.io("list", &dir)(e)),
        }
    }

    /// Paths (from the store root) of every file under a folder, at any
    /// depth; none when the folder does not exist.
    pub async fn list_all(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .walk(dir, false)
            .await?
            .into_iter()
            .map(|l| l.path)
            .collect())
    }

    /// Every file under a folder, at any depth, with its size and last
    /// modification (from the listing on S3; one stat per file on fs).
    pub async fn list_all_with_meta(&self, dir: &str) -> Result<Vec<Listed>, StoreError> {
        self.walk(dir, true).await
    }

    async fn walk(&self, dir: &str, meta: bool) -> Result<Vec<Listed>, StoreError> {
        let dir = format!("{}/", dir.trim_end_matches('/'));
        let op = match &self.backend {
            Backend::Dal(op) => op,
            Backend::Fs(fs) => {
                let mut out = vec![];
                let mut todo = vec![dir.clone()];
                while let Some(d) = todo.pop() {
                    let rd = match std::fs::read_dir(fs.path(&d)) {
                        Ok(rd) => rd,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(self.local_io("list", &d, e)),
                    };
                    for e in rd {
                        let e = e.map_err(|e| self.local_io("list", &d, e))?;
                        let name = format!("{d}{}", e.file_name().to_string_lossy());
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            todo.push(format!("{name}/"));
                            continue;
                        }
                        let mut l = Listed {
                            path: name,
                            size: 0,
                            modified: None,
                        };
                        if meta {
                            match e.metadata() {
                                Ok(m) => {
                                    l.size = m.len();
                                    l.modified = m.modified().ok();
                                }
                                // Gone since the listing: not there.
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                                Err(e) => return Err(self.local_io("check", &l.path, e)),
                            }
                        }
                        out.push(l);
                    }
                }
                out.sort_by(|a, b| a.path.cmp(&b.path));
                return Ok(out);
            }
        };
        let entries = match op.list_with(&dir).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.io("list", &dir)(e)),
        };
        let mut out = vec![];
        for e in entries {
            let path = e.path().trim_start_matches('/').to_string();
            if path.ends_with('/') {
                continue;
            }
            let m = e.metadata();
            let mut l = Listed {
                path,
                size: m.content_length(),
                modified: m.last_modified().map(Into::into),
            };
            // A listing without times (not S3's) asks each object.
            if meta && l.modified.is_none() {
                match self.stat(&l.path).await? {
                    Some(found) => l = found,
                    None => continue,
                }
            }
            out.push(l);
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}
