//! A watched folder's memory between reloads: the last good version of every file.
//!
//! A live file that stops parsing (a typo, a mis-indented line) must not take its hosts down,
//! and neither may a file caught half-written (an editor saving in place, a slow copy).
//! [`Folder::load`] therefore reads every file, and for each decides ([`decide`]) whether to
//! use what it read or the last version of that file that loaded without errors:
//!
//! - a file whose size, modification time or inode changed while it was being read is being
//!   written: its last good version (if any) is used and the folder is read again after the
//!   debounce (the first load waits for it, up to a second);
//! - a file with errors that has a last good version keeps serving that version. The first
//!   time a given content fails it may still be being written, so it is read again after the
//!   debounce before the errors are reported; once the same content has failed twice, the
//!   errors are reported (with a note that the last good version is served) and
//!   [`Reload::failed`] is set;
//! - a file that now holds fewer objects than its last good version (emptied, or cut short at a
//!   document boundary), or does not end with a newline (cut short mid-line: editors and tools
//!   end files with one), is only applied once the same content has been read twice, a
//!   debounce apart;
//! - anything else (and every file without a last good version, as at start) is applied as
//!   read: its valid documents load, its broken ones are reported.
//!
//! Files are then put together in path order exactly as [`super::load_dir`] does.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::Loaded;
use super::files::collect_files;
use super::loader::{FileLoad, merge, parse_file, read_file};

/// What identifies one content of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Fingerprint> {
        let meta = fs::metadata(path).ok()?;
        Some(Fingerprint {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: inode(&meta),
        })
    }
}

#[cfg(unix)]
fn inode(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &fs::Metadata) -> u64 {
    0
}

/// One read of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Attempt {
    /// The file before the read (`None`: it could not be looked at).
    pub(super) fingerprint: Option<Fingerprint>,
    /// The fingerprint was the same after the read.
    pub(super) consistent: bool,
    /// Some document could not be used.
    pub(super) failed: bool,
    /// Objects read.
    pub(super) objects: usize,
    /// The file is empty or ends with a newline.
    pub(super) ends_with_newline: bool,
}

/// What to do with a file's new read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Use it (and, without errors, remember it as the last good version).
    Apply,
    /// Serve the last good version; read the folder again after the debounce.
    KeepAndRetry,
    /// Serve the last good version and report this read's errors.
    KeepAndReport,
}

/// The decision for a read of a file (see the module docs). `previous` is the read before
/// this one (of the last reload), `last_good_objects` the object count of the last good
/// version, if there is one.
pub(super) fn decide(
    now: &Attempt,
    previous: Option<&Attempt>,
    last_good_objects: Option<usize>,
) -> Decision {
    if !now.consistent {
        return Decision::KeepAndRetry;
    }
    let Some(good) = last_good_objects else {
        return Decision::Apply;
    };
    let suspicious = now.failed || now.objects < good || !now.ends_with_newline;
    if !suspicious {
        return Decision::Apply;
    }
    // The same content as last time: it has been there for a debounce at least.
    let settled = previous.is_some_and(|p| p.consistent && p.fingerprint == now.fingerprint);
    match (settled, now.failed) {
        (false, _) => Decision::KeepAndRetry,
        (true, true) => Decision::KeepAndReport,
        (true, false) => Decision::Apply,
    }
}

/// One file's memory.
#[derive(Debug, Default)]
struct Memory {
    /// The last version read without errors.
    last_good: Option<FileLoad>,
    /// The last read.
    previous: Option<Attempt>,
}

/// The result of [`Folder::load`].
#[derive(Debug)]
pub struct Reload {
    /// The folder's objects and the problems reported.
    pub loaded: Loaded,
    /// Some file is being written or just failed: read the folder again after the debounce.
    pub retry: bool,
    /// Some file failed to load (its errors are in `loaded.errors`): the reload did not
    /// fully succeed (`sluice_config_last_reload_successful` 0).
    pub failed: bool,
    /// Files served from their last good version.
    pub stale: Vec<PathBuf>,
}

