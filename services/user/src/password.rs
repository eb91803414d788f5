//! Password hashing with argon2id (the argon2 crate's defaults: OWASP's m=19 MiB, t=2, p=1),
//! on blocking threads so a hash never stalls the runtime.

use std::sync::LazyLock;

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot hash the password: {0}")]
    Hash(argon2::password_hash::Error),
    #[error("stored hash is not a valid PHC string: {0}")]
    StoredHash(argon2::password_hash::Error),
    #[error("hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The PHC string of a fresh argon2id hash with a random salt.
pub async fn hash(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_now(&password)).await?
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

/// Whether `password` matches `stored`. With no stored hash (unknown user) it still does the
/// work of one verification, so the answer's timing does not tell which usernames exist.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let phc = stored.as_deref().unwrap_or(&DECOY);
        let parsed = PasswordHash::new(phc).map_err(PasswordError::StoredHash)?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await?
}

/// A hash of nothing anyone knows, verified against when the user does not exist.
static DECOY: LazyLock<String> =
    LazyLock::new(|| hash_now("decoy password for unknown users").unwrap_or_default());

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let a = hash("correct horse".into()).await.unwrap();
        let b = hash("correct horse".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.contains("correct horse"));
        assert!(
            verify("correct horse".into(), Some(a.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse".into(), Some(a)).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(
            !verify("decoy password for unknown users".into(), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_error_not_a_match() {
        assert!(verify("x".into(), Some("not a hash".into())).await.is_err());
    }
}
