//! Who is asking and what they may do. Anonymous pulls are allowed for configured repository
//! patterns; pushes and deletes need a user (Basic auth against argon2 or bcrypt hashes) or a
//! bearer token this registry issued (the Docker token flow, HS256-signed with the configured
//! key). Replicas authenticate to each other with the shared replication secret.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use tandem_config::registry::RegistryConfig;

use crate::oci::name::matches_pattern;

/// What a request wants to do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs, put manifests, mount.
    Push,
    /// Delete manifests, tags, blobs.
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            "*" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials.
    Anonymous,
    /// A configured user (Basic auth).
    User(String),
    /// A peer replica (replication secret).
    Replica,
    /// A token this registry issued.
    Token(Claims),
}

/// Grants inside a token (the Docker token format's `access` claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name (or `catalog`).
    pub name: String,
    /// Granted actions.
    pub actions: Vec<String>,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject (user name, empty for anonymous).
    pub sub: String,
    /// Audience (service).
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not before.
    pub nbf: u64,
    /// Issued at.
    pub iat: u64,
    /// Token id.
    pub jti: String,
    /// Grants.
    pub access: Vec<Grant>,
}

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Malformed header.
    #[error(
        "malformed Authorization header: send `Basic <base64 user:password>` or `Bearer <token>`"
    )]
    Malformed,
    /// Wrong user or password.
    #[error("invalid username or password")]
    BadCredentials,
    /// Bad, expired or foreign token.
    #[error("invalid or expired token: request a new one from the token endpoint")]
    BadToken,
}

struct UserEntry {
    hash: String,
    push: Vec<String>,
    delete: bool,
}

