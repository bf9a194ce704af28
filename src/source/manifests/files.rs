//! Which files of a folder are manifests.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::SourceError;

/// Whether a file name is one [`load_dir`] reads.
pub(super) fn is_manifest_name(name: &str) -> bool {
    if name.starts_with('.') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| lower.len() > ext.len() && lower.ends_with(ext))
}

pub(super) fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"))
}

/// All manifest files under `dir`, sorted by path. Follows symlinks (ConfigMap volumes are
/// made of them), visiting every real folder once.
pub(super) fn collect_files(dir: &Path, errors: &mut Vec<SourceError>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut visited = HashSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        if let Ok(real) = fs::canonicalize(&folder)
            && !visited.insert(real)
        {
            continue;
        }
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(SourceError::new(
                    &folder,
                    None,
                    format!("cannot read folder: {e}"),
                ));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    errors.push(SourceError::new(
                        &folder,
                        None,
                        format!("cannot read folder: {e}"),
                    ));
                    continue;
                }
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            match fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => pending.push(path),
                Ok(meta) if meta.is_file() && is_manifest_name(&name) => files.push(path),
                Ok(_) => {}
                Err(e) if is_manifest_name(&name) => {
                    errors.push(SourceError::new(&path, None, format!("cannot read: {e}")));
                }
                Err(_) => {}
            }
        }
    }
    files.sort();
    files
}
