//! The standalone source: a folder of ordinary Kubernetes manifests, loaded and watched.
//!
//! [`load_dir`] reads every `*.yaml`, `*.yml` and `*.json` file under a folder (recursively, in
//! path order, skipping hidden entries and editor temp files), the way `kubectl apply -R -f`
//! would: multi-document YAML, `kind: List` expanded, `metadata.namespace` defaulted to
//! `default`, a Secret's `stringData` merged into `data`. Objects of kinds sluice does not use
//! are counted and otherwise ignored.
//!
//! Nothing in the folder makes the whole load fail: a file or document that cannot be used is
//! reported as a [`SourceError`] naming its file and line, and everything else still loads.
//!
//! [`watch`] does the same and then reloads after every change, debounced, delivering each
//! fresh [`Loaded`] on a channel.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use notify::Watcher as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_saphyr::{MessageFormatter as _, Spanned};

use super::ClusterState;

/// Namespace given to namespaced objects that do not name one, as `kubectl apply` does.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Longest a burst of changes may postpone a reload, however long the burst goes on.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Files larger than this are reported instead of read (they cannot be sensible manifests).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How deeply `kind: List` objects may nest inside each other.
const MAX_LIST_DEPTH: usize = 8;

/// Capacity of the channel [`watch`] delivers on.
const CHANNEL_CAPACITY: usize = 4;

/// A problem with one file or one object of the manifest folder.
///
/// Displays as `path:line: message` (or `path: message` when no line is known); `line` is
/// 1-based and counts from the start of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// The file (or, for folder-level problems, the folder).
    pub path: PathBuf,
    /// 1-based line in the file, when known.
    pub line: Option<u64>,
    /// What is wrong, on one line.
    pub message: String,
}

impl SourceError {
    fn new(path: &Path, line: Option<u64>, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path.display(), line, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for SourceError {}

/// The result of reading a manifest folder once.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Every usable object of a kind sluice reads.
    pub state: ClusterState,
    /// Every file, document or object that could not be used, in path order.
    pub errors: Vec<SourceError>,
    /// Number of manifest files read (including ones with errors).
    pub files: usize,
    /// Number of well-formed objects of kinds sluice does not use (ConfigMaps, Deployments...).
    pub ignored: usize,
}

/// Reads every manifest under `dir` (see the [module documentation](self)).
///
/// Never fails as a whole: problems, including an unreadable `dir`, are listed in
/// [`Loaded::errors`].
pub fn load_dir(dir: &Path) -> Loaded {
    let mut loader = Loader::default();
    let files = collect_files(dir, &mut loader.loaded.errors);
    loader.loaded.files = files.len();
    for path in &files {
        loader.load_file(path);
    }
    loader.loaded
}

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

/// The watch thread: initial load, then one reload per debounced burst of relevant events.
fn reload_loop(
    dir: &Path,
    debounce: Duration,
    events: &std_mpsc::Receiver<notify::Result<notify::Event>>,
    out: &tokio::sync::mpsc::Sender<Loaded>,
) {
    if out.blocking_send(load_dir(dir)).is_err() {
        return;
    }
    loop {
        // Sleep until the first relevant event of a burst.
        loop {
            match events.recv() {
                Ok(event) if is_relevant(dir, &event) => break,
                Ok(_) => {}
                Err(_) => return,
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
        let started = Instant::now();
        let loaded = load_dir(dir);
        tracing::debug!(
            dir = %dir.display(),
            objects = loaded.state.len(),
            errors = loaded.errors.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "manifests reloaded"
        );
        if out.blocking_send(loaded).is_err() {
            return;
        }
    }
}

/// Whether a file-system event may change what [`load_dir`] returns.
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

/// Whether a file name is one [`load_dir`] reads.
fn is_manifest_name(name: &str) -> bool {
    if name.starts_with('.') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| lower.len() > ext.len() && lower.ends_with(ext))
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"))
}

/// All manifest files under `dir`, sorted by path. Follows symlinks (ConfigMap volumes are
/// made of them), visiting every real folder once.
fn collect_files(dir: &Path, errors: &mut Vec<SourceError>) -> Vec<PathBuf> {
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

/// Where an object came from, for duplicate reports.
#[derive(Clone, Debug)]
struct Origin {
    path: PathBuf,
    line: Option<u64>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.path.display(), line),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// A parse failure, before it is attached to a file.
struct Failure {
    line: Option<u64>,
    message: String,
}

/// `apiVersion` and `kind` of a document, with where they are.
struct TypeInfo {
    api_version: Option<(String, Option<u64>)>,
    kind: Option<(String, Option<u64>)>,
}

#[derive(Deserialize)]
struct YamlTypeMeta {
    #[serde(rename = "apiVersion")]
    api_version: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct JsonTypeMeta {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Deserialize)]
struct List<T> {
    items: Option<Vec<T>>,
}

/// One `kind: List` item, as a generic value.
struct Item {
    value: serde_json::Value,
    line: Option<u64>,
}

/// Something an object can be parsed from: a YAML document, a JSON file, a List item.
trait Input {
    /// The line the object starts on.
    fn line(&self) -> Option<u64>;
    /// Prefix for messages (names the List item).
    fn label(&self) -> &str {
        ""
    }
    fn parse<T: DeserializeOwned>(&self) -> Result<T, Failure>;
    fn items(&self) -> Result<Vec<Item>, Failure>;
}

/// One YAML document: its text and where it sits in the file.
struct YamlDoc<'a> {
    text: &'a str,
    /// File line of the first line of `text`.
    first_line: u64,
    /// File line of the first line with content.
    start_line: u64,
}

impl YamlDoc<'_> {
    fn file_line(&self, location: serde_saphyr::Location) -> Option<u64> {
        let line = location.line();
        (line > 0).then(|| self.first_line.saturating_add(line - 1))
    }

    fn failure(&self, e: &serde_saphyr::Error) -> Failure {
        Failure {
            line: e
                .location()
                .and_then(|l| self.file_line(l))
                .or(Some(self.start_line)),
            message: yaml_message(e),
        }
    }

    fn type_info(&self) -> Result<Option<TypeInfo>, Failure> {
        let meta = serde_saphyr::from_str::<Option<YamlTypeMeta>>(self.text)
            .map_err(|e| self.failure(&e))?;
        Ok(meta.map(|meta| {
            let located = |s: Spanned<String>| {
                let line = self.file_line(s.referenced).or(Some(self.start_line));
                (s.value, line)
            };
            TypeInfo {
                api_version: meta.api_version.map(located),
                kind: meta.kind.map(located),
            }
        }))
    }
}

impl Input for YamlDoc<'_> {
    fn line(&self) -> Option<u64> {
        Some(self.start_line)
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_saphyr::from_str(self.text).map_err(|e| self.failure(&e))
    }

