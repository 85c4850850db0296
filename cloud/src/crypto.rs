//! Secrets at rest: a key ring of master keys, AES-256-GCM with a fresh 96-bit nonce per
//! value, data keys derived with HKDF-SHA256, and associated data that binds each
//! ciphertext to its table, column and row.
//!
//! Stored form: `version (4 bytes, big endian) ‖ nonce (12) ‖ ciphertext+tag`. The version
//! names the master key that sealed it, so old rows keep decrypting after a rotation.
//! This module never logs, and its errors never carry plaintext.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hkdf::Hkdf;
use latchkey_shared::secret::SecretString;
use rand::RngCore;
use sha2::Sha256;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 4 + NONCE_LEN;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key is not valid base64 of 32 bytes{0}")]
    BadMasterKey(String),
    #[error("no master key with version {0} is configured; it is needed to decrypt data sealed with it")]
    UnknownKeyVersion(u32),
    #[error("stored ciphertext is truncated or corrupt")]
    Corrupt,
    #[error("cannot decrypt {0}: the master key is wrong or the value was moved from another row or column")]
    Decrypt(String),
    #[error("encryption failed")]
    Encrypt,
}

/// Which stored value a ciphertext belongs to. Used as AEAD associated data.
#[derive(Clone, Copy, Debug)]
pub struct Aad<'a> {
    pub table: &'static str,
    pub column: &'static str,
    pub row_id: &'a str,
}

impl Aad<'_> {
    fn bytes(&self) -> Vec<u8> {
        format!("latchkey/v1/{}/{}/{}", self.table, self.column, self.row_id).into_bytes()
    }

    fn describe(&self) -> String {
        format!("{}.{} of row {}", self.table, self.column, self.row_id)
    }
}

/// One master key's derived material.
struct KeyMaterial {
    aead: Aes256Gcm,
    jwt: Zeroizing<Vec<u8>>,
    csrf: Zeroizing<Vec<u8>>,
}

/// All configured master keys; `active` encrypts, every one decrypts.
pub struct KeyRing {
    active: u32,
    keys: BTreeMap<u32, KeyMaterial>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Parses a base64 master key (32 bytes).
pub fn decode_master_key(b64: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| CryptoError::BadMasterKey(String::new()))?,
    );
    if bytes.len() != 32 {
        return Err(CryptoError::BadMasterKey(format!(" (it decodes to {} bytes)", bytes.len())));
    }
    Ok(bytes)
}

/// A new random master key, base64.
pub fn generate_master_key() -> SecretString {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    SecretString::new(base64::engine::general_purpose::STANDARD.encode(key.as_ref()))
}

impl KeyRing {
    /// Builds the ring from `(version, base64 key)` pairs; `active` must be among them.
    pub fn new(active: u32, keys: &[(u32, SecretString)]) -> Result<Self, CryptoError> {
        let mut ring = BTreeMap::new();
        for (version, b64) in keys {
            let master = decode_master_key(b64.expose())?;
            let hk = Hkdf::<Sha256>::new(Some(b"latchkey"), &master);
            let mut data_key = Zeroizing::new([0u8; 32]);
            hk.expand(b"latchkey/aes-256-gcm/v1", data_key.as_mut())
                .map_err(|_| CryptoError::BadMasterKey(String::new()))?;
            let mut jwt = Zeroizing::new(vec![0u8; 32]);
            hk.expand(b"latchkey/jwt-hs256/v1", jwt.as_mut()).map_err(|_| CryptoError::BadMasterKey(String::new()))?;
            let mut csrf = Zeroizing::new(vec![0u8; 32]);
            hk.expand(b"latchkey/csrf-hmac-sha256/v1", csrf.as_mut())
                .map_err(|_| CryptoError::BadMasterKey(String::new()))?;
            let aead =
                Aes256Gcm::new_from_slice(data_key.as_ref()).map_err(|_| CryptoError::BadMasterKey(String::new()))?;
            ring.insert(*version, KeyMaterial { aead, jwt, csrf });
        }
        if !ring.contains_key(&active) {
            return Err(CryptoError::UnknownKeyVersion(active));
        }
        Ok(Self { active, keys: ring })
    }

