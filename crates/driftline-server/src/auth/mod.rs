//! Who is calling, and what they may do. Keys and scopes come from a
//! credentials file ([`keys`]); a request proves its key with AWS Signature
//! Version 4 ([`sigv4`]) or, on the native routes, `Authorization: Bearer
//! ID:SECRET` ([`native`]). Without a key ring every request is allowed: the
//! server then listens on loopback only (the CLI refuses anything else).

pub mod keys;
pub mod native;
pub mod sigv4;

use std::sync::Arc;
use std::time::SystemTime;

pub use keys::{AccessKey, Grant, KeyRing, KeysError, Scope};

/// The caller of one request, once authenticated.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No key ring: everyone may do everything.
    Anyone,
    Key(Arc<AccessKey>),
}

impl Caller {
    pub fn allows(&self, scope: Scope, resource: &str) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Key(key) => key.allows(scope, resource),
        }
    }

    pub fn holds(&self, scope: Scope) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Key(key) => key.holds(scope),
        }
    }

    /// The key's id, for the audit log and the registry's decisions.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Caller::Anyone => None,
            Caller::Key(key) => Some(&key.id),
        }
    }

    /// `Err` names the scope that is missing.
    pub fn check(&self, scope: Scope, resource: &str) -> Result<(), Denied> {
        if self.allows(scope, resource) {
            Ok(())
        } else {
            Err(Denied {
                key_id: self.key_id().unwrap_or_default().to_string(),
                scope,
                resource: resource.to_string(),
            })
        }
    }
}

/// A key that lacks the scope a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub key_id: String,
    pub scope: Scope,
    pub resource: String,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {} lacks scope {} on {}",
            self.key_id, self.scope, self.resource
        )
    }
}

/// Why a request's credentials are refused. The texts never hold a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No credentials at all.
    Missing,
    /// Credentials that are malformed or leave out what must be signed.
    Incomplete(String),
    /// A key id the server does not know.
    UnknownKey(String),
    /// A wrong secret, or a request changed after it was signed.
    Mismatch(String),
    /// A signature dated outside the allowed clock skew.
    Expired(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Missing => f.write_str(
                "Missing Authentication Token: sign the request (AWS SigV4) or send Authorization: Bearer ID:SECRET",
            ),
            Failure::UnknownKey(id) => write!(f, "the access key {id:?} is not known to this server"),
            Failure::Incomplete(m) | Failure::Mismatch(m) | Failure::Expired(m) => f.write_str(m),
        }
    }
}

/// Longest `Authorization` header looked at; longer ones are refused unread.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// Checks a request's credentials: SigV4 always, `Bearer ID:SECRET` when
/// `bearer` allows it.
pub fn authenticate(
    keys: &KeyRing,
    request: &sigv4::Signed,
    rules: &sigv4::Rules,
    bearer: bool,
    now: SystemTime,
) -> Result<Arc<AccessKey>, Failure> {
    let Some(value) = request.headers.get("authorization") else {
        if has_query_signature(request.query) {
            return Err(Failure::Incomplete(
                "presigned URLs (X-Amz-Signature in the query) are not accepted; sign the Authorization header".into(),
            ));
        }
        return Err(Failure::Missing);
    };
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(Failure::Incomplete(format!(
            "the Authorization header is longer than {MAX_AUTHORIZATION_BYTES} bytes"
        )));
    }
    let value = value
        .to_str()
        .map_err(|_| Failure::Incomplete("the Authorization header is not ASCII text".into()))?;
    if value.starts_with(sigv4::ALGORITHM) {
        return sigv4::verify(keys, value, request, rules, now);
    }
    if let Some(token) = value.strip_prefix("Bearer ") {
        if !bearer {
            return Err(Failure::Incomplete(
                "this API takes AWS Signature Version 4, not a bearer key".into(),
            ));
        }
        return bearer_key(keys, token.trim());
    }
    Err(Failure::Incomplete(
        "the Authorization header must be AWS4-HMAC-SHA256 or Bearer ID:SECRET".into(),
    ))
}

fn bearer_key(keys: &KeyRing, token: &str) -> Result<Arc<AccessKey>, Failure> {
    let (id, secret) = token
        .split_once(':')
        .ok_or_else(|| Failure::Incomplete("a bearer key is ID:SECRET".into()))?;
    let key = keys
        .get(id)
        .ok_or_else(|| Failure::UnknownKey(id.chars().take(128).collect()))?;
    if key.secret_is(secret) {
        Ok(key.clone())
    } else {
        Err(Failure::Mismatch(format!(
            "the secret given for key {id} is wrong"
        )))
    }
}

fn has_query_signature(query: &str) -> bool {
    query
        .split('&')
        .any(|p| p.starts_with("X-Amz-Signature=") || p.starts_with("X-Amz-Credential="))
}
