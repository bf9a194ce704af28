//! Watching a manifest folder: a reload after every debounced burst of relevant changes.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::Watcher as _;

use super::files::is_manifest_name;
use super::{Folder, Loaded, Reload, SourceError};

/// Longest a burst of changes may postpone a reload, however long the burst goes on.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Capacity of the channel [`watch`] delivers on.
const CHANNEL_CAPACITY: usize = 4;

/// A running watch of a manifest folder, started by [`watch`].
///
/// Dropping it stops watching (the background thread ends at its next wake-up).
#[derive(Debug)]
pub struct ManifestWatch {
    /// A fresh [`Loaded`] once at start, then after every (debounced) burst of changes.
    pub rx: tokio::sync::mpsc::Receiver<Loaded>,
    /// Keeps the file-system watch alive; dropping it closes the event channel, which ends the
    /// reload thread.
    _watcher: notify::RecommendedWatcher,
}

/// Watches `dir` recursively and delivers a fresh [`Loaded`] at start and after every change.
///
/// Changes are debounced: a reload happens once `debounce` has passed without a further
/// relevant event, but never later than one second after the first event of a burst. Events
/// that only concern ignored files (hidden files, non-manifest names, editor temp files) do not
/// cause reloads; files in new subfolders, deleted files, renames into place (how many editors
/// save) and Kubernetes ConfigMap volume updates (`..data` symlink swaps) do.
///
/// Loading runs on a dedicated thread, never on a tokio worker. Fails only when the watch
/// cannot be set up (`dir` missing, inotify limits reached, no thread available).
pub fn watch(dir: PathBuf, debounce: Duration) -> Result<ManifestWatch, SourceError> {
    let (event_tx, event_rx) = std_mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |event| {
        // The receiving thread is gone only when the watch is being dropped.
        let _ = event_tx.send(event);
    })
    .map_err(|e| SourceError::new(&dir, None, format!("cannot watch: {e}")))?;
    watcher
        .watch(&dir, notify::RecursiveMode::Recursive)
        .map_err(|e| SourceError::new(&dir, None, format!("cannot watch: {e}")))?;

    let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CAPACITY);
    let thread_dir = dir.clone();
    std::thread::Builder::new()
        .name("sluice-manifests".to_owned())
        .spawn(move || reload_loop(&thread_dir, debounce, &event_rx, &tx))
        .map_err(|e| SourceError::new(&dir, None, format!("cannot start watch thread: {e}")))?;

    Ok(ManifestWatch {
        rx,
        _watcher: watcher,
    })
}

