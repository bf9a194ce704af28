//! Basic authentication (`auth-type: basic`): the credentials of `Authorization: Basic` checked
//! against the route's users.
//!
//! bcrypt takes milliseconds by design, and browsers send the credentials with every request, so
//! a successful bcrypt check is remembered as an HMAC-SHA-256 of (Secret, user, stored hash,
//! password) under a random per-process key: the cache holds no password, and a changed
//! password or Secret misses it. (Someone who can read this process's memory gets the key too
//! and could test guesses for cached users at HMAC speed rather than bcrypt's; such a reader
//! also sees the requests' Authorization headers as they pass.) Failures are never cached; bcrypt checks run on the blocking pool, at most
//! [`SLOW_CHECKS`] at once, so a flood of wrong passwords cannot occupy the async workers.

use std::collections::HashSet;
use std::sync::Mutex;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::{self, ProxyBody};
use crate::model::BasicAuth;
use crate::model::htpasswd::{PasswordHash, basic_credentials};

/// bcrypt checks running at once; more wait.
pub(super) const SLOW_CHECKS: usize = 4;
/// Remembered successes; the set is emptied when it reaches this.
const CACHE_LIMIT: usize = 10_000;

/// Remembered successful checks and the bound on concurrent slow ones.
pub(super) struct BasicCache {
    key: [u8; 32],
    ok: Mutex<HashSet<[u8; 32]>>,
    slow: tokio::sync::Semaphore,
}

impl Default for BasicCache {
    fn default() -> Self {
        let mut key = [0u8; 32];
        // No randomness at all would only make the cache keys predictable, never wrong.
        let _ = aws_lc_rs::rand::fill(&mut key);
        BasicCache {
            key,
            ok: Mutex::new(HashSet::new()),
            slow: tokio::sync::Semaphore::new(SLOW_CHECKS),
        }
    }
}

impl BasicCache {
    fn fingerprint(
        &self,
        auth: &BasicAuth,
        user: &str,
        hash: &PasswordHash,
        password: &[u8],
    ) -> [u8; 32] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.key);
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
        for part in [
            auth.secret.namespace.as_bytes(),
            auth.secret.name.as_bytes(),
            user.as_bytes(),
        ] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        if let PasswordHash::Bcrypt(stored) = hash {
            ctx.update(stored.as_bytes());
        }
        ctx.update(&[0]);
        ctx.update(password);
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Whether the request's `Authorization` header names a user of `auth` with its password.
    pub(super) async fn check(
        &self,
        auth: &BasicAuth,
        authorization: Option<&HeaderValue>,
    ) -> bool {
        let Some((user, password)) = authorization.and_then(|v| basic_credentials(v.as_bytes()))
        else {
            return false;
        };
        let Some(hash) = auth.users.get(&user) else {
            return false;
        };
        if !hash.is_slow() {
            return hash.verify(&password);
        }
        let print = self.fingerprint(auth, &user, hash, &password);
        if self.ok.lock().is_ok_and(|ok| ok.contains(&print)) {
            return true;
        }
        let Ok(_permit) = self.slow.acquire().await else {
            return false;
        };
        let hash = hash.clone();
        let verified = tokio::task::spawn_blocking(move || hash.verify(&password))
            .await
            .unwrap_or(false);
        if verified && let Ok(mut ok) = self.ok.lock() {
            if ok.len() >= CACHE_LIMIT {
                ok.clear();
            }
            ok.insert(print);
        }
        verified
    }
}

/// The 401 answer: `WWW-Authenticate: Basic realm="..."`.
pub(super) fn challenge(auth: &BasicAuth) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(Bytes::from_static(
        b"401 Authorization Required\n",
    )));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let realm = auth.realm.replace(['"', '\\'], "");
    let value = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"\""));
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