    fn items(&self) -> Result<Vec<Item>, Failure> {
        let list: List<Spanned<serde_json::Value>> =
            serde_saphyr::from_str(self.text).map_err(|e| self.failure(&e))?;
        Ok(list
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| Item {
                line: self.file_line(item.referenced).or(Some(self.start_line)),
                value: item.value,
            })
            .collect())
    }
}

/// A whole JSON file holding one object.
struct JsonDoc<'a> {
    text: &'a str,
    start_line: u64,
}

fn json_failure(e: &serde_json::Error, fallback: u64) -> Failure {
    let line = e.line() as u64;
    let message = e.to_string();
    // serde_json appends the location to its message; we report it separately.
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    Failure {
        line: Some(if line > 0 { line } else { fallback }),
        message: one_line(message),
    }
}

impl Input for JsonDoc<'_> {
    fn line(&self) -> Option<u64> {
        Some(self.start_line)
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_str(self.text).map_err(|e| json_failure(&e, self.start_line))
    }

    fn items(&self) -> Result<Vec<Item>, Failure> {
        let list: List<serde_json::Value> =
            serde_json::from_str(self.text).map_err(|e| json_failure(&e, self.start_line))?;
        Ok(list
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|value| Item {
                value,
                line: Some(self.start_line),
            })
            .collect())
    }
}

/// A `kind: List` item.
struct ItemInput<'a> {
    value: &'a serde_json::Value,
    line: Option<u64>,
    /// `items[3]: `, `items[0].items[2]: `...
    label: String,
}

impl ItemInput<'_> {
    fn type_info(&self) -> TypeInfo {
        let field = |name: &str| {
            self.value
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(|s| (s.to_owned(), self.line))
        };
        TypeInfo {
            api_version: field("apiVersion"),
            kind: field("kind"),
        }
    }
}

