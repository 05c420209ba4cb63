//! One-time invitation secrets: 256 random bits sent once, stored as
//! SHA-256. The mailer mints an invitation's secret when it sends the link.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The secret in an invitation link. `Debug` never shows it.
pub struct InviteToken(String);

impl InviteToken {
    /// A fresh token: see [`random_secret`].
    pub fn generate() -> Self {
        Self(random_secret())
    }

    /// The secret, for the e-mail only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored.
    pub fn hash(&self) -> String {
        hash_token(&self.0)
    }
}

impl fmt::Debug for InviteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteToken(***)")
    }
}

/// 32 bytes (256 bits) from the thread's CSPRNG (seeded from the OS),
/// base64url without padding: 43 characters. Invitation links and the
/// acceptance page's CSRF tokens.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 (hex) of a presented token. Lookups go by this hash through a
/// unique index, so no comparison ever touches the secret itself.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_long_and_hidden_from_debug() {
        let a = InviteToken::generate();
        let b = InviteToken::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
        assert_eq!(format!("{a:?}"), "InviteToken(***)");
        assert_eq!(a.hash(), hash_token(a.expose()));
        assert_ne!(a.hash(), a.expose());
    }
}
