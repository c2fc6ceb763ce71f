//! The database: one sqlx `Any` pool over SQLite (default, one file, WAL) or
//! PostgreSQL (scale-out), with one migration set per backend. Queries are written
//! once with `$n` placeholders, which both backends accept.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

mod settings;
pub use settings::StoreConfig;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlx(#[source] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("unsupported database url `{0}`")]
    UnsupportedUrl(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        storage_fault::note(&error);
        StoreError::Sqlx(error)
    }
}

/// A full or failing disk under SQLite, and the connections it leaves behind.
///
/// When a write fails with `SQLITE_FULL` or `SQLITE_IOERR`, SQLite may roll the
/// transaction back on its own; the driver's `ROLLBACK` then fails, its count of
/// open transactions stays at one, and the connection's next transaction is a
/// `SAVEPOINT` whose rollback (`ROLLBACK TO`) leaves SQLite inside a transaction
/// that holds the write lock: every other writer waits, then fails with
/// "database is locked", after the space is back (issue 18 item 1, the full-disk
/// row of the fault suite). So every connection opened before the last such error
/// is closed when it is next released (closing rolls back whatever it still holds),
/// and the pool opens fresh ones.
mod storage_fault {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// Milliseconds after [`base`] of the last storage fault, plus one (0: none).
    static LAST: AtomicU64 = AtomicU64::new(0);

    fn base() -> Instant {
        static BASE: OnceLock<Instant> = OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    fn now_ms() -> u64 {
        u64::try_from(base().elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A SQLite error with the primary result code of a full disk (13) or an I/O
    /// error (10).
    pub(super) fn is_storage_fault(error: &sqlx::Error) -> bool {
        let Some(code) = error
            .as_database_error()
            .and_then(|e| e.try_downcast_ref::<sqlx::sqlite::SqliteError>())
            .and_then(sqlx::error::DatabaseError::code)
            .and_then(|c| c.parse::<u32>().ok())
        else {
            return false;
        };
        matches!(code & 0xff, 10 | 13)
    }

    /// Remember `error` if it is a storage fault.
    pub(super) fn note(error: &sqlx::Error) {
        if is_storage_fault(error) {
            LAST.store(now_ms().saturating_add(1), Ordering::SeqCst);
        }
    }

    /// Keep a connection of this `age` (false: it was open at the last fault).
    pub(super) fn keep(age: Duration) -> bool {
        let last = LAST.load(Ordering::SeqCst);
        if last == 0 {
            return true;
        }
        let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        now_ms().saturating_sub(age) >= last
    }
}

/// The shared handle to the database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Which `connect` made this handle (clones share it): a key for what is kept
    /// per database in memory (`schedule::runs` shares slow counts).
    id: u64,
    /// Transactions begun through [`Store::begin_write`] (clones share it): the
    /// fan-out, SQLite's one bulk writer, gives way when this moved while it held
    /// the lock ([`Store::write_demand`]).
    writes_begun: Arc<AtomicU64>,
}

/// The id the next [`Store::connect`] gets.
static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Connect to `url`, creating the SQLite file (and its directory) if missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let url = match backend {
            Backend::Sqlite => sqlite_url_with_create(url)?,
            Backend::Postgres => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; the busy timeout
                        // queues writers instead of failing them.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .after_release(move |_conn, meta| {
                Box::pin(
                    async move { Ok(backend != Backend::Sqlite || storage_fault::keep(meta.age)) },
                )
            })
            .connect_with(options)
            .await?;
        let id = NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            pool,
            backend,
            id,
            writes_begun: Arc::default(),
        })
    }

    /// Which connection of this process this is: the same for every clone, another
    /// for each [`Store::connect`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Apply every migration not yet applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// The pool, for the query layers of each domain module.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The row-lock clause a claim query ends its `SELECT … LIMIT n` with, so no two
    /// replicas claim one row: `FOR UPDATE SKIP LOCKED` on PostgreSQL (rows another
    /// transaction holds are skipped, not waited for); empty on SQLite, where the
    /// claiming `UPDATE` holds the database's single write lock anyway.
    pub fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// How many write transactions this process has begun through
    /// [`Store::begin_write`] so far (a count that only grows): a bulk writer reads
    /// it before and after holding SQLite's write lock to learn whether another
    /// writer waited meanwhile.
    pub fn write_demand(&self) -> u64 {
        self.writes_begun.load(Ordering::Relaxed)
    }

    /// Begin a transaction that will write. On SQLite it takes the write lock at
    /// once (through a no-op write): a transaction that reads first and writes later
    /// fails with SQLITE_BUSY_SNAPSHOT when another connection committed in between,
    /// instead of waiting its turn.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        self.writes_begun.fetch_add(1, Ordering::Relaxed);
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Sqlite {
            sqlx::query("UPDATE settings SET value = value WHERE 1 = 0")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Delete at most `batch` rows of `table` that match `filter` (SQL with `$1`
    /// bound to `cutoff`), oldest `key` first, in one short statement; returns how
    /// many went. The mechanism of the history purge; each table's owner
    /// calls it for its own table (one writer per table). `key` is the primary key
    /// (`id`, or a column list such as `operator, fingerprint`).
    ///
    /// # Errors
    /// A store failure; nothing is deleted then.
    pub async fn delete_batch(
        &self,
        table: &'static str,
        key: &'static str,
        filter: &'static str,
        cutoff: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!(
            "DELETE FROM {table} WHERE ({key}) IN (
               SELECT {key} FROM {table} WHERE {filter} ORDER BY {key} LIMIT $2)"
        ))
        .bind(cutoff)
        .bind(batch.max(1))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A stored setting.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let value: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value.map(|(v,)| v))
    }

    /// Add one to the counter kept as setting `key` (absent: 0) and return the new
    /// value, in one statement: two processes never get the same value.
    ///
    /// # Errors
    /// A store failure, or a setting under `key` that is not an integer.
    pub async fn next_in_counter(&self, key: &str) -> Result<i64, StoreError> {
        let (value,): (String,) = sqlx::query_as(
            "INSERT INTO settings (key, value) VALUES ($1, '1')
             ON CONFLICT (key) DO UPDATE
             SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)
             RETURNING value",
        )
        .bind(key)
        .fetch_one(&self.pool)
        .await?;
        value
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("setting {key} = {value:?}: {e}")))
    }

    /// Store a setting unless one exists; returns whether it was stored.
    pub async fn insert_setting_if_absent(
        &self,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Close the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Make sure the SQLite file may be created, and its directory exists.
fn sqlite_url_with_create(url: &str) -> Result<String, StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some(dir) = std::path::Path::new(path).parent()
        && path != ":memory:"
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !params.iter().any(|p| p.starts_with("mode=")) {
        params.push("mode=rwc");
    }
    Ok(format!("sqlite://{path}?{}", params.join("&")))
}

/// Milliseconds since the Unix epoch: every stored timestamp uses it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