impl Input for ItemInput<'_> {
    fn line(&self) -> Option<u64> {
        self.line
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        T::deserialize(self.value).map_err(|e| Failure {
            line: self.line,
            message: one_line(&e.to_string()),
        })
    }

    fn items(&self) -> Result<Vec<Item>, Failure> {
        let list = List::<serde_json::Value>::deserialize(self.value).map_err(|e| Failure {
            line: self.line,
            message: one_line(&e.to_string()),
        })?;
        Ok(list
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|value| Item {
                value,
                line: self.line,
            })
            .collect())
    }
}

/// The kinds sluice reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Secret,
    List,
}

impl Kind {
    fn from_name(kind: &str) -> Option<Self> {
        Some(match kind {
            "Ingress" => Self::Ingress,
            "IngressClass" => Self::IngressClass,
            "Service" => Self::Service,
            "EndpointSlice" => Self::EndpointSlice,
            "Secret" => Self::Secret,
            "List" => Self::List,
            _ => return None,
        })
    }

    fn api_version(self) -> &'static str {
        match self {
            Self::Ingress => Ingress::API_VERSION,
            Self::IngressClass => IngressClass::API_VERSION,
            Self::Service => Service::API_VERSION,
            Self::EndpointSlice => EndpointSlice::API_VERSION,
            Self::Secret => Secret::API_VERSION,
            Self::List => "v1",
        }
    }
}

/// A kind sluice keeps in [`ClusterState`].
trait Object: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned {
    /// Whether objects live in a namespace.
    const NAMESPACED: bool = true;
    /// What `kubectl apply` / the API server would default.
    fn normalize(&mut self) {}
    fn push(self, state: &mut ClusterState);
}

impl Object for Ingress {
    fn push(self, state: &mut ClusterState) {
        state.ingresses.push(self);
    }
}

impl Object for IngressClass {
    const NAMESPACED: bool = false;
    fn push(self, state: &mut ClusterState) {
        state.ingress_classes.push(self);
    }
}

impl Object for Service {
    fn push(self, state: &mut ClusterState) {
        state.services.push(self);
    }
}

impl Object for EndpointSlice {
    fn push(self, state: &mut ClusterState) {
        state.endpoint_slices.push(self);
    }
}

impl Object for Secret {
    fn normalize(&mut self) {
        if let Some(string_data) = self.string_data.take() {
            let data = self.data.get_or_insert_with(Default::default);
            for (key, value) in string_data {
                data.insert(key, ByteString(value.into_bytes()));
            }
        }
    }

    fn push(self, state: &mut ClusterState) {
        state.secrets.push(self);
    }
}

#[derive(Default)]
struct Loader {
    loaded: Loaded,
    /// (kind, namespace, name) of every object kept so far.
    seen: HashMap<(&'static str, String, String), Origin>,
}

impl Loader {
    fn error(&mut self, path: &Path, line: Option<u64>, message: impl Into<String>) {
        self.loaded
            .errors
            .push(SourceError::new(path, line, message));
    }

    fn fail(&mut self, path: &Path, input: &impl Input, failure: Failure) {
        let message = format!("{}{}", input.label(), failure.message);
        self.error(path, failure.line, message);
    }