/// The watch thread: initial load, then one reload per debounced burst of relevant events,
/// and one more a debounce after a reload that found a file failing or being written.
fn reload_loop(
    dir: &Path,
    debounce: Duration,
    events: &std_mpsc::Receiver<notify::Result<notify::Event>>,
    out: &tokio::sync::mpsc::Sender<Loaded>,
) {
    let mut folder = Folder::new(dir);
    // The first state waits (at most MAX_DELAY) for files that are being written, so that
    // the first configuration served is not missing one.
    let started = Instant::now();
    let mut reload = folder.load();
    while reload.retry && started.elapsed() < MAX_DELAY {
        std::thread::sleep(debounce);
        reload = folder.load();
    }
    let mut retry = reload.retry;
    if !publish(dir, reload, out) {
        return;
    }
    loop {
        // Sleep until the first relevant event of a burst, or a debounce when a file has to
        // be read again.
        loop {
            let event = if retry {
                match events.recv_timeout(debounce) {
                    Ok(event) => event,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match events.recv() {
                    Ok(event) => event,
                    Err(_) => return,
                }
            };
            if is_relevant(dir, &event) {
                break;
            }
        }
        let first = Instant::now();
        let hard_deadline = first.checked_add(MAX_DELAY).unwrap_or(first);
        let mut quiet_deadline = first.checked_add(debounce).unwrap_or(hard_deadline);
        // Then until the burst is over: `debounce` without relevant events, or the hard cap.
        loop {
            let until = quiet_deadline.min(hard_deadline);
            let now = Instant::now();
            if now >= until {
                break;
            }
            match events.recv_timeout(until - now) {
                Ok(event) => {
                    if is_relevant(dir, &event) {
                        let now = Instant::now();
                        quiet_deadline = now.checked_add(debounce).unwrap_or(hard_deadline);
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        let reload = folder.load();
        retry = reload.retry;
        if !publish(dir, reload, out) {
            return;
        }
    }
}

/// Delivers one reload; false when nobody listens any more.
fn publish(dir: &Path, reload: Reload, out: &tokio::sync::mpsc::Sender<Loaded>) -> bool {
    metrics::gauge!("sluice_config_last_reload_successful").set(if reload.failed {
        0.0
    } else {
        1.0
    });
    tracing::debug!(
        dir = %dir.display(),
        objects = reload.loaded.state.len(),
        errors = reload.loaded.errors.len(),
        stale = reload.stale.len(),
        retry = reload.retry,
        "manifests reloaded"
    );
    out.blocking_send(reload.loaded).is_ok()
}

/// Whether a file-system event may change what [`super::load_dir`] returns.
fn is_relevant(dir: &Path, event: &notify::Result<notify::Event>) -> bool {
    use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind};

    let event = match event {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "manifest watch error; reloading");
            return true;
        }
    };
    // Only kinds that are certainly about a regular file let us skip a non-manifest name;
    // renames and attribute changes may be about a folder.
    let known_file = match event.kind {
        // Our own reads open files and folders: never react to those.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => return false,
        EventKind::Create(CreateKind::File)
        | EventKind::Remove(RemoveKind::File)
        | EventKind::Modify(ModifyKind::Data(_)) => true,
        _ => false,
    };
    if event.need_rescan() || event.paths.is_empty() {
        return true;
    }
    event
        .paths
        .iter()
        .any(|path| is_relevant_path(dir, path, known_file))
}

fn is_relevant_path(dir: &Path, path: &Path, known_file: bool) -> bool {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    for component in relative.components() {
        if let Component::Normal(name) = component {
            let name = name.to_string_lossy();
            if name.starts_with("..") {
                // The kubelet's atomic writer (ConfigMap/Secret volumes) swaps a `..data`
                // symlink to a new `..<timestamp>` folder: the visible files change through it.
                return true;
            }
            if name.starts_with('.') {
                return false;
            }
        }
    }
    let Some(name) = relative.file_name() else {
        return true; // the folder itself
    };
    if is_manifest_name(&name.to_string_lossy()) {
        return true;
    }
    if known_file {
        return false;
    }
    // A folder (new, renamed, or a symlink to one) matters; a vanished path of unknown type
    // might have been a folder.
    fs::metadata(path).map_or(true, |m| m.is_dir())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap();
        path
    }

    /// Receives until a [`Loaded`] satisfies `accept`; fails after 5 s.
    async fn until(watch: &mut ManifestWatch, accept: impl Fn(&Loaded) -> bool) -> Loaded {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, watch.rx.recv()).await {
                Ok(Some(loaded)) if accept(&loaded) => return loaded,
                Ok(Some(_)) => {}
                Ok(None) => panic!("watch ended"),
                Err(_) => panic!("no matching Loaded within 5 s"),
            }
        }
    }

    fn has_service(loaded: &Loaded, name: &str, port: i32) -> bool {
        loaded.state.services.iter().any(|s| {
            s.metadata.name.as_deref() == Some(name)
                && s.spec
                    .as_ref()
                    .and_then(|spec| spec.ports.as_ref())
                    .is_some_and(|ports| ports.iter().any(|p| p.port == port))
        })
    }

    fn service(name: &str, port: i32) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  \
             - port: {port}\n"
        )
    }

    #[tokio::test]
    async fn watch_sees_creates_deletes_renames_and_new_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        write(&root, "first.yaml", &service("first", 80));
        let mut watch = watch(root.clone(), Duration::from_millis(50)).unwrap();

        let initial = until(&mut watch, |_| true).await;
        assert!(has_service(&initial, "first", 80));
        assert_eq!(initial.files, 1);

        // A new file.
        write(&root, "second.yaml", &service("second", 81));
        until(&mut watch, |l| has_service(l, "second", 81)).await;

        // Deleted.
        fs::remove_file(root.join("second.yaml")).unwrap();
        let loaded = until(&mut watch, |l| !has_service(l, "second", 81)).await;
        assert!(has_service(&loaded, "first", 80));

        // Saved by writing a temp file and renaming it into place.
        write(&root, ".first.yaml.tmp", &service("first", 8080));
        fs::rename(root.join(".first.yaml.tmp"), root.join("first.yaml")).unwrap();
        let loaded = until(&mut watch, |l| has_service(l, "first", 8080)).await;
        assert_eq!(loaded.state.services.len(), 1);

        // A file in a new subfolder.
        write(&root, "new/deeper/third.yml", &service("third", 82));
        until(&mut watch, |l| has_service(l, "third", 82)).await;

        // A file with a broken edit still reloads, with an error.
        write(&root, "first.yaml", "kind: [");
        let loaded = until(&mut watch, |l| !l.errors.is_empty()).await;
        assert!(has_service(&loaded, "third", 82));
    }

    #[test]
    fn watch_of_missing_folder_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(watch(dir.path().join("nope"), Duration::from_millis(50)).is_err());
    }

    #[test]
    fn relevance_of_paths() {
        let dir = Path::new("/m");
        assert!(is_relevant_path(dir, Path::new("/m/a.yaml"), true));
        assert!(is_relevant_path(dir, Path::new("/m/sub/a.JSON"), true));
        assert!(!is_relevant_path(dir, Path::new("/m/a.yaml~"), true));
        assert!(!is_relevant_path(dir, Path::new("/m/.a.yaml.swp"), true));
        assert!(!is_relevant_path(dir, Path::new("/m/.git/a.yaml"), false));
        assert!(!is_relevant_path(dir, Path::new("/m/4913"), true));
        assert!(is_relevant_path(dir, Path::new("/m/..data"), false));
        assert!(is_relevant_path(dir, Path::new("/m/gone.d"), false));
    }
}
