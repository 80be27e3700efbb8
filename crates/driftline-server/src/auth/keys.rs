//! Access keys and their scopes, read from a credentials file:
//!
//! ```toml
//! [[key]]
//! id = "DLK4V7Q2M9X3C8R1T6WZ"
//! secret = "..."
//! scopes = ["streams:write:events,clicks-*", "streams:read", "models:predict:fraud"]
//! ```
//!
//! A scope is `AREA:ACTION`, optionally followed by `:` and a comma-separated
//! list of resource names or globs (`*` any run of characters, `?` one). SigV4
//! needs the secret itself, so a file that others may read is refused, and a
//! secret is never printed: not by `Debug`, not in an error.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// PutRecord, PutRecords and the NDJSON ingest.
    StreamsWrite,
    /// Reading records and describing or listing streams.
    StreamsRead,
    /// Creating, deleting and resharding streams, tags and retention.
    StreamsAdmin,
    /// Predictions (and reading a model's state).
    ModelsPredict,
    /// Posting labels.
    ModelsLabel,
    /// Promote and rollback.
    ModelsAdmin,
    /// `/metrics`.
    MetricsRead,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::StreamsWrite,
        Scope::StreamsRead,
        Scope::StreamsAdmin,
        Scope::ModelsPredict,
        Scope::ModelsLabel,
        Scope::ModelsAdmin,
        Scope::MetricsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::StreamsWrite => "streams:write",
            Scope::StreamsRead => "streams:read",
            Scope::StreamsAdmin => "streams:admin",
            Scope::ModelsPredict => "models:predict",
            Scope::ModelsLabel => "models:label",
            Scope::ModelsAdmin => "models:admin",
            Scope::MetricsRead => "metrics:read",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scope a key holds, on every resource or on those its globs match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub scope: Scope,
    /// `None`: every resource.
    pub resources: Option<Vec<String>>,
}

impl Grant {
    /// `streams:write` or `streams:write:events,clicks-*`.
    pub fn parse(text: &str) -> Result<Grant, String> {
        let mut parts = text.splitn(3, ':');
        let area = parts.next().unwrap_or_default();
        let action = parts.next().unwrap_or_default();
        let name = format!("{area}:{action}");
        let scope = Scope::parse(&name).ok_or_else(|| {
            let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            format!(
                "unknown scope {name:?} in {text:?} (known: {})",
                known.join(", ")
            )
        })?;
        let resources = match parts.next() {
            None => None,
            Some(list) => {
                let globs: Vec<String> = list.split(',').map(str::to_string).collect();
                if let Some(bad) = globs.iter().find(|g| !valid_glob(g)) {
                    return Err(format!(
                        "resource {bad:?} in {text:?} is not a name or glob of [A-Za-z0-9_.-*?]"
                    ));
                }
                Some(globs)
            }
        };
        Ok(Grant { scope, resources })
    }

    pub fn covers(&self, scope: Scope, resource: &str) -> bool {
        self.scope == scope
            && match &self.resources {
                None => true,
                Some(globs) => globs.iter().any(|g| glob_match(g, resource)),
            }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resources {
            None => write!(f, "{}", self.scope),
            Some(globs) => write!(f, "{}:{}", self.scope, globs.join(",")),
        }
    }
}

fn valid_glob(glob: &str) -> bool {
    !glob.is_empty()
        && glob.len() <= 256
        && glob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*' | b'?'))
}

/// `*` matches any run of characters (also none), `?` exactly one.
pub fn glob_match(glob: &str, name: &str) -> bool {
    let (g, n) = (glob.as_bytes(), name.as_bytes());
    let (mut gi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it has taken up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if gi < g.len() && (g[gi] == b'?' || g[gi] == n[ni]) {
            gi += 1;
            ni += 1;
        } else if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, ni));
            gi += 1;
        } else if let Some((sg, sn)) = star {
            gi = sg + 1;
            ni = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&b| b == b'*')
}

/// One access key: its id, its secret and what it may do.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    secret: String,
    pub grants: Vec<Grant>,
}