    fn load_file(&mut self, path: &Path) {
        let bytes = match fs::metadata(path) {
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                self.error(
                    path,
                    None,
                    format!("file larger than {MAX_FILE_BYTES} bytes"),
                );
                return;
            }
            _ => match fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) => {
                    self.error(path, None, format!("cannot read: {e}"));
                    return;
                }
            },
        };
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = 1 + valid.iter().filter(|&&b| b == b'\n').count() as u64;
                self.error(path, Some(line), "not valid UTF-8");
                return;
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        if is_json(path) {
            self.load_json(path, text);
        } else {
            for doc in split_documents(text) {
                match doc.type_info() {
                    Ok(Some(info)) => self.object(path, &doc, info, 0),
                    Ok(None) => {} // empty document
                    Err(failure) => self.fail(path, &doc, failure),
                }
            }
        }
    }

    fn load_json(&mut self, path: &Path, text: &str) {
        let Some(offset) = text.find(|c: char| !c.is_whitespace()) else {
            return; // empty file
        };
        let start_line = 1 + text[..offset].matches('\n').count() as u64;
        let doc = JsonDoc { text, start_line };
        match serde_json::from_str::<Option<JsonTypeMeta>>(text) {
            Ok(Some(meta)) => {
                let info = TypeInfo {
                    api_version: meta.api_version.map(|v| (v, Some(start_line))),
                    kind: meta.kind.map(|k| (k, Some(start_line))),
                };
                self.object(path, &doc, info, 0);
            }
            Ok(None) => {}
            Err(e) => {
                let failure = json_failure(&e, start_line);
                self.fail(path, &doc, failure);
            }
        }
    }

    /// Dispatches one object on its kind.
    fn object(&mut self, path: &Path, input: &impl Input, info: TypeInfo, depth: usize) {
        let Some((kind_name, kind_line)) = info.kind else {
            let line = info.api_version.and_then(|(_, l)| l).or(input.line());
            self.fail(
                path,
                input,
                Failure {
                    line,
                    message: "kind is missing (not a Kubernetes object?)".to_owned(),
                },
            );
            return;
        };
        let Some(kind) = Kind::from_name(&kind_name) else {
            self.loaded.ignored += 1;
            return;
        };
        let expected = kind.api_version();
        match info.api_version {
            Some((version, _)) if version == expected => {}
            Some((version, line)) => {
                let message = format!(
                    "apiVersion {version:?} is not supported for {kind_name}, expected {expected:?}"
                );
                self.fail(path, input, Failure { line, message });
                return;
            }
            None => {
                let message = format!("apiVersion is missing, expected {expected:?}");
                self.fail(
                    path,
                    input,
                    Failure {
                        line: kind_line,
                        message,
                    },
                );
                return;
            }
        }
        match kind {
            Kind::Ingress => self.typed::<Ingress>(path, input),
            Kind::IngressClass => self.typed::<IngressClass>(path, input),
            Kind::Service => self.typed::<Service>(path, input),
            Kind::EndpointSlice => self.typed::<EndpointSlice>(path, input),
            Kind::Secret => self.typed::<Secret>(path, input),
            Kind::List => self.list(path, input, depth),
        }
    }

    fn list(&mut self, path: &Path, input: &impl Input, depth: usize) {
        if depth >= MAX_LIST_DEPTH {
            let failure = Failure {
                line: input.line(),
                message: format!("Lists nested more than {MAX_LIST_DEPTH} deep"),
            };
            self.fail(path, input, failure);
            return;
        }
        let items = match input.items() {
            Ok(items) => items,
            Err(failure) => {
                self.fail(path, input, failure);
                return;
            }
        };
        for (index, item) in items.iter().enumerate() {
            let label = match input.label().strip_suffix(": ") {
                Some(outer) => format!("{outer}.items[{index}]: "),
                None => format!("items[{index}]: "),
            };
            let item_input = ItemInput {
                value: &item.value,
                line: item.line,
                label,
            };
            if item.value.is_null() {
                continue;
            }
            if !item.value.is_object() {
                let failure = Failure {
                    line: item.line,
                    message: "expected an object".to_owned(),
                };
                self.fail(path, &item_input, failure);
                continue;
            }
            let info = item_input.type_info();
            self.object(path, &item_input, info, depth + 1);
        }
    }

    fn typed<T: Object>(&mut self, path: &Path, input: &impl Input) {
        let mut object: T = match input.parse() {
            Ok(object) => object,
            Err(failure) => {
                self.fail(path, input, failure);
                return;
            }
        };
        let line = input.line();
        let meta = object.metadata_mut();
        let name = match meta.name.as_deref() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => {
                let failure = Failure {
                    line,
                    message: "metadata.name is required".to_owned(),
                };
                self.fail(path, input, failure);
                return;
            }
        };
        let namespace = if T::NAMESPACED {
            match meta.namespace.as_deref() {
                Some(namespace) if !namespace.is_empty() => namespace.to_owned(),
                _ => {
                    meta.namespace = Some(DEFAULT_NAMESPACE.to_owned());
                    DEFAULT_NAMESPACE.to_owned()
                }
            }
        } else {
            // Cluster-scoped: the API server ignores a namespace.
            meta.namespace = None;
            String::new()
        };
        object.normalize();

        let origin = Origin {
            path: path.to_path_buf(),
            line,
        };
        let key = (T::KIND, namespace, name);
        if let Some(first) = self.seen.get(&key) {
            let (kind, namespace, name) = &key;
            let what = if T::NAMESPACED {
                format!("{kind} {namespace}/{name}")
            } else {
                format!("{kind} {name}")
            };
            let failure = Failure {
                line,
                message: format!("duplicate {what}, first defined at {first}; ignored"),
            };
            self.fail(path, input, failure);
            return;
        }
        self.seen.insert(key, origin);
        object.push(&mut self.loaded.state);
    }
}

