//! Diagnostics: what was wrong with an object, and which field.

use std::fmt;

use super::{Kind, ObjectRef};

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Something is served differently from what was written, or not at all; the user should
    /// fix it. `sluice check` exits 1 when there is one.
    Error,
    /// Served, but worth a look (a backend with no ready endpoint, say).
    Warning,
}

impl Severity {
    /// Lower-case name, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Machine-readable cause, used as the Kubernetes Event reason and as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A host in a rule or in `spec.tls` is not a valid DNS name or wildcard.
    InvalidHost,
    /// A path is missing, malformed, or uses an unknown pathType.
    InvalidPath,
    /// A backend is malformed (no service name, both or neither port name and number...).
    InvalidBackend,
    /// A backend kind sluice does not serve (`resource` backends, ExternalName Services).
    UnsupportedBackend,
    /// The referenced Service does not exist.
    ServiceNotFound,
    /// The Service exists but has no such port.
    ServicePortNotFound,
    /// The backend resolves, but has no ready or serving endpoint: requests get 503.
    NoReadyEndpoints,
    /// An EndpointSlice entry could not be used (bad address, no port).
    InvalidEndpoint,
    /// Another (older) Ingress already serves the same host, path and path type.
    PathConflict,
    /// Another (older) Ingress already sets the default backend.
    DefaultBackendConflict,
    /// Another (older) Ingress already names a different Secret for the same TLS host.
    TlsConflict,
    /// The Secret named in `spec.tls` does not exist.
    SecretNotFound,
    /// The Secret exists but is not a usable `kubernetes.io/tls` Secret.
    SecretInvalid,
    /// An annotation value could not be used.
    InvalidAnnotation,
    /// An annotation sluice does not implement (of ingress-nginx, Traefik, or an unknown
    /// `sluice.io/` one): a warning when it is ignored, an error when it asks for a protection
    /// (the Ingress's routes then answer 503 rather than serve open).
    UnsupportedAnnotation,
    /// A configuration-snippet annotation (ingress-nginx's `*-snippet`): configuration text is
    /// never applied, and the Ingress is not served.
    SnippetRejected,
    /// An ACME certificate is wanted but not issued yet: its hosts get the default
    /// certificate and plain HTTP is not redirected meanwhile.
    CertificatePending,
    /// An ACME certificate cannot be requested as written (wildcard without dns-01, no
    /// secretName, no hosts, a Secret named twice, contradictory annotations).
    CertificateRequestInvalid,
    /// The Secret an ACME certificate should go to exists and was not created by sluice: it is
    /// never overwritten.
    CertificateSecretNotOwned,
    /// An ACME order failed (the message names the host, the ACME error type and detail).
    CertificateOrderFailed,
    /// Two objects want different DNS records for the same name and type: one is written.
    DnsConflict,
    /// A wanted DNS record is not written: the name belongs to someone else (a record without
    /// sluice's ownership TXT, another owner id), or no hosted zone holds it.
    DnsNotWritten,
    /// The DNS provider rejected the changes of one record (InvalidChangeBatch); retried
    /// alone with backoff.
    DnsRejected,
}

impl Reason {
    /// The CamelCase name used for Events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidHost => "InvalidHost",
            Reason::InvalidPath => "InvalidPath",
            Reason::InvalidBackend => "InvalidBackend",
            Reason::UnsupportedBackend => "UnsupportedBackend",
            Reason::ServiceNotFound => "ServiceNotFound",
            Reason::ServicePortNotFound => "ServicePortNotFound",
            Reason::NoReadyEndpoints => "NoReadyEndpoints",
            Reason::InvalidEndpoint => "InvalidEndpoint",
            Reason::PathConflict => "PathConflict",
            Reason::DefaultBackendConflict => "DefaultBackendConflict",
            Reason::TlsConflict => "TlsConflict",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretInvalid => "SecretInvalid",
            Reason::InvalidAnnotation => "InvalidAnnotation",
            Reason::UnsupportedAnnotation => "UnsupportedAnnotation",
            Reason::SnippetRejected => "SnippetRejected",
            Reason::CertificatePending => "CertificatePending",
            Reason::CertificateRequestInvalid => "CertificateRequestInvalid",
            Reason::CertificateSecretNotOwned => "CertificateSecretNotOwned",
            Reason::CertificateOrderFailed => "CertificateOrderFailed",
            Reason::DnsConflict => "DnsConflict",
            Reason::DnsNotWritten => "DnsNotWritten",
            Reason::DnsRejected => "DnsRejected",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field of one object.
///
/// Displays as `namespace/name: field: message`, the form users grep for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Machine-readable cause.
    pub reason: Reason,
    /// Kind of the object the diagnostic is about.
    pub kind: Kind,
    /// The object.
    pub object: ObjectRef,
    /// The field path, e.g. `spec.rules[0].http.paths[1].path`.
    pub field: String,
    /// What is wrong and what sluice does about it.
    pub message: String,
}

impl Diagnostic {
    /// An error about `kind` `object`.
    pub fn error(
        reason: Reason,
        kind: Kind,
        object: &ObjectRef,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            reason,
            kind,
            object: object.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// A warning about `kind` `object`.
    pub fn warning(
        reason: Reason,
        kind: Kind,
        object: &ObjectRef,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Self::error(reason, kind, object, field, message)
        }
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != Kind::Ingress {
            write!(f, "{} ", self.kind)?;
        }
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}
