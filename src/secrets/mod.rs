//! Per-user secrets (API keys): encrypted at rest with XChaCha20-Poly1305, never returned in clear.

pub mod routes;
pub mod store;

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::error::AppError;
use crate::layout::write_private_file;

pub use routes::router;

const KEY_FILE: &str = "secrets.key";
pub const VALUE_MAX: usize = 16 * 1024;

/// The server's secret-encryption key, kept 0600 in the server folder.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    pub fn load_or_create(server_dir: &Path) -> anyhow::Result<Self> {
        let path = server_dir.join(KEY_FILE);
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => STANDARD
                .decode(text.trim())
                .with_context(|| format!("{} is not a valid key", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_private_file(&path, STANDARD.encode(&key).as_bytes())?;
                key
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        anyhow::ensure!(
            key.len() == 32,
            "{} must hold a 32-byte key",
            path.display()
        );
        let cipher = XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| anyhow::anyhow!("invalid secrets key"))?;
        Ok(Self { cipher })
    }

    /// Encrypts `value`, bound to its owner and name so a row cannot be moved to another.
    pub fn seal(
        &self,
        user_id: i64,
        name: &str,
        value: &str,
    ) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = format!("{user_id}:{name}");
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("cannot encrypt secret"))?;
        Ok((nonce.to_vec(), ciphertext))
    }

    pub fn open(
        &self,
        user_id: i64,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> anyhow::Result<String> {
        anyhow::ensure!(nonce.len() == 24, "bad nonce length");
        let aad = format!("{user_id}:{name}");
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!("cannot decrypt secret {name}: wrong key or tampered row")
            })?;
        String::from_utf8(plain).context("secret is not UTF-8")
    }
}

/// Secret names are environment variable names.
pub fn check_name(name: &str) -> Result<(), AppError> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(AppError::Unprocessable(
            "secret names look like environment variables: A-Z, 0-9 and _, starting with a letter, at most 64".into(),
        ))
    }
}

pub fn check_value(value: &str) -> Result<(), AppError> {
    if value.is_empty() {
        return Err(AppError::Unprocessable("a secret cannot be empty".into()));
    }
    if value.len() > VALUE_MAX {
        return Err(AppError::PayloadTooLarge(format!(
            "a secret is at most {VALUE_MAX} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(AppError::Unprocessable(
            "a secret cannot contain NUL characters".into(),
        ));
    }
    Ok(())
}

/// What is shown instead of the value: enough to recognise which key it is.
pub fn hint(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() >= 12 {
        format!("…{}", chars[chars.len() - 4..].iter().collect::<String>())
    } else {
        "…".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_owner_and_name() {
        let tmp = tempfile::tempdir().unwrap();
        let secrets = SecretBox::load_or_create(tmp.path()).unwrap();
        let (nonce, sealed) = secrets
            .seal(1, "ANTHROPIC_API_KEY", "sk-ant-123456789")
            .unwrap();
        assert!(
            !sealed.windows(8).any(|w| w == b"sk-ant-1"),
            "ciphertext hides the value"
        );
        assert_eq!(
            secrets
                .open(1, "ANTHROPIC_API_KEY", &nonce, &sealed)
                .unwrap(),
            "sk-ant-123456789"
        );
        assert!(
            secrets
                .open(2, "ANTHROPIC_API_KEY", &nonce, &sealed)
                .is_err(),
            "another user"
        );
        assert!(
            secrets.open(1, "OTHER", &nonce, &sealed).is_err(),
            "another name"
        );
        let again = SecretBox::load_or_create(tmp.path()).unwrap();
        assert_eq!(
            again.open(1, "ANTHROPIC_API_KEY", &nonce, &sealed).unwrap(),
            "sk-ant-123456789",
            "key is kept"
        );
    }

    #[test]
    fn names_values_and_hints() {
        assert!(check_name("GLM_API_KEY").is_ok());
        for bad in ["", "lower", "1ABC", "A-B", "A B", &"A".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_value("").is_err());
        assert!(check_value("a\0b").is_err());
        assert!(check_value(&"x".repeat(VALUE_MAX + 1)).is_err());
        assert_eq!(hint("sk-ant-api03-abcdefWXYZ"), "…WXYZ");
        assert_eq!(hint("short"), "…");
    }
}
