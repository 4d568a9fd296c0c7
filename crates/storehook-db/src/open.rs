//! Choosing and opening a backend from `[database] url`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::outbox::OutboxConfig;
use crate::sqlite::{SqliteOptions, SqliteStorage, Synchronous};
use crate::{DbError, Storage};

/// Where the data lives: `sqlite://<path>` (the embedded default) or
/// `postgres://…` (several instances on one database). Shown masked: a
/// password in a PostgreSQL URL never reaches a log or a page.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses a URL; a relative SQLite path resolves against `base_dir`
    /// (the config file's folder).
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, DbError> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DbError::Config(
                    "sqlite:// needs a path, e.g. sqlite://data/storehook.db".to_owned(),
                ));
            }
            return Ok(Self::sqlite(Path::new(path), base_dir));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Self::Postgres(text.to_owned()));
        }
        let scheme = text.split("://").next().filter(|_| text.contains("://"));
        Err(DbError::Config(match scheme {
            Some(s) => format!(
                "unknown database scheme {s:?}: use sqlite://<path> or postgres://<user>@<host>/<database>"
            ),
            None => format!(
                "{:?} is not a database URL: use sqlite://<path> or postgres://<user>@<host>/<database>",
                mask(text)
            ),
        }))
    }

    /// A SQLite file; relative to `base_dir` unless absolute.
    pub fn sqlite(path: &Path, base_dir: &Path) -> Self {
        if path.is_absolute() {
            Self::Sqlite(path.to_owned())
        } else {
            Self::Sqlite(base_dir.join(path))
        }
    }

    /// The backend's name, as `/v1/instances` and the logs say it.
    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }

    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            DatabaseUrl::Sqlite(path) => Some(path),
            DatabaseUrl::Postgres(_) => None,
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => f.write_str(&mask(url)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Replaces the password of a URL's user info and any `password=` query
/// parameter with `***`.
fn mask(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        // The user info ends at the last '@': a password may hold '@' or
        // '/' unencoded, and masking too much is the safe mistake.
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((user_info, host_and_path)) => {
                let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
                let hidden = if user_info.contains(':') { ":***" } else { "" };
                format!("{scheme}://{user}{hidden}@{host_and_path}")
            }
            None => head.to_owned(),
        },
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&masked.join("&"));
    }
    out
}

/// What opening a database needs beside its URL.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    pub url: DatabaseUrl,
    /// SQLite's `synchronous` (PostgreSQL always commits durably).
    pub synchronous: Synchronous,
    /// Where events and forwards go.
    pub outbox: OutboxConfig,
    /// PostgreSQL: group-commit writers per instance, each on a connection
    /// of its own (a subscription's writes always take the same one).
    /// SQLite has one writer whatever this says.
    pub writers: usize,
}

/// PostgreSQL's writers per instance unless configured: measured on two
/// cores, a second writer doubled one instance's throughput (README).
pub const DEFAULT_POSTGRES_WRITERS: usize = 2;

impl DatabaseOptions {
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            url,
            synchronous: Synchronous::Full,
            outbox: OutboxConfig::default(),
            writers: DEFAULT_POSTGRES_WRITERS,
        }
    }
}

/// Opens (creating and migrating as needed) the backend the URL names.
pub async fn open(options: DatabaseOptions) -> Result<Arc<dyn Storage>, DbError> {
    match &options.url {
        DatabaseUrl::Sqlite(path) => {
            let mut sqlite = SqliteOptions::new(path);
            sqlite.synchronous = options.synchronous;
            sqlite.outbox = options.outbox;
            let storage = tokio::task::spawn_blocking(move || SqliteStorage::open(sqlite))
                .await
                .map_err(|e| DbError::Unavailable(format!("cannot open the database: {e}")))??;
            Ok(Arc::new(storage))
        }
        DatabaseUrl::Postgres(url) => {
            let storage = crate::postgres::PostgresStorage::open(
                url,
                options.outbox.clone(),
                options.writers,
            )
            .await?;
            Ok(Arc::new(storage))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend_and_resolve_relative_paths() {
        let base = Path::new("/etc/storehook");
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/s.db", base).unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/etc/storehook/data/s.db"))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/s.db", base).unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/var/lib/s.db"))
        );
        let pg = DatabaseUrl::parse("postgres://u:pw@db:5432/storehook", base).unwrap();
        assert_eq!(pg.backend(), "postgres");
        assert!(DatabaseUrl::parse("sqlite://", base).is_err());
        let err = DatabaseUrl::parse("mysql://u:pw@h/d", base).unwrap_err();
        assert!(err.to_string().contains("\"mysql\""), "{err}");
        let err = DatabaseUrl::parse("data/s.db", base).unwrap_err();
        assert!(err.to_string().contains("not a database URL"), "{err}");
    }

    #[test]
    fn passwords_are_masked_wherever_they_are() {
        let base = Path::new("/");
        let shown = |url: &str| DatabaseUrl::parse(url, base).unwrap().to_string();
        assert_eq!(
            shown("postgres://app:s3cret@db.internal:5432/storehook"),
            "postgres://app:***@db.internal:5432/storehook"
        );
        assert_eq!(
            shown("postgresql://app@db/storehook?sslmode=require&password=s3cret"),
            "postgresql://app@db/storehook?sslmode=require&password=***"
        );
        // A password holding '@' or '/' stays hidden too.
        let url = "postgres://app:p@ss/w@db/storehook";
        let masked = format!("{:?}", DatabaseUrl::parse(url, base).unwrap());
        assert!(!masked.contains("ss/w"), "{masked}");
        assert_eq!(shown("postgres://db/storehook"), "postgres://db/storehook");
    }
}