impl AccessKey {
    pub fn new(id: &str, secret: &str, grants: Vec<Grant>) -> Result<AccessKey, String> {
        if !valid_key_id(id) {
            return Err(format!(
                "key id {id:?} must be 1 to 128 characters of [A-Za-z0-9_-]"
            ));
        }
        if secret.len() < 16 || secret.len() > 512 || secret.chars().any(char::is_whitespace) {
            return Err(format!(
                "the secret of key {id} must be 16 to 512 characters without spaces"
            ));
        }
        Ok(AccessKey {
            id: id.to_string(),
            secret: secret.to_string(),
            grants,
        })
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    pub fn allows(&self, scope: Scope, resource: &str) -> bool {
        self.grants.iter().any(|g| g.covers(scope, resource))
    }

    /// Whether the key holds `scope` on any resource at all.
    pub fn holds(&self, scope: Scope) -> bool {
        self.grants.iter().any(|g| g.scope == scope)
    }

    /// Compares a presented secret in time that does not depend on where it differs.
    pub fn secret_is(&self, presented: &str) -> bool {
        constant_time_eq(self.secret.as_bytes(), presented.as_bytes())
    }
}

/// The secret is never shown.
impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("grants", &self.grants)
            .finish()
    }
}

pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("credentials file {path} may be read by others (mode {mode:o}); it holds secrets: run chmod 600 {path}")]
    Open { path: String, mode: u32 },
    #[error("credentials {origin}:{line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("credentials {origin}: {message}")]
    Keys { origin: String, message: String },
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    #[serde(default)]
    key: Vec<KeyRepr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRepr {
    id: String,
    secret: String,
    #[serde(default)]
    scopes: Vec<String>,
}

/// Every key a server accepts, by id.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: HashMap<String, Arc<AccessKey>>,
}

impl KeyRing {
    pub fn new(keys: Vec<AccessKey>) -> Result<KeyRing, String> {
        let mut ring = KeyRing::default();
        for key in keys {
            let id = key.id.clone();
            if ring.keys.insert(id.clone(), Arc::new(key)).is_some() {
                return Err(format!("key id {id} is listed twice"));
            }
        }
        Ok(ring)
    }