/// The message of a serde-saphyr error without its location or source snippet.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let mut inner = e;
    // `Display` renders a multi-line snippet; the formatter gives the bare message of the
    // innermost error.
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    one_line(&serde_saphyr::UserMessageFormatter.format_message(inner))
}

/// Collapses a message onto one line.
fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split(char::is_control) {
        let word = word.trim();
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Whether `line` is the document marker `marker` (`---` or `...`) at column 0.
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker).is_some_and(|rest| {
        rest.chars()
            .next()
            .is_none_or(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
    })
}

/// Whether a line (outside a marker) holds YAML content: not blank, not a comment, not a
/// directive.
fn is_content(line: &str) -> bool {
    let trimmed = line.trim_start();
    !trimmed.is_empty() && !trimmed.starts_with('#') && !line.starts_with('%')
}

/// Splits a YAML stream into its documents, each with its position in the file, so that one
/// broken document does not hide the others. Documents without content are dropped.
fn split_documents(text: &str) -> Vec<YamlDoc<'_>> {
    struct Segment {
        start: usize,
        first_line: u64,
        has_marker: bool,
        content_line: Option<u64>,
    }
    impl Segment {
        fn new(start: usize, first_line: u64) -> Self {
            Self {
                start,
                first_line,
                has_marker: false,
                content_line: None,
            }
        }
    }
    fn close<'a>(text: &'a str, segment: &Segment, end: usize, docs: &mut Vec<YamlDoc<'a>>) {
        if let (Some(start_line), Some(doc)) = (segment.content_line, text.get(segment.start..end))
        {
            docs.push(YamlDoc {
                text: doc,
                first_line: segment.first_line,
                start_line,
            });
        }
    }

    let mut docs = Vec::new();
    let mut segment = Segment::new(0, 1);
    let mut offset = 0;
    let mut line_number = 0u64;
    for line in text.split_inclusive('\n') {
        line_number += 1;
        if is_marker(line, "---") {
            // A marker starts a new document, unless everything before it in this segment is
            // comments and directives (which belong to the document it starts).
            if segment.has_marker || segment.content_line.is_some() {
                close(text, &segment, offset, &mut docs);
                segment = Segment::new(offset, line_number);
            }
            segment.has_marker = true;
            let rest = line.get(3..).unwrap_or("").trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                segment.content_line = Some(line_number); // `--- !tag`, `--- |`...
            }
        } else if is_marker(line, "...") {
            let end = offset + line.len();
            close(text, &segment, end, &mut docs);
            segment = Segment::new(end, line_number + 1);
        } else if segment.content_line.is_none() && is_content(line) {
            segment.content_line = Some(line_number);
        }
        offset += line.len();
    }
    close(text, &segment, text.len(), &mut docs);
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap();
        path
    }

    fn names<T: Metadata<Ty = ObjectMeta>>(objects: &[T]) -> Vec<String> {
        objects
            .iter()
            .map(|o| {
                let m = o.metadata();
                match &m.namespace {
                    Some(ns) => format!("{ns}/{}", m.name.clone().unwrap_or_default()),
                    None => m.name.clone().unwrap_or_default(),
                }
            })
            .collect()
    }

    fn error_strings(loaded: &Loaded, dir: &Path) -> Vec<String> {
        loaded
            .errors
            .iter()
            .map(|e| {
                let relative = SourceError {
                    path: e.path.strip_prefix(dir).unwrap_or(&e.path).to_path_buf(),
                    ..e.clone()
                };
                relative.to_string()
            })
            .collect()
    }

    const ALL_KINDS: &str = "\
# leading comment
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: sluice
spec:
  controller: example.com/sluice
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
spec:
  ingressClassName: sluice
  rules:
  - host: shop.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
