//! Salesforce secrets given to the host through its API, sealed at rest.
//!
//! A secret posted to `PUT /v1/installations/{id}/credentials` is sealed with
//! ChaCha20-Poly1305 under the host's key and kept in the installation's document as
//! `salesforce.<name>_sealed = "v1:<base64 nonce ‖ ciphertext>"`. The installation id and
//! the secret's name are the associated data, so a sealed value copied into another
//! installation or another field does not open. The key comes from a file or an
//! environment variable named at start-up (`weft serve --secrets-key-file`,
//! `WEFT_SECRETS_KEY`); a store file without its key reveals no secret.
//!
//! Secrets read from the environment or a file (`*_env`, `*_file`) are never sealed: the
//! document names where they are, not what they are.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::salesforce::Secret;

const PREFIX: &str = "v1:";

/// The host's sealing key. Its `Debug` never shows the key.
pub struct Keyring {
    key: LessSafeKey,
    random: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keyring(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the secrets key must be 32 bytes given as 64 hex digits (e.g. `openssl rand -hex 32`)"
    )]
    Malformed,
    #[error("reading the secrets key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why a sealed value did not open (wrong key, another installation's value, tampering).
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the host has no secrets key (start weft serve with --secrets-key-file or WEFT_SECRETS_KEY)"
    )]
    NoKey,
    #[error("not a sealed value (expected \"v1:…\")")]
    Malformed,
    #[error("does not open with this host's key for this installation and field")]
    Refused,
    #[error("the system random source failed")]
    Random,
}

impl Keyring {
    /// A key of 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Keyring, KeyError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyError::Malformed);
        }
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| KeyError::Malformed)?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| KeyError::Malformed)?;
        Ok(Keyring {
            key: LessSafeKey::new(key),
            random: SystemRandom::new(),
        })
    }

    pub fn from_file(path: &Path) -> Result<Keyring, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Keyring::from_hex(&text)
    }

    /// Seals `secret` as field `name` of installation `installation`.
    pub fn seal(&self, installation: &str, name: &str, secret: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut sealed = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(installation, name)),
                &mut sealed,
            )
            .map_err(|_| SealError::Refused)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    /// Opens what [`Keyring::seal`] sealed for the same installation and field.
    pub fn open(&self, installation: &str, name: &str, sealed: &str) -> Result<Secret, SealError> {
        let encoded = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        let mut bytes = STANDARD.decode(encoded).map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let opened = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(installation, name)),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| SealError::Refused)?;
        let text = std::str::from_utf8(opened).map_err(|_| SealError::Refused)?;
        Ok(Secret::new(text))
    }
}

/// `installation` and `name` joined by a byte neither may contain.
fn aad(installation: &str, name: &str) -> Vec<u8> {
    let mut aad = installation.as_bytes().to_vec();
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_sealed_secret_opens_only_for_its_installation_and_field() {
        let keyring = Keyring::from_hex(KEY).expect("key");
        let sealed = keyring
            .seal("acme", "client_secret", "s3cr3t")
            .expect("sealed");
        assert!(sealed.starts_with("v1:") && !sealed.contains("s3cr3t"));
        assert_ne!(
            sealed,
            keyring
                .seal("acme", "client_secret", "s3cr3t")
                .expect("sealed"),
            "a fresh nonce each time"
        );
        let opened = keyring
            .open("acme", "client_secret", &sealed)
            .expect("opens");
        assert_eq!(opened.expose(), "s3cr3t");
        for (installation, name) in [("globex", "client_secret"), ("acme", "refresh_token")] {
            assert!(matches!(
                keyring.open(installation, name, &sealed),
                Err(SealError::Refused)
            ));
        }
        let other = Keyring::from_hex(&KEY.replace("00", "ff")).expect("key");
        assert!(matches!(
            other.open("acme", "client_secret", &sealed),
            Err(SealError::Refused)
        ));
        assert!(format!("{keyring:?}").contains(".."));
    }

    #[test]
    fn malformed_keys_and_values_are_refused() {
        assert!(Keyring::from_hex("abc").is_err());
        assert!(Keyring::from_hex(&"g".repeat(64)).is_err());
        let keyring = Keyring::from_hex(KEY).expect("key");
        assert!(matches!(
            keyring.open("acme", "x", "plain"),
            Err(SealError::Malformed)
        ));
        assert!(matches!(
            keyring.open("acme", "x", "v1:AA=="),
            Err(SealError::Malformed)
        ));
    }
}