/// The authentication and authorization policy of a replica.
pub struct Auth {
    users: HashMap<String, UserEntry>,
    anonymous: Vec<String>,
    token_key: Option<Vec<u8>>,
    token_ttl: Duration,
    service: String,
    replication_secret: Option<String>,
    /// sha256(user:password) of recently verified credentials, so argon2 runs once per login
    /// rather than once per request.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

const VERIFIED_TTL: Duration = Duration::from_secs(300);

impl Auth {
    /// Build the policy from config.
    pub fn new(cfg: &RegistryConfig) -> Auth {
        Auth {
            users: cfg
                .users
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        UserEntry {
                            hash: u.password_hash.expose().to_string(),
                            push: u.push.clone(),
                            delete: u.delete,
                        },
                    )
                })
                .collect(),
            anonymous: cfg.anonymous_read.clone(),
            token_key: cfg
                .token
                .as_ref()
                .map(|t| t.key.expose().as_bytes().to_vec()),
            token_ttl: cfg
                .token
                .as_ref()
                .map(|t| t.ttl)
                .unwrap_or(Duration::from_secs(300)),
            service: cfg
                .token
                .as_ref()
                .map(|t| t.service.clone())
                .unwrap_or_else(|| "tandem-registry".into()),
            replication_secret: cfg
                .replication
                .secret
                .as_ref()
                .map(|s| s.expose().to_string()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the token flow is on.
    pub fn tokens_enabled(&self) -> bool {
        self.token_key.is_some()
    }

    /// Whether anything needs credentials at all (no users and `*` anonymous means an open
    /// registry, used only in tests).
    pub fn open(&self) -> bool {
        self.users.is_empty() && self.anonymous.iter().any(|p| p == "*")
    }

    /// The token service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Identify the caller from the `Authorization` header. Password checks run on the blocking
    /// pool (argon2 is deliberately slow).
    pub async fn identify(&self, header: Option<&str>) -> Result<Identity, AuthError> {
        let Some(h) = header else {
            return Ok(Identity::Anonymous);
        };
        let (scheme, rest) = h.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, pass) = decode_basic(rest.trim()).ok_or(AuthError::Malformed)?;
            // Some clients (containers/image) answer a Basic challenge with empty credentials
            // when they have none: that is an anonymous request.
            if user.is_empty() && pass.is_empty() {
                return Ok(Identity::Anonymous);
            }
            self.check_password(&user, &pass).await?;
            Ok(Identity::User(user))
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            if let Some(secret) = &self.replication_secret
                && bool::from(token.as_bytes().ct_eq(secret.as_bytes()))
            {
                return Ok(Identity::Replica);
            }
            self.verify_token(token).map(Identity::Token)
        } else {
            Err(AuthError::Malformed)
        }
    }

    /// Check a user's password.
    pub async fn check_password(&self, user: &str, pass: &str) -> Result<(), AuthError> {
        let Some(entry) = self.users.get(user) else {
            return Err(AuthError::BadCredentials);
        };
        let fp: [u8; 32] = Sha256::digest(format!("{user}:{pass}").as_bytes()).into();
        if let Ok(mut v) = self.verified.lock() {
            if let Some(t) = v.get(&fp)
                && t.elapsed() < VERIFIED_TTL
            {
                return Ok(());
            }
            v.retain(|_, t| t.elapsed() < VERIFIED_TTL);
        }
        let hash = entry.hash.clone();
        let pass = pass.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_hash(&hash, &pass))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(AuthError::BadCredentials);
        }
        if let Ok(mut v) = self.verified.lock() {
            v.insert(fp, Instant::now());
        }
        Ok(())
    }

    /// Whether `id` may do `action` on `repo`.
    pub fn allowed(&self, id: &Identity, repo: &str, action: Action) -> bool {
        if action == Action::Pull && self.anonymous.iter().any(|p| matches_pattern(p, repo)) {
            return true;
        }
        match id {
            Identity::Anonymous => false,
            Identity::Replica => action == Action::Pull,
            Identity::User(u) => self.user_allows(u, repo, action),
            Identity::Token(c) => c.access.iter().any(|g| {
                g.kind == "repository"
                    && g.name == repo
                    && g.actions
                        .iter()
                        .any(|a| a == "*" || Action::parse(a) == Some(action))
            }),
        }
    }

    fn user_allows(&self, user: &str, repo: &str, action: Action) -> bool {
        let Some(u) = self.users.get(user) else {
            return false;
        };
        match action {
            Action::Pull => true,
            Action::Push => u.push.iter().any(|p| matches_pattern(p, repo)),
            Action::Delete => u.delete && u.push.iter().any(|p| matches_pattern(p, repo)),
        }
    }

    /// Whether `id` may list the catalog entry `repo`.
    pub fn can_list(&self, id: &Identity, repo: &str) -> bool {
        match id {
            Identity::Replica | Identity::User(_) => true,
            Identity::Token(c)
                if c.access
                    .iter()
                    .any(|g| g.kind == "registry" && g.name == "catalog") =>
            {
                true
            }
            _ => self.allowed(id, repo, Action::Pull),
        }
    }

    /// The `WWW-Authenticate` challenge for a request on `scope` (`repository:name:actions`).
    pub fn challenge(&self, realm_base: &str, scope: Option<&str>) -> String {
        if self.tokens_enabled() {
            let mut c = format!(
                "Bearer realm=\"{realm_base}/token\",service=\"{}\"",
                self.service
            );
            if let Some(s) = scope {
                c.push_str(&format!(",scope=\"{s}\""));
            }
            c
        } else {
            "Basic realm=\"tandem-registry\"".to_string()
        }
    }

    /// Issue a token for `id` covering what it asked for in `scopes` and is allowed.
    pub fn issue_token(&self, id: &Identity, scopes: &[String]) -> Option<(String, Claims)> {
        let key = self.token_key.as_ref()?;
        let now = crate::hlc::now_ms() / 1000;
        let mut access = Vec::new();
        for scope in scopes {
            // repository:<name>:<actions>; the name may not contain ':' (no ports in names).
            let mut parts = scope.rsplitn(2, ':');
            let actions = parts.next().unwrap_or("");
            let head = parts.next().unwrap_or("");
            let Some((kind, name)) = head.split_once(':') else {
                continue;
            };
            let granted: Vec<String> = match kind {
                "repository" => actions
                    .split(',')
                    .filter_map(Action::parse)
                    .filter(|a| self.allowed(id, name, *a))
                    .map(|a| a.as_str().to_string())
                    .collect(),
                "registry" if name == "catalog" && !matches!(id, Identity::Anonymous) => {
                    vec!["*".to_string()]
                }
                _ => Vec::new(),
            };
            if !granted.is_empty() {
                access.push(Grant {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    actions: granted,
                });
            }
        }
        let sub = match id {
            Identity::User(u) => u.clone(),
            _ => String::new(),
        };
        let claims = Claims {
            iss: "tandem-registry".into(),
            sub,
            aud: self.service.clone(),
            exp: now + self.token_ttl.as_secs(),
            nbf: now.saturating_sub(5),
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).ok()?);
        let signing = format!("{header}.{body}");
        let sig = URL_SAFE_NO_PAD.encode(hmac(key, signing.as_bytes()));
        Some((format!("{signing}.{sig}"), claims))
    }

    /// The token lifetime.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    fn verify_token(&self, token: &str) -> Result<Claims, AuthError> {
        let key = self.token_key.as_ref().ok_or(AuthError::BadToken)?;
        let (signing, sig) = token.rsplit_once('.').ok_or(AuthError::BadToken)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| AuthError::BadToken)?;
        let expected = hmac(key, signing.as_bytes());
        if !bool::from(expected.as_slice().ct_eq(&sig)) {
            return Err(AuthError::BadToken);
        }
        let (_, body) = signing.split_once('.').ok_or(AuthError::BadToken)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| AuthError::BadToken)?;
        let claims: Claims = serde_json::from_slice(&body).map_err(|_| AuthError::BadToken)?;
        let now = crate::hlc::now_ms() / 1000;
        if claims.exp < now || claims.nbf > now + 5 || claims.aud != self.service {
            return Err(AuthError::BadToken);
        }
        Ok(claims)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Decode `base64(user:password)`.
