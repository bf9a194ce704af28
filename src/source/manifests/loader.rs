//! Objects from documents: kind and apiVersion checked, namespace defaulted, Secrets'
//! `stringData` merged, each problem a [`SourceError`] at its file line.
//!
//! A file is parsed on its own into a [`FileLoad`] (its objects and problems, in file order),
//! so that the last good version of a file can be kept and reused (`folder`); [`merge`] then
//! puts the files of a folder together in path order, reporting duplicates.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;

use super::decode::{
    Failure, Input, ItemInput, JsonDoc, JsonTypeMeta, TypeInfo, json_failure, split_documents,
};
use super::files::is_json;
use super::{ClusterState, DEFAULT_NAMESPACE, Loaded, SourceError};

/// Files larger than this are reported instead of read (they cannot be sensible manifests).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How deeply `kind: List` objects may nest inside each other.
const MAX_LIST_DEPTH: usize = 8;

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
    fn wrap(self) -> Obj;
}

/// One object of a kind sluice keeps.
#[derive(Clone, Debug)]
pub(super) enum Obj {
    Ingress(Box<Ingress>),
    IngressClass(Box<IngressClass>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Secret(Box<Secret>),
}

impl Obj {
    fn push(self, state: &mut ClusterState) {
        match self {
            Obj::Ingress(o) => state.ingresses.push(*o),
            Obj::IngressClass(o) => state.ingress_classes.push(*o),
            Obj::Service(o) => state.services.push(*o),
            Obj::EndpointSlice(o) => state.endpoint_slices.push(*o),
            Obj::Secret(o) => state.secrets.push(*o),
        }
    }
}

impl Object for Ingress {
    fn wrap(self) -> Obj {
        Obj::Ingress(Box::new(self))
    }
}

impl Object for IngressClass {
    const NAMESPACED: bool = false;
    fn wrap(self) -> Obj {
        Obj::IngressClass(Box::new(self))
    }
}

impl Object for Service {
    fn wrap(self) -> Obj {
        Obj::Service(Box::new(self))
    }
}

impl Object for EndpointSlice {
    fn wrap(self) -> Obj {
        Obj::EndpointSlice(Box::new(self))
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

    fn wrap(self) -> Obj {
        Obj::Secret(Box::new(self))
    }
}

/// An object of a file with what identifies it, for duplicate reports.
#[derive(Clone, Debug)]
pub(super) struct Placed {
    object: Obj,
    /// (kind, namespace, name).
    key: (&'static str, String, String),
    namespaced: bool,
    line: Option<u64>,
    /// `items[3]: ` for a List item, else empty.
    label: String,
}

/// One object or one problem of a file, in file order.
#[derive(Clone, Debug)]
pub(super) enum Item {
    Object(Placed),
    Error(SourceError),
}

/// One file, parsed on its own.
#[derive(Clone, Debug, Default)]
pub(super) struct FileLoad {
    pub(super) items: Vec<Item>,
    /// Well-formed objects of kinds sluice does not use.
    pub(super) ignored: usize,
}

impl FileLoad {
    /// Whether any document of the file could not be used.
    pub(super) fn failed(&self) -> bool {
        self.items.iter().any(|i| matches!(i, Item::Error(_)))
    }

    /// How many objects the file holds.
    pub(super) fn objects(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, Item::Object(_)))
            .count()
    }

    /// The problems, in file order.
    pub(super) fn errors(&self) -> impl Iterator<Item = &SourceError> {
        self.items.iter().filter_map(|i| match i {
            Item::Error(e) => Some(e),
            Item::Object(_) => None,
        })
    }

    /// A load holding only one problem.
    fn error(path: &Path, line: Option<u64>, message: impl Into<String>) -> FileLoad {
        FileLoad {
            items: vec![Item::Error(SourceError::new(path, line, message))],
            ignored: 0,
        }
    }
}

/// Reads a manifest file (at most 64 MiB).
pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, FileLoad> {
    match fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_FILE_BYTES => Err(FileLoad::error(
            path,
            None,
            format!("file larger than {MAX_FILE_BYTES} bytes"),
        )),
        _ => fs::read(path).map_err(|e| FileLoad::error(path, None, format!("cannot read: {e}"))),
    }
}

/// Reads and parses one file.
pub(super) fn load_file(path: &Path) -> FileLoad {
    match read_file(path) {
        Ok(bytes) => parse_file(path, bytes),
        Err(load) => load,
    }
}

/// Parses the contents of one file.
pub(super) fn parse_file(path: &Path, bytes: Vec<u8>) -> FileLoad {
    let mut parser = FileParser {
        path,
        load: FileLoad::default(),
    };
    parser.parse(bytes);
    parser.load
}

