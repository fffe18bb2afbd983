//! What can go wrong in the store, by cause: the database, the JSON it
//! holds, the files it lives in, or a schema newer than this build.

use std::path::PathBuf;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A stored value is not the JSON it should be, or a value could not
    /// be written as JSON.
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Opening the database, one of its connections or its directory.
    #[error("{what} {}: {source}", path.display())]
    Open {
        /// What was being opened.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A migration failed.
    #[error("migrating {} to version {version}: {source}", path.display())]
    Migration {
        /// The database.
        path: PathBuf,
        /// The version it was being migrated to.
        version: usize,
        /// Why it failed.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer escalator.
    #[error(
        "{} has schema version {found}, newer than this escalator ({known}); upgrade escalator",
        path.display()
    )]
    TooNew {
        /// The database.
        path: PathBuf,
        /// Its schema version.
        found: usize,
        /// The newest this build knows.
        known: usize,
    },
    /// PostgreSQL refused or failed a statement (what was being done, and
    /// the server's or the client's message).
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// A backend reported a transaction done without running it (a bug
    /// in that backend).
    #[error("the store reported a transaction it did not run")]
    NotRun,
}

impl StoreError {
    pub(super) fn open(
        what: &'static str,
        path: &std::path::Path,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Open {
            what,
            path: path.to_path_buf(),
            source: Box::new(source),
        }
    }
}

/// A store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
