//! SQLite: one connection behind a lock. Control-plane traffic is small and
//! every statement is short; publish authorisation is cached in front of it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, params_from_iter};

use super::{DbError, Row, Value, schema};

pub(super) struct Sqlite {
    conn: Mutex<Connection>,
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
        })
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl Sqlite {
    pub(super) fn open(path: &Path) -> Result<Self, DbError> {
        Self::init(Connection::open(path)?)
    }

    pub(super) fn memory() -> Result<Self, DbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, DbError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // `PRAGMA user_version` counts the migrations applied.
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, m) in schema::SQLITE.iter().enumerate().skip(version) {
            // One transaction per migration, its number recorded with it.
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn exec(&self, sql: &str, args: &[Value]) -> Result<u64, DbError> {
        exec(&self.conn(), sql, args)
    }

    pub(super) fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>, DbError> {
        let conn = self.conn();
        let mut q = conn.prepare_cached(sql)?;
        let columns = q.column_count();
        let rows = q
            .query_map(params_from_iter(args), |r| {
                (0..columns)
                    .map(|i| r.get_ref(i).map(value))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Row)
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub(super) fn atomically(
        &self,
        statements: &[(&str, Vec<Value>)],
    ) -> Result<Vec<u64>, DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = statements
            .iter()
            .map(|(sql, args)| exec(&tx, sql, args))
            .collect::<Result<_, _>>()?;
        tx.commit()?;
        Ok(changed)
    }
}

fn exec(conn: &Connection, sql: &str, args: &[Value]) -> Result<u64, DbError> {
    let n = conn.prepare_cached(sql)?.execute(params_from_iter(args))?;
    Ok(n as u64)
}
