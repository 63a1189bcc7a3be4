//! The server's VAPID key pair (RFC 8292): generated once into the server folder of the data dir,
//! its public half handed to browsers as `applicationServerKey`. Replacing it ends every
//! subscription, since push services refuse a key other than the one subscribed with.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};

use crate::layout::write_private_file;

const KEY_FILE: &str = "vapid-private-key";

pub struct Vapid {
    pub key_pair: ES256KeyPair,
    /// The uncompressed P-256 point, base64url: what `PushManager.subscribe` takes.
    pub public_key: String,
}

impl Vapid {
    /// A copy of the key pair (the type cannot be cloned).
    pub fn key_pair(&self) -> anyhow::Result<ES256KeyPair> {
        ES256KeyPair::from_bytes(&self.key_pair.to_bytes())
            .map_err(|e| anyhow::anyhow!("the VAPID key cannot be copied: {e}"))
    }

    pub fn load_or_create(server_dir: &Path) -> anyhow::Result<Self> {
        let path = server_dir.join(KEY_FILE);
        let key_pair = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let raw = URL_SAFE_NO_PAD
                    .decode(text.trim())
                    .with_context(|| format!("{} is not base64url", path.display()))?;
                ES256KeyPair::from_bytes(&raw)
                    .map_err(|e| anyhow::anyhow!("{} is not a P-256 key: {e}", path.display()))?
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let key_pair = ES256KeyPair::generate();
                write_private_file(
                    &path,
                    URL_SAFE_NO_PAD.encode(key_pair.to_bytes()).as_bytes(),
                )?;
                key_pair
            }
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        let public_key =
            URL_SAFE_NO_PAD.encode(key_pair.public_key().public_key().to_bytes_uncompressed());
        Ok(Self {
            key_pair,
            public_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = Vapid::load_or_create(dir.path()).unwrap();
        let again = Vapid::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key, again.public_key);
        assert_eq!(URL_SAFE_NO_PAD.decode(&first.public_key).unwrap().len(), 65);
    }
}
