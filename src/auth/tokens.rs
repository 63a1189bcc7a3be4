//! Access tokens (short-lived HS256 JWTs naming a session) and opaque refresh tokens.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::layout::{Layout, write_private_file};

const SECRET_FILE: &str = "jwt.key";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Session id: revoking the session invalidates the token at once.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl: Duration) -> Self {
        // Only HS256 is accepted: `alg: none` and algorithm confusion are refused by construction.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
        }
    }

    pub fn issue(&self, user_id: i64, session_id: &str) -> anyhow::Result<(String, Claims)> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            sid: session_id.to_owned(),
            iat: now,
            exp: now + self.access_ttl.as_secs() as i64,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("cannot sign access token")?;
        Ok((token, claims))
    }

    /// Checks signature, algorithm and expiry.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// The signing secret: from the configuration, or generated once into `server/jwt.key` (0600)
/// so restarts keep sessions valid.
pub fn load_or_create_secret(config: &Config, layout: &Layout) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.auth.jwt_secret {
        return Ok(secret.expose().as_bytes().to_vec());
    }
    let path = layout.server_dir().join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim().len() >= 32 => {
            return Ok(existing.trim().as_bytes().to_vec());
        }
        Ok(_) => anyhow::bail!(
            "{} is too short to be a signing key; remove it to generate a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret = random_token(48);
    write_private_file(&path, secret.as_bytes())?;
    Ok(secret.into_bytes())
}

/// A URL-safe random string carrying `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Refresh tokens and invite codes are stored only as this hash.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(900),
        )
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = keys();
        let (token, claims) = keys.issue(42, "session-1").unwrap();
        let back = keys.verify(&token).expect("valid");
        assert_eq!(back.user_id(), Some(42));
        assert_eq!(back.sid, "session-1");
        assert_eq!(back.exp, claims.exp);
    }

    #[test]
    fn other_key_and_alg_none_are_refused() {
        let (token, _) = keys().issue(1, "s").unwrap();
        let other = TokenKeys::new(
            b"another-key-another-key-another-key!",
            Duration::from_secs(900),
        );
        assert!(
            other.verify(&token).is_none(),
            "token signed with another key"
        );

        let payload = token.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(
            keys().verify(&format!("{header}.{payload}.")).is_none(),
            "alg none"
        );
        assert!(keys().verify("not-a-jwt").is_none());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let keys = keys();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: "1".into(),
            sid: "s".into(),
            iat: now - 7200,
            exp: now - 3600,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert!(keys.verify(&token).is_none());
    }

    #[test]
    fn secret_is_generated_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::prepare(tmp.path()).unwrap();
        let config = Config::default();
        let first = load_or_create_secret(&config, &layout).unwrap();
        let second = load_or_create_secret(&config, &layout).unwrap();
        assert_eq!(first, second);
        let mode = std::fs::metadata(layout.server_dir().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
