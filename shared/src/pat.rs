//! The personal access token format: `lk_pat_` + 32 random base62 characters + 6 base62
//! characters of the CRC32 of those 32. Secret scanners recognise the prefix, and a
//! mistyped or truncated token is refused without a database look-up.

use crate::secret::SecretString;
use rand::Rng;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "lk_pat_";
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// Total length of a PAT.
pub const LEN: usize = PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;
/// How many characters of a PAT are kept to show in listings.
pub const DISPLAY_PREFIX_LEN: usize = PREFIX.len() + 5;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a well-formed PAT.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatFormatError {
    #[error("not a Latchkey personal access token")]
    NotAPat,
    #[error("malformed personal access token")]
    Malformed,
    #[error("personal access token checksum does not match")]
    BadChecksum,
}

/// A well-formed PAT (checksum verified). It may still be unknown, expired or revoked.
#[derive(Clone, Debug)]
pub struct Pat(SecretString);

impl Pat {
    /// A fresh token from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let random: String = (0..RANDOM_LEN).map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char).collect();
        let checksum = checksum(&random);
        Self(SecretString::new(format!("{PREFIX}{random}{checksum}")))
    }

    /// Checks the shape and checksum of a presented token.
    pub fn parse(token: &str) -> Result<Self, PatFormatError> {
        let rest = token.strip_prefix(PREFIX).ok_or(PatFormatError::NotAPat)?;
        if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(PatFormatError::Malformed);
        }
        let (random, sum) = rest.split_at(RANDOM_LEN);
        if checksum(random) != sum {
            return Err(PatFormatError::BadChecksum);
        }
        Ok(Self(SecretString::new(token.to_owned())))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }

    /// SHA-256 of the whole token, hex: the only form the cloud stores.
    pub fn hash(&self) -> String {
        sha256_hex(self.0.expose())
    }

    /// The first characters, safe to show in listings.
    pub fn display_prefix(&self) -> String {
        self.0.expose()[..DISPLAY_PREFIX_LEN].to_owned()
    }
}

/// Hex SHA-256, used for every token the cloud stores only as a hash.
pub fn sha256_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    out
}

fn checksum(random: &str) -> String {
    let mut n = u64::from(crc32fast::hash(random.as_bytes()));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse() {
        for _ in 0..100 {
            let pat = Pat::generate();
            let s = pat.secret().expose().clone();
            assert_eq!(s.len(), LEN);
            assert!(Pat::parse(&s).is_ok());
            assert!(pat.display_prefix().starts_with("lk_pat_"));
        }
    }

    #[test]
    fn tampering_is_caught() {
        let s = Pat::generate().secret().expose().clone();
        let mut bytes = s.into_bytes();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        let tampered = String::from_utf8(bytes).unwrap_or_default();
        assert_eq!(Pat::parse(&tampered).err(), Some(PatFormatError::BadChecksum));
        assert_eq!(Pat::parse("ghp_abc").err(), Some(PatFormatError::NotAPat));
        assert_eq!(Pat::parse("lk_pat_short").err(), Some(PatFormatError::Malformed));
    }

    #[test]
    fn hash_is_stable_hex() {
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
