//! `engine ref`: set, list, show and roll back named pointers to artifacts
//! (`models/basketball@production`), with the checks a model ref needs.

use crate::show::resolve_artifact;
use anyhow::{Context, Result, anyhow};
use engine_core::store::Store;

pub enum RefAction {
    Set {
        store: Store,
        name: String,
        target: String,
        note: String,
    },
    Get {
        store: Store,
        name: String,
    },
    Ls {
        store: Store,
        prefix: Option<String>,
        json: bool,
    },
    Rm {
        store: Store,
        name: String,
    },
    Log {
        store: Store,
        name: String,
    },
    Rollback {
        store: Store,
        name: String,
        /// History entry number (`#N` in `engine ref log`) or digest (prefix).
        to: Option<String>,
        note: String,
    },
}

/// `models/SPORT/...`: refuses to point a sport's model ref at a model
/// trained on another sport (read from the artifact's `model.json`).
async fn check_model_ref(store: &Store, name: &str, d: &engine_core::digest::Digest) -> Result<()> {
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() < 2 || parts[0] != "models" {
        return Ok(());
    }
    let m = store.get_manifest(d).await?;
    let Some(blob) = m.files.get("model.json") else {
        return Ok(());
    };
    let info: serde_json::Value = serde_json::from_slice(&store.get_blob(&blob.digest).await?)
        .with_context(|| format!("Failed to parse `model.json` of artifact {}", d.short()))?;
    let trained = info["trained_on"]["sport"].as_str().unwrap_or("");
    let wanted = parts[1];
    let norm = |s: &str| {
        if s == "ice-hockey" {
            "hockey".to_string()
        } else {
            s.to_string()
        }
    };
    if !trained.is_empty() && norm(trained) != norm(wanted) {
        return Err(anyhow!(
            "artifact {} is a {trained} model; `{}` is for {wanted}. Point it at a {wanted} model",
            d.short(),
            name
        ));
    }
    Ok(())
}

/// Every ref under `prefix`, by the name users type (`models/x@production`).
async fn list_refs(
    store: &Store,
    prefix: Option<&str>,
) -> Result<Vec<(String, engine_core::store::RefDoc)>> {
    Ok(store.list_refs(prefix).await?)
}

fn ref_name(name: &str) -> String {
    name.replace('@', "/")
}