pub fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn verify_hash(hash: &str, password: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::{Argon2, PasswordHash, PasswordVerifier};
        match PasswordHash::new(hash) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

/// Hash a password with argon2id for `password_hash` in config (used by
/// `tandem registry --hash-password` and the lab).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::SaltString;
    use argon2::{Argon2, PasswordHasher};
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Check that a configured hash can be parsed, so a broken hash fails at start, not at login.
pub fn check_hash(hash: &str) -> Result<(), String> {
    if hash.starts_with("$argon2") {
        argon2::PasswordHash::new(hash)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        // bcrypt hashes are 60 characters: $2b$<cost>$<53 chars>.
        if hash.len() == 60 {
            Ok(())
        } else {
            Err("a bcrypt hash is 60 characters long".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RegistryConfig {
        let hash = hash_password("pw").expect("hash");
        let src = format!(
            r#"
[regions.eastus]
[registry]
anonymous_read = ["public/*"]
[registry.replicas.eastus]
listen = "127.0.0.1:5000"
[registry.users.alice]
password_hash = "{hash}"
push = ["team/*"]
delete = true
[registry.token]
key = "0123456789abcdef0123456789abcdef"
[registry.replication]
secret = "replication-secret-123"
"#
        );
        tandem_config::parse(&src, "t.toml")
            .expect("config")
            .registry
            .expect("registry")
    }

    #[tokio::test]
    async fn basic_token_and_policy() {
        let a = Auth::new(&cfg());
        let basic = format!("Basic {}", STANDARD.encode("alice:pw"));
        let id = a.identify(Some(&basic)).await.expect("alice");
        assert_eq!(id, Identity::User("alice".into()));
        let bad = format!("Basic {}", STANDARD.encode("alice:nope"));
        assert_eq!(a.identify(Some(&bad)).await, Err(AuthError::BadCredentials));
        assert!(a.allowed(&id, "team/app", Action::Push));
        assert!(a.allowed(&id, "team/app", Action::Delete));
        assert!(!a.allowed(&id, "other/app", Action::Push));
        assert!(a.allowed(&Identity::Anonymous, "public/x", Action::Pull));
        assert!(!a.allowed(&Identity::Anonymous, "team/app", Action::Pull));

        let (tok, claims) = a
            .issue_token(
                &id,
                &[
                    "repository:team/app:pull,push".into(),
                    "repository:other:pull,push".into(),
                ],
            )
            .expect("token");
        assert_eq!(claims.access.len(), 2);
        assert_eq!(
            claims.access[1].actions,
            vec!["pull"],
            "other:push is not granted; pull is"
        );
        let tid = a
            .identify(Some(&format!("Bearer {tok}")))
            .await
            .expect("token ok");
        assert!(a.allowed(&tid, "team/app", Action::Push));
        assert!(!a.allowed(&tid, "other", Action::Push));
        let forged = format!("Bearer {}x", tok);
        assert_eq!(a.identify(Some(&forged)).await, Err(AuthError::BadToken));
        assert_eq!(
            a.identify(Some("Bearer replication-secret-123")).await,
            Ok(Identity::Replica)
        );
        assert!(
            a.challenge("http://x", Some("repository:a:pull"))
                .starts_with("Bearer realm=\"http://x/token\"")
        );
    }
}
