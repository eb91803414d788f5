//! Bearer tokens: HS256 only, with a secret of at least 32 bytes.

use std::time::Duration;

use rpc::runtime::unix_now;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The shortest secret accepted: HS256 needs a key as long as its hash.
pub const MIN_SECRET_LEN: usize = 32;

/// Why the token keys could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no JWT secret: set --jwt-secret or JWT_SECRET to 32 or more random bytes \
         (e.g. `openssl rand -hex 32`), or pass --dev to sign with a random one for this run"
    )]
    Missing,
    #[error("the JWT secret is {0} bytes; it must be at least {MIN_SECRET_LEN} bytes")]
    TooShort(usize),
    #[error("no randomness available for a JWT secret: {0}")]
    Random(String),
}

/// Why a request's token was refused; the message is safe to show the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed bearer token")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
}

/// Issues and checks tokens. Cheap to share behind an `Arc`.
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Jwt {
    /// Keys from `secret`, refused when shorter than [`MIN_SECRET_LEN`].
    pub fn new(secret: &[u8], ttl: Duration) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort(secret.len()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: a token is dead at `exp`, not a minute later.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        })
    }

    /// Keys from a fresh random secret: tokens die with the process.
    pub fn random(ttl: Duration) -> Result<Self, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        Self::new(&secret, ttl)
    }

    /// A token for `subject` and its expiry in Unix seconds.
    pub fn issue(&self, subject: &str) -> Result<(String, u64), jsonwebtoken::errors::Error> {
        let iat = unix_now().as_secs();
        let exp = iat.saturating_add(self.ttl.as_secs());
        self.issue_with(subject, iat, exp).map(|t| (t, exp))
    }

    /// A token with explicit times (tests make expired tokens with it).
    pub fn issue_with(
        &self,
        subject: &str,
        iat: u64,
        exp: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: subject.to_owned(),
            iat,
            exp,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Checks an `Authorization` header value: `Bearer <token>`, HS256, signed by us, alive.
    pub fn verify_header(&self, authorization: Option<&[u8]>) -> Result<Claims, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::Malformed);
        }
        self.verify(token.trim())
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) => {
                    AuthError::Malformed
                }
                _ => AuthError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn short_secret_is_refused() {
        assert!(matches!(
            Jwt::new(b"short", Duration::from_secs(60)),
            Err(KeyError::TooShort(5))
        ));
    }

    #[test]
    fn round_trip_and_failures() {
        let jwt = Jwt::new(SECRET, Duration::from_secs(60)).unwrap();
        let (token, exp) = jwt.issue("42").unwrap();
        assert!(exp > unix_now().as_secs());
        let header = format!("Bearer {token}");
        assert_eq!(
            jwt.verify_header(Some(header.as_bytes())).unwrap().sub,
            "42"
        );
        assert_eq!(jwt.verify_header(None).unwrap_err(), AuthError::Missing);
        assert_eq!(
            jwt.verify_header(Some(token.as_bytes())).unwrap_err(),
            AuthError::Malformed
        );
        let other = Jwt::new(b"another-secret-another-secret-xx", Duration::from_secs(60)).unwrap();
        assert_eq!(other.verify(&token).unwrap_err(), AuthError::Invalid);
        let old = jwt.issue_with("42", 1, 2).unwrap();
        assert_eq!(jwt.verify(&old).unwrap_err(), AuthError::Expired);
    }

    #[test]
    fn alg_none_is_refused() {
        let jwt = Jwt::new(SECRET, Duration::from_secs(60)).unwrap();
        // {"alg":"none","typ":"JWT"} . {"sub":"42","iat":1,"exp":99999999999} . (no signature)
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsImlhdCI6MSwiZXhwIjo5OTk5OTk5OTk5OX0.";
        assert!(jwt.verify(token).is_err());
    }
}