pub async fn refs(a: RefAction) -> Result<()> {
    match a {
        RefAction::Set {
            store,
            name,
            target,
            note,
        } => {
            let d = resolve_artifact(&store, &target).await?;
            check_model_ref(&store, &ref_name(&name), &d).await?;
            let doc = store.set_ref(&ref_name(&name), &d, &note).await?;
            println!("{name} -> {d} ({} moves)", doc.history.len());
        }
        RefAction::Get { store, name } => {
            let doc = store
                .get_ref(&ref_name(&name))
                .await?
                .ok_or_else(|| anyhow!("no ref `{name}` in store {}", store.url()))?;
            match doc.current() {
                Some(d) => println!("{d}"),
                None => return Err(anyhow!("ref `{name}` has no target")),
            }
        }
        RefAction::Ls {
            store,
            prefix,
            json,
        } => {
            let docs = list_refs(&store, prefix.as_deref()).await?;
            if json {
                let v: Vec<serde_json::Value> = docs
                    .iter()
                    .map(|(name, d)| {
                        let last = d.history.last();
                        serde_json::json!({
                            "name": name, "target": d.current(), "moves": d.history.len(),
                            "at": last.map(|e| &e.at), "by": last.and_then(|e| e.by.as_ref()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if docs.is_empty() {
                eprintln!(
                    "no refs{} in store {}",
                    prefix.map(|p| format!(" under `{p}`")).unwrap_or_default(),
                    store.url()
                );
            } else {
                let w = docs.iter().map(|(n, _)| n.len()).max().unwrap_or(4);
                for (name, d) in &docs {
                    let last = d.history.last();
                    println!(
                        "{name:<w$}  {}  {:>3} moves  {}",
                        d.current().map(|t| t.short()).unwrap_or("-"),
                        d.history.len(),
                        last.map(|e| e.at.as_str()).unwrap_or("")
                    );
                }
            }
        }
        RefAction::Rm { store, name } => {
            let doc = store.get_ref(&ref_name(&name)).await?.ok_or_else(|| {
                anyhow!(
                    "no ref `{name}` in store {}; list refs with `engine ref ls`",
                    store.url()
                )
            })?;
            store.remove_ref(&ref_name(&name)).await?;
            println!(
                "removed {name} (was {}, {} moves); its artifacts stay until `engine gc`",
                doc.current().map(|d| d.short()).unwrap_or("-"),
                doc.history.len()
            );
        }
        RefAction::Log { store, name } => {
            let doc = store
                .get_ref(&ref_name(&name))
                .await?
                .ok_or_else(|| anyhow!("no ref `{name}` in store {}", store.url()))?;
            for (i, e) in doc.history.iter().enumerate().rev() {
                let mut extra = String::new();
                if let Some(by) = &e.by {
                    extra.push_str(&format!("  by {by}"));
                }
                if let Some(ev) = &e.evaluation {
                    extra.push_str(&format!("  evaluation {}", ev.short()));
                }
                let cur = if i + 1 == doc.history.len() {
                    " (current)"
                } else {
                    ""
                };
                println!(
                    "#{:<3} {}  {}{extra}  {}{cur}",
                    i + 1,
                    e.at,
                    e.digest.short(),
                    e.note
                );
            }
        }
        RefAction::Rollback {
            store,
            name,
            to,
            note,
        } => {
            let doc = store.get_ref(&ref_name(&name)).await?.ok_or_else(|| {
                anyhow!(
                    "no ref `{name}` in store {}; nothing to roll back",
                    store.url()
                )
            })?;
            let n = doc.history.len();
            let current = doc
                .current()
                .cloned()
                .ok_or_else(|| anyhow!("ref `{name}` has no target; nothing to roll back"))?;
            let (index, target) = match to.as_deref() {
                None => {
                    let prev = doc.history[n - 1].previous.clone().ok_or_else(|| {
                        anyhow!(
                            "`{name}` has only its first move (#1 -> {}); there is nothing before it to roll back to",
                            current.short()
                        )
                    })?;
                    let i = doc
                        .history
                        .iter()
                        .rposition(|e| e.digest == prev)
                        .map(|i| i + 1);
                    (i, prev)
                }
                Some(t) => {
                    let t = t.trim_start_matches('#');
                    if let Ok(k) = t.parse::<usize>()
                        && t.len() < 8
                    {
                        if k == 0 || k > n {
                            return Err(anyhow!(
                                "`{name}` has history entries #1 to #{n} (see `engine ref log {name}`); there is no #{k}"
                            ));
                        }
                        (Some(k), doc.history[k - 1].digest.clone())
                    } else {
                        let i = doc
                            .history
                            .iter()
                            .rposition(|e| e.digest.as_str().starts_with(t))
                            .ok_or_else(|| {
                                anyhow!(
                                    "`{t}` is not in the history of `{name}` (see `engine ref log {name}`); roll back only to a former target"
                                )
                            })?;
                        (Some(i + 1), doc.history[i].digest.clone())
                    }
                }
            };
            if target == current {
                return Err(anyhow!(
                    "`{name}` already points at {}; nothing changed",
                    current.short()
                ));
            }
            let label = index
                .map(|i| format!("#{i}"))
                .unwrap_or_else(|| target.short().to_string());
            let why = engine_core::store::RefMove {
                note: if note.is_empty() {
                    format!("rollback to {label} (from {})", current.short())
                } else {
                    format!("rollback to {label} (from {}): {note}", current.short())
                },
                ..Default::default()
            };
            let doc = store.move_ref(&ref_name(&name), &target, &why).await?;
            println!(
                "{name} -> {} (rolled back from {}; {} moves)",
                target.short(),
                current.short(),
                doc.history.len()
            );
        }
    }
    Ok(())
}