--- # a comment after the marker
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
endpoints:
- addresses: [\"10.0.0.1\"]
  conditions:
    ready: true
ports:
- name: http
  port: 8080
---
apiVersion: v1
kind: Secret
metadata:
  name: tls
  namespace: shop
type: kubernetes.io/tls
data:
  tls.crt: Y2VydA==
  tls.key: a2V5
---
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: b
...
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: api
  spec:
    ports:
    - port: 8080
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: api
";

    #[test]
    fn loads_all_kinds_lists_and_ignores_others() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "all.yaml", ALL_KINDS);
        let loaded = load_dir(dir.path());
        assert_eq!(error_strings(&loaded, dir.path()), Vec::<String>::new());
        assert_eq!(loaded.files, 1);
        let state = &loaded.state;
        assert_eq!(names(&state.ingress_classes), ["sluice"]);
        assert_eq!(names(&state.ingresses), ["shop/web"]);
        assert_eq!(names(&state.services), ["shop/web", "default/api"]);
        assert_eq!(names(&state.endpoint_slices), ["shop/web-abc"]);
        assert_eq!(names(&state.secrets), ["shop/tls"]);
        assert_eq!(
            loaded.ignored, 2,
            "ConfigMap and the Deployment in the List"
        );
        let data = state.secrets[0].data.as_ref().unwrap();
        assert_eq!(data["tls.crt"].0, b"cert");
        let rules = state.ingresses[0]
            .spec
            .as_ref()
            .unwrap()
            .rules
            .as_ref()
            .unwrap();
        assert_eq!(rules[0].host.as_deref(), Some("shop.example.com"));
    }

    #[test]
    fn broken_document_is_reported_at_its_file_line_and_others_load() {
        let dir = tempfile::tempdir().unwrap();
        let text = "\
apiVersion: v1
kind: Service
metadata:
  name: before
---
apiVersion: v1
kind: Service
metadata:
  name: [broken
  namespace: x: y
---
apiVersion: v1
kind: Service
metadata:
  name: wrong-type
spec:
  ports:
  - port: eighty
---
apiVersion: v1
kind: Service
metadata:
  name: after
";
        write(dir.path(), "svc.yaml", text);
        let loaded = load_dir(dir.path());
        assert_eq!(
            names(&loaded.state.services),
            ["default/before", "default/after"]
        );
        let errors = error_strings(&loaded, dir.path());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("svc.yaml:10: "), "{errors:?}");
        assert_eq!(errors[1], "svc.yaml:18: invalid i32");
        for e in &loaded.errors {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn broken_and_list_json_files() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a-broken.json",
            "{\n  \"apiVersion\": \"v1\",\n  \"kind\": }\n",
        );
        write(
            dir.path(),
            "b-svc.json",
            r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "one"}}"#,
        );
        write(
            dir.path(),
            "c-list.json",
            r#"{"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "two"}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "three"},
                 "spec": {"ports": [{"port": "x"}]}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
            ]}"#,
        );
        write(
            dir.path(),
            "d-type.json",
            "\n{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": 5}}",
        );
        let loaded = load_dir(dir.path());
        assert_eq!(loaded.files, 4);
        assert_eq!(
            names(&loaded.state.services),
            ["default/one", "default/two"]
        );
        assert_eq!(loaded.ignored, 1);
        let errors = error_strings(&loaded, dir.path());
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("a-broken.json:3: "), "{errors:?}");
        assert!(
            errors[1].starts_with("c-list.json:1: items[1]: "),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with("d-type.json:2: invalid type"),
            "{errors:?}"
        );
    }

    #[test]
    fn wrong_or_missing_api_version_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let text = "\
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: old
---
kind: Service
metadata:
  name: no-version
---
metadata:
  name: no-kind
---
apiVersion: v1
kind: Ingress
metadata:
  name: wrong-group
