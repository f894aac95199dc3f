//! Access tokens: JSON Web Tokens signed with HS256 under `rooms.jwt_secret`, as LiveKit and
//! Janus issue them from an app's backend. On WHIP/WHEP a token names its stream (`stream`) and
//! grants publishing (`publish`) or playing (`subscribe`) until `exp`; rooms will read `room`,
//! `sub` and `name` from the same claims.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// What a token says.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub(crate) struct Claims {
    /// The stream it is for (WHIP/WHEP).
    #[serde(default)]
    pub stream: Option<String>,
    /// The room it is for.
    #[serde(default)]
    pub room: Option<String>,
    /// The identity of its holder.
    #[serde(default)]
    pub sub: Option<String>,
    /// A display name.
    #[serde(default)]
    pub name: Option<String>,
    /// May publish.
    #[serde(default)]
    pub publish: bool,
    /// May play.
    #[serde(default)]
    pub subscribe: bool,
    /// Expiry, seconds since the epoch (required: a token without one is refused).
    #[serde(default)]
    pub exp: Option<u64>,
}

/// Why a token was not taken; each maps to 401 (the token is not valid) or 403 (valid, but
/// not for this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// Not a JWT, another algorithm, a bad signature or missing claims.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Past its `exp`.
    #[error("the token has expired")]
    Expired,
}

/// The key tokens are checked with.
#[derive(Clone)]
pub(crate) struct TokenKey {
    key: DecodingKey,
}

impl TokenKey {
    /// The key for `secret` (the shared HS256 secret).
    pub(crate) fn new(secret: &str) -> Self {
        TokenKey {
            key: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// Check `token`'s signature and claims; `fresh`: also its expiry (a new session needs a
    /// live token; the PATCH and DELETE of one it made need only a genuine one).
    pub(crate) fn verify(&self, token: &str, fresh: bool) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = fresh;
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp"]);
        jsonwebtoken::decode::<Claims>(token, &self.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm => TokenError::Invalid("not HS256".into()),
                ErrorKind::MissingRequiredClaim(c) => {
                    TokenError::Invalid(format!("no `{c}` claim"))
                }
                _ => TokenError::Invalid("not a JWT of the expected shape".into()),
            })
    }
}

/// Looks like a JWT (three base64url parts), so a refusal can say why it was not taken.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("ey")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    /// A token with `claims`, signed with `secret`.
    pub(crate) fn sign(secret: &str, claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("a token")
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn tokens_are_checked_for_signature_expiry_and_shape() {
        let key = TokenKey::new("s3cret");
        let good = sign(
            "s3cret",
            &json!({"stream": "live", "publish": true, "exp": now() + 60}),
        );
        assert!(looks_like_jwt(&good));
        let c = key.verify(&good, true).unwrap();
        assert_eq!(
            (c.stream.as_deref(), c.publish, c.subscribe),
            (Some("live"), true, false)
        );
        let other = sign("other", &json!({"stream": "live", "exp": now() + 60}));
        assert_eq!(
            key.verify(&other, true),
            Err(TokenError::Invalid("bad signature".into()))
        );
        let old = sign("s3cret", &json!({"stream": "live", "exp": now() - 3600}));
        assert_eq!(key.verify(&old, true), Err(TokenError::Expired));
        assert!(
            key.verify(&old, false).is_ok(),
            "genuine, for a session it made"
        );
        let no_exp = sign("s3cret", &json!({"stream": "live"}));
        assert_eq!(
            key.verify(&no_exp, true),
            Err(TokenError::Invalid("no `exp` claim".into()))
        );
        assert!(key.verify("key1", true).is_err());
        assert!(!looks_like_jwt("key1"));
    }
}