/// Puts files together in path order: every object, except a second object with the kind,
/// namespace and name of an earlier one (reported, the first is kept); every problem.
pub(super) fn merge<'a>(
    files: impl IntoIterator<Item = (&'a Path, &'a FileLoad)>,
    loaded: &mut Loaded,
) {
    let mut seen: HashMap<(&'static str, String, String), Origin> = HashMap::new();
    for (path, file) in files {
        loaded.ignored += file.ignored;
        for item in &file.items {
            match item {
                Item::Error(e) => loaded.errors.push(e.clone()),
                Item::Object(placed) => {
                    if let Some(first) = seen.get(&placed.key) {
                        let (kind, namespace, name) = &placed.key;
                        let what = if placed.namespaced {
                            format!("{kind} {namespace}/{name}")
                        } else {
                            format!("{kind} {name}")
                        };
                        loaded.errors.push(SourceError::new(
                            path,
                            placed.line,
                            format!(
                                "{}duplicate {what}, first defined at {first}; ignored",
                                placed.label
                            ),
                        ));
                        continue;
                    }
                    seen.insert(
                        placed.key.clone(),
                        Origin {
                            path: path.to_path_buf(),
                            line: placed.line,
                        },
                    );
                    placed.object.clone().push(&mut loaded.state);
                }
            }
        }
    }
}

/// Parses one file into a [`FileLoad`].
struct FileParser<'p> {
    path: &'p Path,
    load: FileLoad,
}

impl FileParser<'_> {
    fn error(&mut self, line: Option<u64>, message: impl Into<String>) {
        self.load
            .items
            .push(Item::Error(SourceError::new(self.path, line, message)));
    }

    fn fail(&mut self, input: &impl Input, failure: Failure) {
        let message = format!("{}{}", input.label(), failure.message);
        self.error(failure.line, message);
    }

    fn parse(&mut self, bytes: Vec<u8>) {
        let path = self.path;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = 1 + valid.iter().filter(|&&b| b == b'\n').count() as u64;
                self.error(Some(line), "not valid UTF-8");
                return;
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        if is_json(path) {
            self.load_json(text);
        } else {
            for doc in split_documents(text) {
                match doc.type_info() {
                    Ok(Some(info)) => self.object(&doc, info, 0),
                    Ok(None) => {} // empty document
                    Err(failure) => self.fail(&doc, failure),
                }
            }
        }
    }

    fn load_json(&mut self, text: &str) {
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
                self.object(&doc, info, 0);
            }
            Ok(None) => {}
            Err(e) => {
                let failure = json_failure(&e, start_line);
                self.fail(&doc, failure);
            }
        }
    }

    /// Dispatches one object on its kind.
    fn object(&mut self, input: &impl Input, info: TypeInfo, depth: usize) {
        let Some((kind_name, kind_line)) = info.kind else {
            let line = info.api_version.and_then(|(_, l)| l).or(input.line());
            self.fail(
                input,
                Failure {
                    line,
                    message: "kind is missing (not a Kubernetes object?)".to_owned(),
                },
            );
            return;
        };
        let Some(kind) = Kind::from_name(&kind_name) else {
            self.load.ignored += 1;
            return;
        };
        let expected = kind.api_version();
        match info.api_version {
            Some((version, _)) if version == expected => {}
            Some((version, line)) => {
                let message = format!(
                    "apiVersion {version:?} is not supported for {kind_name}, expected {expected:?}"
                );
                self.fail(input, Failure { line, message });
                return;
            }
            None => {
                let message = format!("apiVersion is missing, expected {expected:?}");
                self.fail(
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
            Kind::Ingress => self.typed::<Ingress>(input),
            Kind::IngressClass => self.typed::<IngressClass>(input),
            Kind::Service => self.typed::<Service>(input),
            Kind::EndpointSlice => self.typed::<EndpointSlice>(input),
            Kind::Secret => self.typed::<Secret>(input),
            Kind::List => self.list(input, depth),
        }
    }

    fn list(&mut self, input: &impl Input, depth: usize) {
        if depth >= MAX_LIST_DEPTH {
            let failure = Failure {
                line: input.line(),
                message: format!("Lists nested more than {MAX_LIST_DEPTH} deep"),
            };
            self.fail(input, failure);
            return;
        }
        let items = match input.items() {
            Ok(items) => items,
            Err(failure) => {
                self.fail(input, failure);
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
                self.fail(&item_input, failure);
                continue;
            }
            let info = item_input.type_info();
            self.object(&item_input, info, depth + 1);
        }
    }

    fn typed<T: Object>(&mut self, input: &impl Input) {
        let mut object: T = match input.parse() {
            Ok(object) => object,
            Err(failure) => {
                self.fail(input, failure);
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
                self.fail(input, failure);
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

        self.load.items.push(Item::Object(Placed {
            object: object.wrap(),
            key: (T::KIND, namespace, name),
            namespaced: T::NAMESPACED,
            line,
            label: input.label().to_owned(),
        }));
    }
}