/// A manifests folder with the last good version of each file (see the module docs).
#[derive(Debug)]
pub struct Folder {
    dir: PathBuf,
    files: HashMap<PathBuf, Memory>,
}

impl Folder {
    /// A folder with no memory yet: the first load applies every file as read.
    pub fn new(dir: impl Into<PathBuf>) -> Folder {
        Folder {
            dir: dir.into(),
            files: HashMap::new(),
        }
    }

    /// Reads the folder, keeping the last good version of files that fail or are being
    /// written.
    pub fn load(&mut self) -> Reload {
        let mut loaded = Loaded::default();
        let paths = collect_files(&self.dir, &mut loaded.errors);
        loaded.files = paths.len();
        self.files.retain(|p, _| paths.contains(p));
        let mut retry = false;
        let mut failed = false;
        let mut stale = Vec::new();
        let mut used: Vec<(PathBuf, FileLoad)> = Vec::with_capacity(paths.len());
        for path in paths {
            let before = Fingerprint::of(&path);
            let (load, ends_with_newline) = match read_file(&path) {
                Ok(bytes) => {
                    let newline = bytes.last().is_none_or(|b| *b == b'\n');
                    (parse_file(&path, bytes), newline)
                }
                Err(load) => (load, true),
            };
            let after = Fingerprint::of(&path);
            let attempt = Attempt {
                fingerprint: before,
                consistent: before.is_some() && before == after,
                failed: load.failed(),
                objects: load.objects(),
                ends_with_newline,
            };
            let memory = self.files.entry(path.clone()).or_default();
            let decision = decide(
                &attempt,
                memory.previous.as_ref(),
                memory.last_good.as_ref().map(FileLoad::objects),
            );
            memory.previous = Some(attempt);
            let chosen = match decision {
                Decision::Apply => {
                    failed |= attempt.failed;
                    if !attempt.failed {
                        memory.last_good = Some(load.clone());
                    }
                    load
                }
                Decision::KeepAndRetry => {
                    retry = true;
                    stale.push(path.clone());
                    memory.last_good.clone().unwrap_or_default()
                }
                Decision::KeepAndReport => {
                    failed = true;
                    stale.push(path.clone());
                    for e in load.errors() {
                        let mut e = e.clone();
                        e.message
                            .push_str(" (serving the last version of this file that loaded)");
                        loaded.errors.push(e);
                    }
                    memory.last_good.clone().unwrap_or_default()
                }
            };
            used.push((path, chosen));
        }
        merge(used.iter().map(|(p, l)| (p.as_path(), l)), &mut loaded);
        Reload {
            loaded,
            retry,
            failed,
            stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(len: u64, consistent: bool, failed: bool, objects: usize) -> Attempt {
        Attempt {
            fingerprint: Some(Fingerprint {
                len,
                modified: None,
                inode: 1,
            }),
            consistent,
            failed,
            objects,
            ends_with_newline: true,
        }
    }

    #[test]
    fn without_a_last_good_version_a_file_is_applied_as_read() {
        for now in [attempt(10, true, true, 0), attempt(0, true, false, 0)] {
            assert_eq!(decide(&now, None, None), Decision::Apply, "{now:?}");
        }
    }

    #[test]
    fn a_file_changing_while_read_keeps_its_last_good_version_and_is_read_again() {
        let now = attempt(10, false, false, 5);
        assert_eq!(decide(&now, Some(&now), Some(3)), Decision::KeepAndRetry);
        assert_eq!(
            decide(&now, None, None),
            Decision::KeepAndRetry,
            "new files too"
        );
    }

    #[test]
    fn a_failing_file_is_read_again_once_then_reported() {
        let broken = attempt(10, true, true, 2);
        assert_eq!(decide(&broken, None, Some(3)), Decision::KeepAndRetry);
        let older = attempt(9, true, false, 3);
        assert_eq!(
            decide(&broken, Some(&older), Some(3)),
            Decision::KeepAndRetry
        );
        assert_eq!(
            decide(&broken, Some(&broken), Some(3)),
            Decision::KeepAndReport
        );
    }

    #[test]
    fn a_file_that_lost_objects_is_applied_once_it_has_settled() {
        let emptied = attempt(0, true, false, 0);
        assert_eq!(decide(&emptied, None, Some(3)), Decision::KeepAndRetry);
        assert_eq!(decide(&emptied, Some(&emptied), Some(3)), Decision::Apply);
        // Same or more objects: at once.
        let grown = attempt(20, true, false, 4);
        assert_eq!(decide(&grown, None, Some(3)), Decision::Apply);
    }

    #[test]
    fn a_file_cut_mid_line_is_applied_once_it_has_settled() {
        let cut = Attempt {
            ends_with_newline: false,
            ..attempt(15, true, false, 3)
        };
        assert_eq!(decide(&cut, None, Some(3)), Decision::KeepAndRetry);
        assert_eq!(decide(&cut, Some(&cut), Some(3)), Decision::Apply);
    }

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    fn services(reload: &Reload) -> Vec<String> {
        let mut names: Vec<String> = reload
            .loaded
            .state
            .services
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    const TWO: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n";

    #[test]
    fn a_typo_keeps_the_last_good_objects_and_is_reported_on_the_second_read() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s.yaml", TWO);
        let mut folder = Folder::new(dir.path());
        let first = folder.load();
        assert_eq!(services(&first), ["a", "b"]);
        assert!(!first.failed && !first.retry);

        // `b` mis-indented: the document does not parse.
        write(
            dir.path(),
            "s.yaml",
            &TWO.replace("  name: b", "   name: b\n  x: ["),
        );
        let typo = folder.load();
        assert_eq!(services(&typo), ["a", "b"], "the last good version");
        assert!(typo.retry, "read again after the debounce");
        assert!(
            typo.loaded.errors.is_empty(),
            "not reported yet: {:?}",
            typo.loaded.errors
        );
        let again = folder.load();
        assert_eq!(services(&again), ["a", "b"]);
        assert!(again.failed && !again.retry);
        assert_eq!(again.loaded.errors.len(), 1, "{:?}", again.loaded.errors);
        assert!(
            again.loaded.errors[0]
                .message
                .ends_with("(serving the last version of this file that loaded)"),
            "{}",
            again.loaded.errors[0]
        );
        assert_eq!(again.stale, [dir.path().join("s.yaml")]);

        // Fixed: applied at once.
        write(dir.path(), "s.yaml", &TWO.replace("name: b", "name: c"));
        let fixed = folder.load();
        assert_eq!(services(&fixed), ["a", "c"]);
        assert!(!fixed.failed && !fixed.retry && fixed.stale.is_empty());
    }

    #[test]
    fn a_half_written_file_is_not_applied_until_complete_or_settled() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s.yaml", TWO);
        let mut folder = Folder::new(dir.path());
        folder.load();
        // Truncated to nothing (an in-place save starting), then cut mid-line.
        write(dir.path(), "s.yaml", "");
        let emptied = folder.load();
        assert_eq!(services(&emptied), ["a", "b"]);
        assert!(emptied.retry);
        write(dir.path(), "s.yaml", &TWO[..TWO.len() - 4]);
        let cut = folder.load();
        assert_eq!(services(&cut), ["a", "b"], "not the cut-short `b`");
        assert!(cut.retry);
        // The rest arrives.
        write(dir.path(), "s.yaml", &TWO.replace("name: a", "name: z"));
        assert_eq!(services(&folder.load()), ["b", "z"]);
    }

    #[test]
    fn a_new_file_with_errors_loads_its_valid_documents_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = Folder::new(dir.path());
        folder.load();
        write(
            dir.path(),
            "n.yaml",
            &TWO.replace("  name: b", "  name: [b"),
        );
        let reload = folder.load();
        assert_eq!(services(&reload), ["a"]);
        assert_eq!(reload.loaded.errors.len(), 1);
        assert!(reload.failed && !reload.retry);
    }
}
