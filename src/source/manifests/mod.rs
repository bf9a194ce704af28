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
//! fresh [`Loaded`] on a channel. Between reloads it keeps the last good version of every file
//! ([`Folder`]): a live file that stops parsing, or is caught half-written, keeps serving what
//! it held before.
//!
//! The parts: `files` finds the manifest files of a folder, `decode` splits and parses YAML and
//! JSON documents with file lines, `loader` turns documents into objects of [`ClusterState`],
//! `folder` remembers the last good version of each file, `watch` reloads on changes.

mod decode;
mod files;
mod folder;
mod loader;
mod watch;

use std::fmt;
use std::path::{Path, PathBuf};

use super::ClusterState;

pub use folder::{Folder, Reload};
pub use watch::{ManifestWatch, watch};

/// Namespace given to namespaced objects that do not name one, as `kubectl apply` does.
pub const DEFAULT_NAMESPACE: &str = "default";

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
    pub(crate) fn new(path: &Path, line: Option<u64>, message: impl Into<String>) -> Self {
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
    let mut loaded = Loaded::default();
    let files = files::collect_files(dir, &mut loaded.errors);
    loaded.files = files.len();
    let loads: Vec<loader::FileLoad> = files.iter().map(|p| loader::load_file(p)).collect();
    loader::merge(files.iter().map(PathBuf::as_path).zip(&loads), &mut loaded);
    loaded
}

#[cfg(test)]
mod tests {
    use std::fs;

    use k8s_openapi::Metadata;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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
}
