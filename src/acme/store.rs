//! The folder store of standalone mode (`--acme-storage DIR`, default `./sluice-acme`):
//!
//! ```text
//! DIR/account.key                           the account key, PKCS#8 PEM (mode 0600)
//! DIR/certificates/<namespace>_<name>.json  one kubernetes.io/tls Secret manifest per certificate
//! ```
//!
//! Each certificate is exactly the Secret Kubernetes mode writes
//! ([`certificate_secret`](super::secrets::certificate_secret)), as JSON (which is YAML too): the
//! folder can be read by the manifests source like any other folder of manifests, and
//! copied into a cluster with `kubectl apply -f DIR/certificates`. `_` cannot appear in a
//! namespace or a Secret name, so the file name is unambiguous. Files are written to a temporary
//! name and renamed, so a reader never sees half a file; key material is created mode 0600.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;

use super::secrets::{pkcs8_from_pem, pkcs8_pem};
use crate::cluster::object_ref;
use crate::model::ObjectRef;

/// The default `--acme-storage`.
pub const DEFAULT_STORAGE: &str = "./sluice-acme";
/// The account key file.
pub const ACCOUNT_FILE: &str = "account.key";
/// The certificates folder.
pub const CERTIFICATES_DIR: &str = "certificates";

/// A file in the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("{path}: {source}", path = .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds something unusable.
    #[error("{path}: {detail}", path = .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// The folder store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderStore {
    dir: PathBuf,
}

impl FolderStore {
    /// The store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> FolderStore {
        FolderStore { dir: dir.into() }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The account key (PKCS#8 DER), if one was saved.
    pub fn load_account_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(ACCOUNT_FILE);
        let pem = match std::fs::read(&path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        pkcs8_from_pem(&pem)
            .map(Some)
            .map_err(|detail| StoreError::Invalid { path, detail })
    }

    /// Saves the account key.
    pub fn save_account_key(&self, key_pkcs8: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.dir, ACCOUNT_FILE, pkcs8_pem(key_pkcs8).as_bytes())
    }

    /// The saved account key, or a new one (saved before it is returned).
    pub fn load_or_create_account_key(&self) -> Result<Vec<u8>, StoreError> {
        if let Some(key) = self.load_account_key()? {
            return Ok(key);
        }
        let key = super::generate_account_key();
        self.save_account_key(&key)?;
        Ok(key)
    }

    /// Where the certificate Secret `secret` is kept.
    pub fn certificate_path(&self, secret: &ObjectRef) -> PathBuf {
        self.dir
            .join(CERTIFICATES_DIR)
            .join(format!("{}_{}.json", secret.namespace, secret.name))
    }

    /// Saves a certificate Secret (as built by
    /// [`certificate_secret`](super::secrets::certificate_secret)); returns its file.
    pub fn save_certificate(&self, secret: &Secret) -> Result<PathBuf, StoreError> {
        let path = self.certificate_path(&object_ref(&secret.metadata));
        let json = serde_json::to_vec_pretty(secret).map_err(|e| StoreError::Invalid {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let dir = self.dir.join(CERTIFICATES_DIR);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write_atomic(&dir, &name, &json)?;
        Ok(path)
    }

    /// Every certificate Secret saved, sorted by file name. A file that does not parse is an
    /// error naming it (nothing is skipped silently).
    pub fn load_certificates(&self) -> Result<Vec<Secret>, StoreError> {
        let dir = self.dir.join(CERTIFICATES_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path: dir, source }),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                paths.push(path);
            }
        }
        paths.sort();
        paths
            .into_iter()
            .map(|path| {
                let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
                    path,
                    detail: e.to_string(),
                })
            })
            .collect()
    }
}

/// Writes `dir/name` through a temporary file and a rename, mode 0600.
fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<(), StoreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(contents).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &target).map_err(io(&target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::Issued;
    use crate::acme::secrets::certificate_secret;

    #[test]
    fn account_key_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path().join("acme"));
        assert_eq!(store.load_account_key().unwrap(), None);
        let key = store.load_or_create_account_key().unwrap();
        assert_eq!(
            store.load_or_create_account_key().unwrap(),
            key,
            "same key again"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("acme").join(ACCOUNT_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "not readable by others: {mode:o}");
        }
        std::fs::write(dir.path().join("acme").join(ACCOUNT_FILE), "junk").unwrap();
        let e = store.load_account_key().unwrap_err().to_string();
        assert!(e.contains("account.key"), "{e}");
    }

    #[test]
    fn certificates_are_secret_manifests_the_manifests_source_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path());
        let c = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let issued = Issued {
            hosts: vec!["a.test".into()],
            chain_pem: c.cert.pem(),
            key_pem: c.key_pair.serialize_pem(),
            not_before: 0,
            not_after: 1,
        };
        let secret = certificate_secret(&ObjectRef::new("web", "a-tls"), &issued, "sluice", "u");
        let path = store.save_certificate(&secret).unwrap();
        assert!(
            path.ends_with("certificates/web_a-tls.json"),
            "{}",
            path.display()
        );
        assert_eq!(store.load_certificates().unwrap(), vec![secret.clone()]);

        let loaded = crate::source::manifests::load_dir(&dir.path().join(CERTIFICATES_DIR));
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.state.secrets, vec![secret]);

        std::fs::write(dir.path().join(CERTIFICATES_DIR).join("bad.json"), "{").unwrap();
        let e = store.load_certificates().unwrap_err().to_string();
        assert!(e.contains("bad.json"), "{e}");
    }
}
