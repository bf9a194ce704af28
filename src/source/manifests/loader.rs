//! Objects from documents: kind and apiVersion checked, namespace defaulted, Secrets'
//! `stringData` merged, duplicates reported, each problem a [`SourceError`] at its file line.

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
pub(super) struct Loader {
    /// What was loaded so far.
    pub(super) loaded: Loaded,
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

    pub(super) fn load_file(&mut self, path: &Path) {
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
