//! Users in a SQL database: embedded SQLite by default, PostgreSQL to run several replicas.
//!
//! Both go through sqlx's `Any` driver with `$1` placeholders (SQLite accepts them too); only the
//! schema differs, so each has its own embedded migrations. On SQLite, the lookups bypass sqlx:
//! its SQLite driver hands every query to a worker thread and back, and those two thread
//! switches cost more than the query itself (half the service's CPU per `GetUser`, profiled
//! with `perf` under `scripts/bench`). They run in place instead, on read-only connections
//! ([`Readers`]): a lookup of an indexed row in WAL mode takes microseconds and never waits for
//! the writer.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rpc::volo_etcd::telemetry;
use sqlx::{
    AnyPool, Row,
    any::{AnyPoolOptions, AnyRow},
    migrate::Migrator,
};
use tracing::{Instrument as _, Span};

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
    #[error("database error: {0}")]
    Read(#[from] rusqlite::Error),
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
    /// Migrations, writes, and every query on PostgreSQL.
    pool: AnyPool,
    /// SQLite only: the connections lookups run on.
    readers: Option<Arc<Readers>>,
    /// OpenTelemetry's name of the database system: `sqlite` or `postgresql`.
    system: &'static str,
}

impl Store {
    /// Opens `sqlite://PATH` (creating the file, its directory and the schema on first start) or
    /// `postgres://...`, and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite_file = url
            .strip_prefix("sqlite://")
            .map(|path| PathBuf::from(path.split('?').next().unwrap_or(path)));
        let sqlite = sqlite_file.is_some();
        let (connect_url, migrator) = if let Some(file) = &sqlite_file {
            create_parent_dir(file)?;
            let sep = if url.contains('?') { '&' } else { '?' };
            (format!("{url}{sep}mode=rwc"), &SQLITE_MIGRATIONS)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), &POSTGRES_MIGRATIONS)
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
        let readers = sqlite_file.map(|file| Arc::new(Readers::new(file)));
        let system = if sqlite { "sqlite" } else { "postgresql" };
        Ok(Store {
            pool,
            readers,
            system,
        })
    }

    /// A database client span for one statement on `users`, when the call is traced.
    fn query_span(&self, operation: &'static str) -> Span {
        telemetry::span_if_traced(|| {
            tracing::info_span!(
                target: telemetry::TRACE_ONLY,
                "query",
                otel.name = format!("{operation} users"),
                otel.kind = "client",
                db.system = self.system,
                db.system.name = self.system,
                db.operation.name = operation,
                db.collection.name = "users",
            )
        })
    }

    /// Inserts a user; `Duplicate` when the name is taken.
    /// Inserts a user; `Duplicate` when the name is taken, except by a row that this same
    /// `request_id` inserted: that is a retry of this registration, answered with its id.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        created_at: i64,
        request_id: Option<&str>,
    ) -> Result<i64, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO users (username, password_hash, created_at, request_id) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(created_at)
        .bind(request_id)
        .fetch_one(&self.pool)
        .instrument(self.query_span("INSERT"))
        .await
        .map_err(duplicate_or_query);
        match (inserted, request_id) {
            (Ok(row), _) => Ok(row.try_get("id")?),
            (Err(StoreError::Duplicate), Some(request_id)) => {
                let mine =
                    sqlx::query("SELECT id FROM users WHERE username = $1 AND request_id = $2")
                        .bind(username)
                        .bind(request_id)
                        .fetch_optional(&self.pool)
                        .instrument(self.query_span("SELECT"))
                        .await?;
                match mine {
                    Some(row) => Ok(row.try_get("id")?),
                    None => Err(StoreError::Duplicate),
                }
            }
            (Err(e), _) => Err(e),
        }
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let span = self.query_span("SELECT");
        if let Some(readers) = &self.readers {
            return span.in_scope(|| readers.user("username = ?1", username));
        }
        let row = sqlx::query(
            "SELECT id, username, password_hash, created_at FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .instrument(span)
        .await?;
        row.map(|r| record(&r)).transpose()
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let span = self.query_span("SELECT");
        if let Some(readers) = &self.readers {
            return span.in_scope(|| readers.user("id = ?1", id));
        }
        let row =
            sqlx::query("SELECT id, username, password_hash, created_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .instrument(span)
                .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// Waits for queries in flight, then closes every connection.
    pub async fn close(&self) {
        if let Some(readers) = &self.readers {
            readers
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        self.pool.close().await;
    }
}

/// Read-only SQLite connections for lookups run in place. A lookup holds one only while it runs,
/// without awaiting, so there are never more than the runtime's worker threads.
#[derive(Debug)]
struct Readers {
    file: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    fn new(file: PathBuf) -> Self {
        Self {
            file,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The user matching `condition` (on `?1`).
    fn user(
        &self,
        condition: &str,
        value: impl rusqlite::ToSql,
    ) -> Result<Option<UserRecord>, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => rusqlite::Connection::open_with_flags(
                &self.file,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
        };
        let sql =
            format!("SELECT id, username, password_hash, created_at FROM users WHERE {condition}");
        let found = connection.prepare_cached(&sql)?.query_row([value], |row| {
            Ok(UserRecord {
                id: row.get(0)?,
                username: row.get(1)?,
                password_hash: row.get(2)?,
                created_at: row.get(3)?,
            })
        });
        let found = match found {
            Ok(user) => Some(user),
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(e) => return Err(e.into()),
        };
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
        Ok(found)
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