    pub fn active_version(&self) -> u32 {
        self.active
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// Seals `plaintext` under the active key, bound to `aad`.
    pub fn seal(&self, aad: Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.seal_with(self.active, aad, plaintext)
    }

    /// Seals under a given key version (key check values are sealed by every version).
    pub fn seal_with(&self, version: u32, aad: Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.keys.get(&version).ok_or(CryptoError::UnknownKeyVersion(version))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad_bytes = aad.bytes();
        let ct = key
            .aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad_bytes })
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Seals a secret string.
    pub fn seal_str(&self, aad: Aad<'_>, secret: &SecretString) -> Result<Vec<u8>, CryptoError> {
        self.seal(aad, secret.expose().as_bytes())
    }

    /// Opens a stored value; fails clearly on a wrong key or a moved ciphertext.
    pub fn open(&self, aad: Aad<'_>, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let version = Self::version_of(stored)?;
        let key = self.keys.get(&version).ok_or(CryptoError::UnknownKeyVersion(version))?;
        let aad_bytes = aad.bytes();
        key.aead
            .decrypt(Nonce::from_slice(&stored[4..HEADER_LEN]), Payload { msg: &stored[HEADER_LEN..], aad: &aad_bytes })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt(aad.describe()))
    }

    /// Opens a stored secret string.
    pub fn open_str(&self, aad: Aad<'_>, stored: &[u8]) -> Result<SecretString, CryptoError> {
        let bytes = self.open(aad, stored)?;
        String::from_utf8(bytes.to_vec()).map(SecretString::new).map_err(|_| CryptoError::Corrupt)
    }

    /// The key version a stored value was sealed with.
    pub fn version_of(stored: &[u8]) -> Result<u32, CryptoError> {
        if stored.len() < HEADER_LEN + 16 {
            return Err(CryptoError::Corrupt);
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&stored[..4]);
        Ok(u32::from_be_bytes(v))
    }

    /// HS256 signing key for access JWTs, derived from the given master key version.
    pub fn jwt_key(&self, version: u32) -> Option<&[u8]> {
        self.keys.get(&version).map(|k| k.jwt.as_slice())
    }

    /// HMAC-SHA256 keys for form tokens (`access::csrf`): the active one first, then the
    /// others, so a form rendered before a rotation still posts.
    pub fn csrf_keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let active = self.keys.get(&self.active).map(|k| k.csrf.as_slice());
        active.into_iter().chain(self.keys.iter().filter(|(v, _)| **v != self.active).map(|(_, k)| k.csrf.as_slice()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_db::ring;

    #[test]
    fn round_trip_and_binding() {
        let k1 = generate_master_key();
        let r = ring(1, &[(1, &k1)]);
        let aad = Aad { table: "managed_apps", column: "client_secret", row_id: "a" };
        let ct = r.seal(aad, b"s3cret").unwrap();
        assert_eq!(&*r.open(aad, &ct).unwrap(), b"s3cret");
        // Another row or column: refused.
        assert!(matches!(r.open(Aad { row_id: "b", ..aad }, &ct), Err(CryptoError::Decrypt(_))));
        assert!(matches!(r.open(Aad { column: "client_id", ..aad }, &ct), Err(CryptoError::Decrypt(_))));
        // Fresh nonce each time.
        assert_ne!(ct, r.seal(aad, b"s3cret").unwrap());
        // A wrong master key with the same version: clear error, not garbage.
        let wrong = ring(1, &[(1, &generate_master_key())]);
        assert!(matches!(wrong.open(aad, &ct), Err(CryptoError::Decrypt(_))));
        // Rotation: the new active key seals, the old one still opens.
        let k2 = generate_master_key();
        let rotated = ring(2, &[(1, &k1), (2, &k2)]);
        assert_eq!(&*rotated.open(aad, &ct).unwrap(), b"s3cret");
        assert_eq!(KeyRing::version_of(&rotated.seal(aad, b"x").unwrap()).unwrap(), 2);
        // Retired version: says which one is missing.
        let only2 = ring(2, &[(2, &k2)]);
        assert!(matches!(only2.open(aad, &ct), Err(CryptoError::UnknownKeyVersion(1))));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(KeyRing::new(1, &[(1, SecretString::from("not base64!"))]).is_err());
        assert!(KeyRing::new(1, &[(1, SecretString::from("c2hvcnQ="))]).is_err());
        assert!(KeyRing::new(2, &[(1, generate_master_key())]).is_err());
    }
}
