//! Users in a SQL database: embedded SQLite by default, PostgreSQL to run several replicas.
//!
//! Both go through sqlx's `Any` driver with `$1` placeholders (SQLite accepts them too); only the
//! schema differs, so each has its own embedded migrations.

use std::path::{Path, PathBuf};

use sqlx::{
    AnyPool, Row,
    any::{AnyPoolOptions, AnyRow},
    migrate::Migrator,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The username is taken (the database's unique constraint said so).
    #[error("username already exists")]
    Duplicate,
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Open(#[source] sqlx::Error),
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// A stored user, hash included: it never leaves this service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    /// Unix seconds.
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Opens `sqlite://PATH` (creating the file, its directory and the schema on first start) or
    /// `postgres://...`, and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (connect_url, migrator, sqlite) = if let Some(path) = url.strip_prefix("sqlite://") {
            create_parent_dir(Path::new(path.split('?').next().unwrap_or(path)))?;
            let sep = if path.contains('?') { '&' } else { '?' };
            (format!("{url}{sep}mode=rwc"), &SQLITE_MIGRATIONS, true)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), &POSTGRES_MIGRATIONS, false)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .connect(&connect_url)
            .await
            .map_err(StoreError::Open)?;
        if sqlite {
            // Readers do not wait for the writer; the setting is kept in the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(StoreError::Open)?;
        }
        migrator.run(&pool).await?;
        Ok(Store { pool })
    }

    /// Inserts a user; `Duplicate` when the name is taken.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        created_at: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(created_at)
        .fetch_one(&self.pool)
        .await
        .map_err(duplicate_or_query)?;
        Ok(row.try_get("id")?)
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, created_at FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| record(&r)).transpose()
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let row =
            sqlx::query("SELECT id, username, password_hash, created_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// Waits for queries in flight, then closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The one place a unique-constraint violation becomes a domain error.
fn duplicate_or_query(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate,
        _ => StoreError::Query(e),
    }
}

fn record(row: &AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

fn create_parent_dir(file: &Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}
