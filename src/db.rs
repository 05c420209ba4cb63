//! Database connection and migrations, for SQLite (embedded default) and
//! PostgreSQL through one `sqlx::AnyPool`.
//!
//! `Any` restricts column types to integers, floats, text and blobs, so
//! timestamps are unix seconds (`i64`) and JSON is text. Placeholders are
//! written `$1, $2…`, which both backends accept.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Connecting failed (the URL is redacted).
    #[error("cannot connect to `{url}`: {source}")]
    Connect {
        /// The redacted URL.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Opens the database (creating a SQLite file if missing) and applies the
/// migrations of its backend.
pub async fn connect(url: &DatabaseUrl) -> Result<AnyPool, DbError> {
    sqlx::any::install_default_drivers();
    let connect_error = |source| DbError::Connect {
        url: url.to_string(),
        source,
    };
    let pool = if url.is_postgres() {
        let options = AnyConnectOptions::from_str(url.expose()).map_err(connect_error)?;
        AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.disable_statement_logging())
            .await
            .map_err(connect_error)?
    } else {
        let options =
            AnyConnectOptions::from_str(&sqlite_url(url.expose())).map_err(connect_error)?;
        AnyPoolOptions::new()
            // WAL lets readers proceed during a write; the busy timeout makes
            // concurrent writers wait for each other instead of failing.
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            // An embedded database's connection cannot be lost between two
            // uses; sqlx's ping before each acquire cost every statement a
            // second round trip to the connection's thread.
            .test_before_acquire(false)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("pragma journal_mode = wal; pragma busy_timeout = 5000; pragma foreign_keys = on;")
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options.disable_statement_logging())
            .await
            .map_err(connect_error)?
    };
    if url.is_postgres() {
        sqlx::migrate!("schema/migrations/postgres")
            .run(&pool)
            .await?;
    } else {
        sqlx::migrate!("schema/migrations/sqlite")
            .run(&pool)
            .await?;
    }
    Ok(pool)
}

/// The SQLite file a process opened, as the file system knew it then. A
/// process keeps writing into a file that was deleted or replaced under
/// it, and those writes are lost: they must be refused instead.
#[derive(Debug, Clone)]
pub struct FileIdentity {
    path: std::path::PathBuf,
    dev: u64,
    ino: u64,
}

/// The database file is no longer the one in use.
#[derive(Debug, thiserror::Error)]
#[error("the database file `{}` was {what} while in use; writes are refused until cedargate is restarted", path.display())]
pub struct FileChanged {
    path: std::path::PathBuf,
    what: &'static str,
}

impl FileIdentity {
    /// The identity of the SQLite file of `url` (`None` for PostgreSQL or
    /// an in-memory database).
    pub fn of(url: &DatabaseUrl) -> std::io::Result<Option<Self>> {
        use std::os::unix::fs::MetadataExt;
        let Some(path) = url.sqlite_path() else {
            return Ok(None);
        };
        let meta = std::fs::metadata(&path)?;
        Ok(Some(Self {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
        }))
    }

    /// Fails when the file was deleted, or replaced by another.
    pub fn check(&self) -> Result<(), FileChanged> {
        use std::os::unix::fs::MetadataExt;
        let what = match std::fs::metadata(&self.path) {
            Err(_) => "deleted",
            Ok(meta) if (meta.dev(), meta.ino()) != (self.dev, self.ino) => "replaced",
            Ok(_) => return Ok(()),
        };
        Err(FileChanged {
            path: self.path.clone(),
            what,
        })
    }
}

/// A database URL whose `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The full URL, password included: pass it to the driver, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `true` for `postgres://` and `postgresql://` URLs.
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }

    /// The SQLite file path, for `sqlite://` URLs.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self
            .0
            .strip_prefix("sqlite://")
            .or_else(|| self.0.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    fn redacted(&self) -> String {
        // scheme://user:password@host → scheme://user:***@host
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &self.0[scheme_end + 3..at];
                match credentials.find(':') {
                    Some(colon) => format!(
                        "{}{}:***{}",
                        &self.0[..scheme_end + 3],
                        &credentials[..colon],
                        &self.0[at..]
                    ),
                    None => self.0.clone(),
                }
            }
            _ => self.0.clone(),
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = DatabaseUrl(s.to_owned());
        if url.is_postgres() || url.0.starts_with("sqlite:") {
            Ok(url)
        } else {
            Err("expected a `sqlite://` or `postgres://` URL".to_owned())
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Adds `mode=rwc` so that a missing SQLite file is created.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_url;

    #[test]
    fn a_missing_sqlite_file_is_created() {
        assert_eq!(sqlite_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
    }
}