";
        write(dir.path(), "x.yaml", text);
        let loaded = load_dir(dir.path());
        assert!(loaded.state.is_empty());
        assert_eq!(
            error_strings(&loaded, dir.path()),
            [
                "x.yaml:1: apiVersion \"extensions/v1beta1\" is not supported for Ingress, \
                 expected \"networking.k8s.io/v1\"",
                "x.yaml:6: apiVersion is missing, expected \"v1\"",
                "x.yaml:10: kind is missing (not a Kubernetes object?)",
                "x.yaml:13: apiVersion \"v1\" is not supported for Ingress, \
                 expected \"networking.k8s.io/v1\"",
            ]
        );
    }

    #[test]
    fn defaults_namespace_merges_string_data_and_requires_name() {
        let dir = tempfile::tempdir().unwrap();
        let text = "\
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  user: admin
  password: from-string-data
data:
  password: b2xk
  token: dG9r
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: cls
  namespace: ignored
---
apiVersion: v1
kind: Service
metadata:
  namespace: shop
spec: {}
";
        write(dir.path(), "x.yml", text);
        let loaded = load_dir(dir.path());
        let secret = &loaded.state.secrets[0];
        assert_eq!(secret.metadata.namespace.as_deref(), Some("default"));
        assert!(secret.string_data.is_none());
        let data = secret.data.as_ref().unwrap();
        assert_eq!(data["user"].0, b"admin");
        assert_eq!(data["password"].0, b"from-string-data");
        assert_eq!(data["token"].0, b"tok");
        assert_eq!(loaded.state.ingress_classes[0].metadata.namespace, None);
        assert_eq!(
            error_strings(&loaded, dir.path()),
            ["x.yml:18: metadata.name is required"]
        );
    }

    #[test]
    fn duplicates_keep_the_first_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let svc = |ns: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n{ns}");
        write(
            dir.path(),
            "b.yaml",
            &format!("# x\n\n{}", svc("  namespace: default\n")),
        );
        write(
            dir.path(),
            "a/z.yaml",
            &format!("{}\n---\n{}", svc(""), svc("")),
        );
        write(dir.path(), "c.yaml", &svc("  namespace: other\n"));
        let loaded = load_dir(dir.path());
        assert_eq!(names(&loaded.state.services), ["default/web", "other/web"]);
        assert_eq!(
            error_strings(&loaded, dir.path()),
            [
                format!(
                    "a/z.yaml:7: duplicate Service default/web, first defined at {}; ignored",
                    dir.path().join("a/z.yaml:1").display()
                ),
                format!(
                    "b.yaml:3: duplicate Service default/web, first defined at {}; ignored",
                    dir.path().join("a/z.yaml:1").display()
                ),
            ]
        );
    }

    #[test]
    fn skips_hidden_and_non_manifest_files() {
        let dir = tempfile::tempdir().unwrap();
        let svc =
            |name: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n");
        write(dir.path(), "ok.yaml", &svc("ok"));
        write(dir.path(), "sub/deeper/ok2.YML", &svc("ok2"));
        write(dir.path(), ".hidden.yaml", &svc("hidden"));
        write(dir.path(), ".git/config.yaml", &svc("git"));
        write(dir.path(), "ok.yaml~", &svc("backup"));
        write(dir.path(), ".ok.yaml.swp", &svc("swap"));
        write(dir.path(), "notes.txt", "not: [yaml");
        write(dir.path(), "README.md", "# hi");
        let loaded = load_dir(dir.path());
        assert_eq!(error_strings(&loaded, dir.path()), Vec::<String>::new());
        assert_eq!(loaded.files, 2);
        assert_eq!(names(&loaded.state.services), ["default/ok", "default/ok2"]);
    }

    #[test]
    fn missing_folder_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_dir(&dir.path().join("nope"));
        assert_eq!(loaded.errors.len(), 1);
        assert!(loaded.state.is_empty());
    }

    #[test]
    fn splits_documents_with_positions() {
        let text = "%YAML 1.2\n---\na: 1\n--- !tag\nb: 2\n...\n# c\n---\n---\n\n--- x\n...\nd: 4\n";
        let docs: Vec<_> = split_documents(text)
            .iter()
            .map(|d| (d.text, d.first_line, d.start_line))
            .collect();
        assert_eq!(
            docs,
            [
                ("%YAML 1.2\n---\na: 1\n", 1, 3),
                ("--- !tag\nb: 2\n...\n", 4, 4),
                ("--- x\n...\n", 11, 11),
                ("d: 4\n", 13, 13),
            ]
        );
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let inputs: &[&[u8]] = &[
            b"",
            b"---",
            b"- a\n- b\n",
            b"plain scalar",
            b"kind: List\napiVersion: v1\nitems: 5\n",
            b"kind: List\napiVersion: v1\nitems: [1, null, {kind: List, apiVersion: v1}]\n",
            b"\xff\xfe",
            b"a: &x [*x]\n",
            b"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
            b"\xef\xbb\xbfkind: Service\napiVersion: v1\nmetadata: {name: bom}\n",
            b"kind: Secret\napiVersion: v1\nmetadata: {name: s}\ndata: {a: '!!!'}\n",
        ];
        for (i, input) in inputs.iter().enumerate() {
            fs::write(dir.path().join(format!("{i:02}.yaml")), input).unwrap();
            fs::write(dir.path().join(format!("{i:02}.json")), input).unwrap();
        }
        let loaded = load_dir(dir.path());
        assert_eq!(names(&loaded.state.services), ["default/bom"]);
        for e in &loaded.errors {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
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