    /// Reads `env:VAR` (the file's text in an environment variable, as a
    /// container's secret arrives) or a file, refused when others may read it.
    pub fn load(source: &str) -> Result<KeyRing, KeysError> {
        if let Some(var) = source.strip_prefix("env:") {
            let text = std::env::var(var).map_err(|_| KeysError::MissingEnv(var.to_string()))?;
            return KeyRing::parse(&text, source);
        }
        let path = Path::new(source);
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| KeysError::Read {
            path: source.to_string(),
            source: e,
        })?;
        KeyRing::parse(&text, source)
    }

    /// Parses the file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<KeyRing, KeysError> {
        let repr: FileRepr = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let line = text[..offset.min(text.len())].matches('\n').count() + 1;
            let line_text = text.lines().nth(line - 1).unwrap_or_default();
            // A parse error may quote the text it stopped at: never a secret.
            let message = if line_text.contains("secret") {
                "the line with a secret is not valid TOML (its text is not shown)".to_string()
            } else {
                e.message().to_string()
            };
            KeysError::Invalid {
                origin: origin.to_string(),
                line,
                message,
            }
        })?;
        let invalid = |message: String| KeysError::Keys {
            origin: origin.to_string(),
            message,
        };
        if repr.key.is_empty() {
            return Err(invalid("no [[key]] is listed".into()));
        }
        let mut keys = Vec::with_capacity(repr.key.len());
        for key in repr.key {
            let grants = key
                .scopes
                .iter()
                .map(|s| Grant::parse(s).map_err(|e| format!("key {}: {e}", key.id)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            keys.push(AccessKey::new(&key.id, &key.secret, grants).map_err(invalid)?);
        }
        KeyRing::new(keys).map_err(invalid)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<AccessKey>> {
        self.keys.get(id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KeysError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| KeysError::Read {
        path: path.display().to_string(),
        source: e,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeysError::Open {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), KeysError> {
    Ok(())
}

/// The text of a credentials file holding one key, as `driftline auth new-key` writes it.
pub fn key_toml(key: &AccessKey) -> String {
    let scopes: Vec<String> = key.grants.iter().map(|g| format!("\"{g}\"")).collect();
    format!(
        "[[key]]\nid = \"{}\"\nsecret = \"{}\"\nscopes = [{}]\n",
        key.id,
        key.secret,
        scopes.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_shells_do() {
        assert!(glob_match("events", "events"));
        assert!(!glob_match("events", "events2"));
        assert!(glob_match("click*", "clicks-eu"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*-eu", "clicks-eu"));
        assert!(!glob_match("*-eu", "clicks-us"));
        assert!(glob_match("a?c*z", "abcxyz"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn scopes_parse_with_and_without_resources() {
        let g = Grant::parse("streams:write").expect("valid");
        assert_eq!(g.scope, Scope::StreamsWrite);
        assert!(g.covers(Scope::StreamsWrite, "anything"));
        assert!(!g.covers(Scope::StreamsRead, "anything"));
        let g = Grant::parse("models:admin:fraud,churn-*").expect("valid");
        assert!(g.covers(Scope::ModelsAdmin, "fraud"));
        assert!(g.covers(Scope::ModelsAdmin, "churn-eu"));
        assert!(!g.covers(Scope::ModelsAdmin, "pricing"));
        assert_eq!(g.to_string(), "models:admin:fraud,churn-*");
        assert!(Grant::parse("streams:delete")
            .expect_err("refused")
            .contains("unknown scope"));
        assert!(Grant::parse("streams:read:a b").is_err());
        assert!(Grant::parse("streams:read:").is_err());
    }

    #[test]
    fn a_file_parses_and_its_errors_never_show_a_secret() {
        let text =
            "[[key]]\nid = \"K1\"\nsecret = \"0123456789abcdefXYZ\"\nscopes = [\"streams:read\"]\n";
        let ring = KeyRing::parse(text, "keys.toml").expect("valid");
        let key = ring.get("K1").expect("valid");
        assert!(key.allows(Scope::StreamsRead, "events"));
        assert!(!format!("{key:?}").contains("0123456789"));
        assert!(key.secret_is("0123456789abcdefXYZ"));
        assert!(!key.secret_is("0123456789abcdefXYz"));

        let bad = "[[key]]\nid = \"K1\"\nsecret = \"0123456789abcdefXYZ\nscopes = []\n";
        let error = KeyRing::parse(bad, "keys.toml")
            .expect_err("refused")
            .to_string();
        assert!(!error.contains("0123456789"), "{error}");
        assert!(error.contains("keys.toml:3"), "{error}");

        let twice = format!("{text}{text}");
        let error = KeyRing::parse(&twice, "k")
            .expect_err("refused")
            .to_string();
        assert!(error.contains("listed twice"), "{error}");
        let short = "[[key]]\nid = \"K1\"\nsecret = \"short\"\n";
        let error = KeyRing::parse(short, "k").expect_err("refused").to_string();
        assert!(
            error.contains("16 to 512") && !error.contains("short\""),
            "{error}"
        );
        let unknown = "[[key]]\nid = \"K1\"\nsecret = \"0123456789abcdefXYZ\"\nscopes = [\"models:delete\"]\n";
        assert!(KeyRing::parse(unknown, "k")
            .expect_err("refused")
            .to_string()
            .contains("unknown scope"));
        assert!(KeyRing::parse("", "k")
            .expect_err("refused")
            .to_string()
            .contains("no [[key]]"));
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("valid");
        let path = dir.path().join("keys.toml");
        std::fs::write(
            &path,
            "[[key]]\nid = \"K1\"\nsecret = \"0123456789abcdefXYZ\"\n",
        )
        .expect("valid");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("valid");
        let error = KeyRing::load(path.to_str().expect("valid"))
            .expect_err("refused")
            .to_string();
        assert!(error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("valid");
        assert_eq!(
            KeyRing::load(path.to_str().expect("valid"))
                .expect("valid")
                .len(),
            1
        );
    }

    #[test]
    fn a_written_key_reads_back() {
        let key = AccessKey::new(
            "DLK1",
            "0123456789abcdefXYZ",
            vec![Grant::parse("streams:write:ev*").expect("valid")],
        )
        .expect("valid");
        let ring = KeyRing::parse(&key_toml(&key), "k").expect("valid");
        assert_eq!(ring.get("DLK1").map(|k| k.as_ref()), Some(&key));
    }
}
