//! PostgreSQL: a pool of connections (deadpool over tokio-postgres), the
//! queries' `?N` placeholders written as `$N`, each call bounded in time so
//! a database that stops answering fails a request instead of hanging it.

use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Pool, PoolConfig, Runtime, Timeouts};
use tokio_postgres::NoTls;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::{DbError, Row, Value, schema};

/// How long one statement (with waiting for a connection) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per control process.
const POOL_SIZE: usize = 16;

pub(super) struct Postgres {
    pool: Pool,
}

fn pg_error(e: impl std::fmt::Display) -> DbError {
    DbError::Postgres(e.to_string())
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Real(v) => match *ty {
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
            Value::Bool(b) => match *ty {
                Type::INT8 => i64::from(*b).to_sql(ty, out),
                _ => b.to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        // Conversions are chosen per type in `to_sql`; a mismatch is an error
        // from there, with the value and the type in it.
        true
    }

    to_sql_checked!();
}

/// One column of a row as a [`Value`], by its type.
fn value(row: &tokio_postgres::Row, i: usize) -> Result<Value, DbError> {
    let ty = row.columns().get(i).map(|c| c.type_().clone());
    let v = match ty {
        Some(Type::INT8) => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
        Some(Type::INT4) => row
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Some(Type::INT2) => row
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Some(Type::FLOAT8) => row.try_get::<_, Option<f64>>(i).map(|v| v.map(Value::Real)),
        Some(Type::BOOL) => row
            .try_get::<_, Option<bool>>(i)
            .map(|v| v.map(Value::Bool)),
        Some(Type::BYTEA) => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map(|v| v.map(Value::Blob)),
        Some(_) => row
            .try_get::<_, Option<String>>(i)
            .map(|v| v.map(Value::Text)),
        None => return Err(DbError::Column(i)),
    };
    Ok(v.map_err(pg_error)?.unwrap_or(Value::Null))
}

/// `?1` → `$1`: the queries are written once, in SQLite's spelling.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn refs(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

async fn bounded<T>(
    what: impl std::future::Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    tokio::time::timeout(CALL_TIMEOUT, what)
        .await
        .map_err(|_| DbError::Postgres(format!("no answer within {CALL_TIMEOUT:?}")))?
}

impl Postgres {
    pub(super) async fn connect(url: &str) -> Result<Self, DbError> {
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url.to_owned());
        config.connect_timeout = Some(Duration::from_secs(3));
        config.pool = Some(PoolConfig {
            max_size: POOL_SIZE,
            timeouts: Timeouts {
                wait: Some(CALL_TIMEOUT),
                create: Some(Duration::from_secs(3)),
                recycle: Some(Duration::from_secs(3)),
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(pg_error)?;
        let db = Self { pool };
        db.migrate().await?;
        Ok(db)
    }

    /// Applies the migrations not yet applied, under an advisory lock so
    /// control processes starting together do not race.
    async fn migrate(&self) -> Result<(), DbError> {
        let mut client = self.pool.get().await.map_err(pg_error)?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock(7262011)", &[])
            .await
            .map_err(pg_error)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS ferry_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
        )
        .await
        .map_err(pg_error)?;
        let applied: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM ferry_migrations",
                &[],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(pg_error)?;
        for (i, m) in schema::POSTGRES.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= applied {
                continue;
            }
            tx.batch_execute(m).await.map_err(pg_error)?;
            tx.execute(
                "INSERT INTO ferry_migrations (version, applied_ms) VALUES ($1, $2)",
                &[&version, &super::now_ms()],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)
    }

    /// A pooled connection and `sql` prepared on it (cached per connection).
    async fn prepared(
        &self,
        sql: &str,
    ) -> Result<(deadpool_postgres::Object, tokio_postgres::Statement), DbError> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let q = client
            .prepare_cached(&placeholders(sql))
            .await
            .map_err(pg_error)?;
        Ok((client, q))
    }

    pub(super) async fn exec(&self, sql: &str, args: &[Value]) -> Result<u64, DbError> {
        bounded(async {
            let (client, q) = self.prepared(sql).await?;
            client.execute(&q, &refs(args)).await.map_err(pg_error)
        })
        .await
    }

    pub(super) async fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>, DbError> {
        bounded(async {
            let (client, q) = self.prepared(sql).await?;
            let rows = client.query(&q, &refs(args)).await.map_err(pg_error)?;
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| value(r, i))
                        .collect::<Result<_, _>>()
                        .map(Row)
                })
                .collect()
        })
        .await
    }

    pub(super) async fn atomically(
        &self,
        statements: &[(&str, Vec<Value>)],
    ) -> Result<Vec<u64>, DbError> {
        bounded(async {
            let mut client = self.pool.get().await.map_err(pg_error)?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let mut changed = Vec::with_capacity(statements.len());
            for (sql, args) in statements {
                let q = tx
                    .prepare_cached(&placeholders(sql))
                    .await
                    .map_err(pg_error)?;
                changed.push(tx.execute(&q, &refs(args)).await.map_err(pg_error)?);
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(changed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_become_dollars_and_nothing_else_moves() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '?'"
        );
    }
}
