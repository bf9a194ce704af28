//! ACME certificates: the engine under the certificate actor.
//!
//! - [`client`]: rustls-acme's low-level `acme` module behind a wrapper that trusts extra
//!   roots, retries `badNonce`, bounds requests with a timeout and keeps the server's problem
//!   documents ([`AcmeClient`], [`Account`], [`AcmeError`]);
//! - [`order`]: the order procedure for one certificate ([`issue`]) over a
//!   [`ChallengeSolver`] the actor implements;
//! - [`dns01`]: DNS-01 answers as TXT values through a DNS provider ([`Dns01Solver`]);
//! - [`keys`]: key authorizations and the DNS-01 TXT value from the account key;
//! - [`policy`]: when to order (renewal at two thirds of the lifetime, failure backoff) and the
//!   per-certificate state ([`ManagedCert`]), pure;
//! - [`wants`]: which certificates the Ingresses ask for, with diagnostics, pure;
//! - [`secrets`]: the certificate, account key and challenge-answers Secrets, pure
//!   encode/decode; [`store`]: the folder store of standalone mode;
//! - [`answers`]: challenge answers and the [`Challenges`] snapshot the data plane answers
//!   HTTP-01 and TLS-ALPN-01 from.
//!
//! Nothing here runs on its own: the certificate actor decides when to order (policy), runs
//! [`issue`] on the leader, publishes answers and writes Secrets. See docs/acme.md.

pub mod answers;
pub mod client;
pub mod dns01;
pub mod keys;
pub mod order;
pub mod policy;
pub mod secrets;
pub mod store;
pub mod wants;

pub use answers::{
    ChallengeAnswer, ChallengeKind, Challenges, ChallengesHandle, SharedAnswer, challenges_handle,
};
pub use client::{
    Account, AcmeClient, AcmeError, ClientError, Problem, client_config, directory_url,
    generate_account_key,
};
pub use dns01::{Dns01Options, Dns01Solver};
pub use order::{
    BoxFuture, ChallengeSolver, Issued, OrderError, OrderOptions, OrderRequest, SolverError, issue,
};
pub use policy::{CertState, ExistingCert, ManagedCert, RetryPolicy};
pub use store::FolderStore;
pub use wants::{AcmeOptions, Selection, WantedCert, wanted_certificates};
