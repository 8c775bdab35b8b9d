//! Installation tokens: random bearer tokens that the host knows only by their SHA-256
//! (an installation's file carries `intake.token_sha256`), so a leaked configuration
//! repository or store file grants nothing. A token is 256 random bits, so a fast hash is
//! enough: there is nothing to brute-force. Hashes are compared in constant time.

use std::fmt;

/// The SHA-256 of an installation's token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

/// Why a configured token hash was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "expected the token's SHA-256 as 64 hex digits (`printf %s \"$TOKEN\" | sha256sum`, or `weft token new`)"
)]
pub struct TokenHashError;

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> TokenHash {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        TokenHash(bytes)
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Result<TokenHash, TokenHashError> {
        let hex = hex.trim().as_bytes();
        if hex.len() != 64 {
            return Err(TokenHashError);
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(TokenHashError);
            *byte = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
        }
        Ok(TokenHash(bytes))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Equality whose timing does not depend on where the hashes differ.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0
            .iter()
            .zip(&other.0)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.to_hex())
    }
}

/// A new random installation token (256 bits from the operating system's generator, as
/// hex, prefixed so it is recognisable in a secret scanner) and its hash.
pub fn new_token() -> Result<(String, TokenHash), ring::error::Unspecified> {
    let bytes: [u8; 32] = ring::rand::generate(&ring::rand::SystemRandom::new())?.expose();
    let token = format!(
        "weft_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let hash = TokenHash::of(&token);
    Ok((token, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_round_trips_through_hex_and_matches_only_its_token() {
        let (token, hash) = new_token().expect("randomness");
        assert!(token.starts_with("weft_") && token.len() == 5 + 64);
        let parsed = TokenHash::from_hex(&hash.to_hex().to_uppercase()).expect("hex parses");
        assert!(parsed.matches(&TokenHash::of(&token)));
        assert!(!parsed.matches(&TokenHash::of("weft_something_else")));
        // The well-known SHA-256 of "abc", as `sha256sum` prints it.
        assert_eq!(
            TokenHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_hashes_are_refused() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(66)] {
            assert!(TokenHash::from_hex(bad).is_err(), "{bad:?}");
        }
    }
}
