//! The control plane's state: streams, their publish keys (hashed), tasks
//! with their leases and status, nodes, operator tokens (hashed), drains,
//! and what several control processes share (liveness, kicks, the leader).
//!
//! Two backends behind one [`Db`]: SQLite, one file in the data directory
//! (the embedded default: `ferry serve` on a fresh machine needs nothing
//! more), and PostgreSQL when `[control] database_url` names one, so several
//! `ferry control` processes can share one replicated database. Every query
//! is written once, in the SQL both dialects accept (`ON CONFLICT`,
//! `RETURNING`, `TRUE`/`FALSE`); what differs (placeholders, types in the
//! schema, how a connection is held) stays in the backend modules.

mod cluster;
mod postgres;
mod schema;
mod sqlite;
mod streams;
mod tasks;
mod tokens;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub use cluster::Leadership;
pub use control_client::types::{NodeRow, TaskRow, TaskStatus};
pub use streams::{KeyRow, StreamRow};
pub use tokens::{BoundElsewhere, TokenRole, TokenRow};

/// Why the database refused.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed, or could not be reached.
    #[error("database: {0}")]
    Postgres(String),
    /// A column held something the code does not expect (a schema from
    /// another version).
    #[error("database: column {0}: unexpected value")]
    Column(usize),
    /// A name is taken.
    #[error("{0} already exists")]
    Exists(String),
    /// Nothing by that name or id.
    #[error("{0} not found")]
    NotFound(String),
}

/// One SQL value, as both backends take and give it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// The parameters of one statement: `args![a, b]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => { vec![$($crate::db::Value::from($v)),*] };
}
pub(crate) use args;

/// One result row, its columns in the order the query names them.
#[derive(Debug)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, DbError> {
        self.0.get(i).ok_or(DbError::Column(i))
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64, DbError> {
        match self.at(i)? {
            Value::Int(v) => Ok(*v),
            Value::Bool(b) => Ok(i64::from(*b)),
            _ => Err(DbError::Column(i)),
        }
    }

    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub(crate) fn real(&self, i: usize) -> Result<f64, DbError> {
        match self.at(i)? {
            Value::Real(v) => Ok(*v),
            Value::Int(v) => Ok(*v as f64),
            _ => Err(DbError::Column(i)),
        }
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool, DbError> {
        match self.at(i)? {
            Value::Bool(b) => Ok(*b),
            Value::Int(v) => Ok(*v != 0),
            _ => Err(DbError::Column(i)),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, DbError> {
        match self.at(i)? {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(DbError::Column(i)),
        }
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
}

/// Where the state is kept.
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// The control plane's state, in SQLite or PostgreSQL.
pub struct Db {
    backend: Backend,
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    now_ms() / 1000
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Db {
    /// Opens (creating) the SQLite database at `path` and applies pending
    /// migrations.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::Sqlite::open(path)?),
        })
    }

    /// An in-memory SQLite database, for unit tests.
    pub fn memory() -> Result<Self, DbError> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::Sqlite::memory()?),
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://user@host:port/db`) and
    /// applies pending migrations; several control processes may do this at
    /// once.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        Ok(Self {
            backend: Backend::Postgres(postgres::Postgres::connect(url).await?),
        })
    }

    /// `sqlite` or `postgres`, for logs and the API.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Runs one statement; the number of rows it changed.
    pub(crate) async fn exec(&self, sql: &str, args: Vec<Value>) -> Result<u64, DbError> {
        match &self.backend {
            Backend::Sqlite(db) => db.exec(sql, &args),
            Backend::Postgres(db) => db.exec(sql, &args).await,
        }
    }

    /// Runs one query; its rows.
    pub(crate) async fn query(&self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>, DbError> {
        match &self.backend {
            Backend::Sqlite(db) => db.query(sql, &args),
            Backend::Postgres(db) => db.query(sql, &args).await,
        }
    }

    /// Runs one query; its first row, if any.
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, args).await?.into_iter().next())
    }

    /// Runs statements in one transaction: all of them or none.
    pub(crate) async fn atomically(
        &self,
        statements: Vec<(&str, Vec<Value>)>,
    ) -> Result<Vec<u64>, DbError> {
        match &self.backend {
            Backend::Sqlite(db) => db.atomically(&statements),
            Backend::Postgres(db) => db.atomically(&statements).await,
        }
    }
}

#[cfg(test)]
mod tests;
