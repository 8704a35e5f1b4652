//! The control plane's state in SQLite (one file in the data directory):
//! streams, their publish keys (hashed), tasks with their leases and status,
//! nodes, operator tokens (hashed). Schema changes are numbered migrations.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::secret;

pub use control_client::types::{NodeRow, TaskRow, TaskStatus};

/// Why the database refused.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A name is taken.
    #[error("{0} already exists")]
    Exists(String),
    /// Nothing by that name or id.
    #[error("{0} not found")]
    NotFound(String),
}

/// Migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE streams (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE stream_keys (
        id INTEGER PRIMARY KEY,
        stream_id INTEGER NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
        hash BLOB NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        stream_id INTEGER NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        config TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'idle',
        last_error TEXT,
        restarts INTEGER NOT NULL DEFAULT 0,
        worker TEXT,
        lease_until_ms INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        address TEXT NOT NULL,
        version TEXT NOT NULL,
        last_heartbeat_ms INTEGER NOT NULL,
        load REAL NOT NULL DEFAULT 0
    );",
    // Origins report the streams live on them (split control/origin setups).
    "ALTER TABLE nodes ADD COLUMN streams TEXT NOT NULL DEFAULT '[]';",
    // Per-stream settings (HLS segment format, transcoding ladder), as JSON.
    "ALTER TABLE streams ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';",
    // Scoped tokens: `admin` (everything), `node` (workers and origins only).
    "ALTER TABLE tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';",
    // What the config file seeded once (streams by name, keys by hash): an
    // operator's later deletion stands across restarts.
    "CREATE TABLE seeds (kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, value));",
    // The token that came from FERRY_ADMIN_TOKEN (replaced when it changes),
    // and the node a node token belongs to.
    "ALTER TABLE tokens ADD COLUMN from_env INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE tokens ADD COLUMN node_id TEXT;",
    // The edges a fleet token acts as (many at once: an orchestrator's
    // replicas share it); each id still belongs to that token alone.
    "CREATE TABLE fleet_nodes (node_id TEXT PRIMARY KEY, token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE);",
];

/// Why a node token may not act as a node id.
#[derive(Debug, PartialEq, Eq)]
pub struct BoundElsewhere(pub String);

/// What a token may do: everything (an operator), or act as one node of
/// one kind, so a token handed to a director cannot register an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// Everything: operators and the web UI.
    Admin,
    /// Any node but an edge (what earlier versions made): claim/renew/release
    /// tasks, heartbeats as an origin or worker, publish authorisation, the
    /// edge list.
    Node,
    /// An origin: heartbeats as an origin, publish authorisation.
    Origin,
    /// An edge: heartbeats as an edge.
    Edge,
    /// Edges of an orchestrated farm (a Kubernetes Deployment's replicas
    /// share one token): heartbeats as any number of edges, each id its own.
    #[serde(rename = "edge_fleet")]
    EdgeFleet,
    /// A worker: tasks and heartbeats as a worker.
    Worker,
    /// A director: reads the edge list, nothing else.
    Director,
}

impl TokenRole {
    fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Node => "node",
            TokenRole::Origin => "origin",
            TokenRole::Edge => "edge",
            TokenRole::EdgeFleet => "edge_fleet",
            TokenRole::Worker => "worker",
            TokenRole::Director => "director",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => TokenRole::Admin,
            "node" => TokenRole::Node,
            "origin" => TokenRole::Origin,
            "edge" => TokenRole::Edge,
            "edge_fleet" => TokenRole::EdgeFleet,
            "worker" => TokenRole::Worker,
            "director" => TokenRole::Director,
            _ => return None,
        })
    }

    /// Whether a token of this kind may call `path` (below `/api/v1`).
    pub fn may_call(self, path: &str) -> bool {
        let workers = path.starts_with("/workers/");
        let beat = path == "/nodes/heartbeat";
        let auth = path == "/auth/publish" || path == "/relay/verify";
        let edges = path == "/edges";
        let pins = path == "/relay/pins";
        match self {
            TokenRole::Admin => true,
            TokenRole::Node => workers || beat || auth || edges || pins,
            TokenRole::Origin => beat || auth,
            TokenRole::Edge | TokenRole::EdgeFleet => beat || pins,
            TokenRole::Worker => workers || beat,
            TokenRole::Director => edges || beat,
        }
    }

    /// Whether a token of this kind may heartbeat as a node of `role`.
    pub fn may_be(self, role: &str) -> bool {
        match self {
            TokenRole::Admin => true,
            TokenRole::Node => role != "edge" && role != "director",
            TokenRole::Origin => role == "origin",
            TokenRole::Edge | TokenRole::EdgeFleet => role == "edge",
            TokenRole::Worker => role == "worker",
            TokenRole::Director => role == "director",
        }
    }
}

/// A token as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenRow {
    /// Id.
    pub id: i64,
    /// Masked token.
    pub hint: String,
    /// `admin` or `node`.
    pub role: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A stream as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StreamRow {
    /// Id.
    pub id: i64,
    /// Public name.
    pub name: String,
    /// May go live.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Settings that override the configuration file for this stream (HLS
    /// segment format, transcoding ladder); validated by the server that owns
    /// them; applied when the stream next goes live.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

/// A publish key as operators see it (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyRow {
    /// Id.
    pub id: i64,
    /// Masked key, e.g. `3fa9…(48 chars)`.
    pub hint: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, if revoked.
    pub revoked_at: Option<i64>,
}

/// The database: one connection behind a lock. Control-plane traffic is small
/// and every statement is short; publish authorisation is cached in front of it.
pub struct Db {
    conn: Mutex<Connection>,
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
    /// Opens (creating) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        Self::init(Connection::open(path)?)
    }

    /// An in-memory database, for unit tests.
    pub fn memory() -> Result<Self, DbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, DbError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
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

    // --- tokens -------------------------------------------------------------

    /// Whether any operator token exists.
    pub fn has_tokens(&self) -> Result<bool, DbError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))?;
        Ok(n > 0)
    }

    /// Stores an admin token (its hash); a token already stored is left alone.
    pub fn add_token(&self, token: &str) -> Result<(), DbError> {
        self.add_token_with_role(token, TokenRole::Admin)
            .map(|_| ())
    }

    /// Stores a token with a role; returns its id.
    pub fn add_token_with_role(&self, token: &str, role: TokenRole) -> Result<i64, DbError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO tokens (hash, hint, created_at, role) VALUES (?1, ?2, ?3, ?4)",
            params![
                secret::hash(token),
                secret::hint(token),
                now_s(),
                role.as_str()
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Makes `token` the admin token from the environment: stored if new,
    /// and any earlier environment token removed (changing
    /// `FERRY_ADMIN_TOKEN` revokes the old value).
    pub fn set_env_admin_token(&self, token: &str) -> Result<(), DbError> {
        let hash = secret::hash(token);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM tokens WHERE from_env = 1 AND hash != ?1",
            [&hash],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO tokens (hash, hint, created_at, role, from_env) VALUES (?1, ?2, ?3, 'admin', 1)",
            params![hash, secret::hint(token), now_s()],
        )?;
        tx.execute(
            "UPDATE tokens SET from_env = 1, role = 'admin' WHERE hash = ?1",
            [&hash],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records that the config file seeded `value` of `kind`; `true` the first
    /// time, `false` ever after (so a seed the operator deleted stays deleted).
    pub fn seed_once(&self, kind: &str, value: &str) -> Result<bool, DbError> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO seeds (kind, value) VALUES (?1, ?2)",
            params![kind, value],
        )?;
        Ok(n > 0)
    }

    /// Binds `node_id` to `token`: a node id belongs to the token that first
    /// heartbeat as it (another token, an admin's too, gets
    /// [`BoundElsewhere`] until that token is deleted), and a node token acts
    /// as one node at a time (it moves to a new id only once its node is no
    /// longer `alive`).
    pub fn bind_node(
        &self,
        token: &str,
        node_id: &str,
        alive: impl Fn(&str) -> bool,
    ) -> Result<Result<(), BoundElsewhere>, DbError> {
        let hash = secret::hash(token);
        let conn = self.conn();
        let owner: Option<String> = conn
            .query_row(
                "SELECT hint FROM tokens WHERE hash != ?2 AND (node_id = ?1
                   OR id IN (SELECT token_id FROM fleet_nodes WHERE node_id = ?1))",
                params![node_id, hash],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(hint) = owner {
            return Ok(Err(BoundElsewhere(format!(
                "node {node_id:?} belongs to token {hint}"
            ))));
        }
        let bound: Option<(String, Option<String>)> = conn
            .query_row(
                "SELECT role, node_id FROM tokens WHERE hash = ?1",
                [&hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((role, bound)) = bound else {
            return Ok(Ok(()));
        };
        if role == TokenRole::Admin.as_str() || bound.as_deref() == Some(node_id) {
            return Ok(Ok(()));
        }
        if role == TokenRole::EdgeFleet.as_str() {
            // Read first: a fleet edge beats every second.
            let known: Option<i64> = conn
                .query_row(
                    "SELECT 1 FROM fleet_nodes WHERE node_id = ?1",
                    [node_id],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_some() {
                return Ok(Ok(()));
            }
            conn.execute(
                "INSERT OR IGNORE INTO fleet_nodes (node_id, token_id)
                 SELECT ?1, id FROM tokens WHERE hash = ?2",
                params![node_id, hash],
            )?;
            return Ok(Ok(()));
        }
        if let Some(other) = bound
            && alive(&other)
        {
            return Ok(Err(BoundElsewhere(format!(
                "this token belongs to node {other:?}; give each node a token of its own"
            ))));
        }
        conn.execute(
            "UPDATE tokens SET node_id = ?2 WHERE hash = ?1",
            params![hash, node_id],
        )?;
        Ok(Ok(()))
    }

    /// Whether `token` is an admin token (looked up by hash).
    pub fn token_valid(&self, token: &str) -> Result<bool, DbError> {
        Ok(self.token_role(token)? == Some(TokenRole::Admin))
    }

    /// The role of `token`, if it is one.
    pub fn token_role(&self, token: &str) -> Result<Option<TokenRole>, DbError> {
        let role: Option<String> = self
            .conn()
            .query_row(
                "SELECT role FROM tokens WHERE hash = ?1",
                [secret::hash(token)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(role.and_then(|r| TokenRole::parse(&r)))
    }

    /// Every token (hints only), newest first.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, DbError> {
        let conn = self.conn();
        let mut q =
            conn.prepare("SELECT id, hint, role, created_at FROM tokens ORDER BY id DESC")?;
        let rows = q
            .query_map([], |r| {
                Ok(TokenRow {
                    id: r.get(0)?,
                    hint: r.get(1)?,
                    role: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Deletes a token; the last admin token cannot be deleted.
    pub fn delete_token(&self, id: i64) -> Result<(), DbError> {
        let conn = self.conn();
        let admins: i64 = conn.query_row(
            "SELECT COUNT(*) FROM tokens WHERE role = 'admin' AND id != ?1",
            [id],
            |r| r.get(0),
        )?;
        if admins == 0 {
            return Err(DbError::Exists("the last admin token (it stays)".into()));
        }
        let n = conn.execute("DELETE FROM tokens WHERE id = ?1", [id])?;
        if n == 0 {
            return Err(DbError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    // --- streams and keys ---------------------------------------------------

    /// Every stream, by name.
    pub fn streams(&self) -> Result<Vec<StreamRow>, DbError> {
        let conn = self.conn();
        let mut q = conn
            .prepare("SELECT id, name, enabled, created_at, settings FROM streams ORDER BY name")?;
        let rows = q.query_map([], stream_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// One stream.
    pub fn stream(&self, name: &str) -> Result<StreamRow, DbError> {
        self.conn()
            .query_row(
                "SELECT id, name, enabled, created_at, settings FROM streams WHERE name = ?1",
                [name],
                stream_row,
            )
            .optional()?
            .ok_or_else(|| DbError::NotFound(format!("stream {name:?}")))
    }

    /// Creates a stream.
    pub fn create_stream(&self, name: &str, enabled: bool) -> Result<StreamRow, DbError> {
        let created = self.conn().execute(
            "INSERT OR IGNORE INTO streams (name, enabled, created_at) VALUES (?1, ?2, ?3)",
            params![name, enabled, now_s()],
        )?;
        if created == 0 {
            return Err(DbError::Exists(format!("stream {name:?}")));
        }
        self.stream(name)
    }

    /// Enables or disables a stream.
    pub fn set_stream_enabled(&self, name: &str, enabled: bool) -> Result<StreamRow, DbError> {
        let n = self.conn().execute(
            "UPDATE streams SET enabled = ?2 WHERE name = ?1",
            params![name, enabled],
        )?;
        if n == 0 {
            return Err(DbError::NotFound(format!("stream {name:?}")));
        }
        self.stream(name)
    }

    /// Replaces a stream's settings.
    pub fn set_stream_settings(
        &self,
        name: &str,
        settings: &serde_json::Value,
    ) -> Result<StreamRow, DbError> {
        let n = self.conn().execute(
            "UPDATE streams SET settings = ?2 WHERE name = ?1",
            params![name, settings.to_string()],
        )?;
        if n == 0 {
            return Err(DbError::NotFound(format!("stream {name:?}")));
        }
        self.stream(name)
    }

    /// Deletes a stream with its keys and tasks.
    pub fn delete_stream(&self, name: &str) -> Result<(), DbError> {
        let n = self
            .conn()
            .execute("DELETE FROM streams WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(DbError::NotFound(format!("stream {name:?}")));
        }
        Ok(())
    }

    /// A stream's keys, newest first.
    pub fn keys(&self, stream: &str) -> Result<Vec<KeyRow>, DbError> {
        let id = self.stream(stream)?.id;
        let conn = self.conn();
        let mut q = conn.prepare(
            "SELECT id, hint, created_at, revoked_at FROM stream_keys WHERE stream_id = ?1 ORDER BY id DESC",
        )?;
        let rows = q
            .query_map([id], |r| {
                Ok(KeyRow {
                    id: r.get(0)?,
                    hint: r.get(1)?,
                    created_at: r.get(2)?,
                    revoked_at: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Adds `key` to a stream; returns its id.
    pub fn add_key(&self, stream: &str, key: &str) -> Result<i64, DbError> {
        let id = self.stream(stream)?.id;
        let conn = self.conn();
        let n = conn.execute(
            "INSERT OR IGNORE INTO stream_keys (stream_id, hash, hint, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, secret::hash(key), secret::hint(key), now_s()],
        )?;
        if n == 0 {
            return Err(DbError::Exists("that key".into()));
        }
        Ok(conn.last_insert_rowid())
    }

    /// Revokes a key of a stream.
    pub fn revoke_key(&self, stream: &str, key_id: i64) -> Result<(), DbError> {
        let id = self.stream(stream)?.id;
        let n = self.conn().execute(
            "UPDATE stream_keys SET revoked_at = ?3 WHERE id = ?1 AND stream_id = ?2 AND revoked_at IS NULL",
            params![key_id, id, now_s()],
        )?;
        if n == 0 {
            return Err(DbError::NotFound(format!(
                "active key {key_id} of stream {stream:?}"
            )));
        }
        Ok(())
    }

    /// The stream an active key publishes and whether it is enabled.
    pub fn stream_for_key(&self, key: &str) -> Result<Option<(String, bool)>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT s.name, s.enabled FROM stream_keys k JOIN streams s ON s.id = k.stream_id
                 WHERE k.hash = ?1 AND k.revoked_at IS NULL",
                [secret::hash(key)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    // --- tasks --------------------------------------------------------------

    const TASK_COLUMNS: &'static str = "t.id, s.name, t.kind, t.config, t.enabled, t.state, t.last_error, t.restarts, t.worker, t.lease_until_ms";

    /// Tasks, of one stream or all.
    pub fn tasks(&self, stream: Option<&str>) -> Result<Vec<TaskRow>, DbError> {
        if let Some(s) = stream {
            self.stream(s)?;
        }
        let conn = self.conn();
        let mut q = conn.prepare(&format!(
            "SELECT {} FROM tasks t JOIN streams s ON s.id = t.stream_id
             WHERE ?1 IS NULL OR s.name = ?1 ORDER BY t.id",
            Self::TASK_COLUMNS
        ))?;
        let rows = q.query_map([stream], task_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// One task.
    pub fn task(&self, id: i64) -> Result<TaskRow, DbError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {} FROM tasks t JOIN streams s ON s.id = t.stream_id WHERE t.id = ?1",
                    Self::TASK_COLUMNS
                ),
                [id],
                task_row,
            )
            .optional()?
            .ok_or_else(|| DbError::NotFound(format!("task {id}")))
    }

    /// Adds a task to a stream.
    pub fn create_task(
        &self,
        stream: &str,
        kind: &str,
        config: &serde_json::Value,
        enabled: bool,
    ) -> Result<TaskRow, DbError> {
        let sid = self.stream(stream)?.id;
        let id = {
            let conn = self.conn();
            conn.execute(
                "INSERT INTO tasks (stream_id, kind, config, enabled, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![sid, kind, config.to_string(), enabled, now_s()],
            )?;
            conn.last_insert_rowid()
        };
        self.task(id)
    }

    /// Changes a task's config and/or enabled flag.
    pub fn update_task(
        &self,
        id: i64,
        config: Option<&serde_json::Value>,
        enabled: Option<bool>,
    ) -> Result<TaskRow, DbError> {
        let n = self.conn().execute(
            "UPDATE tasks SET config = COALESCE(?2, config), enabled = COALESCE(?3, enabled), updated_at = ?4 WHERE id = ?1",
            params![id, config.map(|c| c.to_string()), enabled, now_s()],
        )?;
        if n == 0 {
            return Err(DbError::NotFound(format!("task {id}")));
        }
        self.task(id)
    }

    /// Deletes a task.
    pub fn delete_task(&self, id: i64) -> Result<(), DbError> {
        let n = self
            .conn()
            .execute("DELETE FROM tasks WHERE id = ?1", [id])?;
        if n == 0 {
            return Err(DbError::NotFound(format!("task {id}")));
        }
        Ok(())
    }

    /// Takes the enabled tasks of `live` streams that no worker holds a valid
    /// lease on (or that `worker` holds already), leasing them to `worker`
    /// until `lease_until_ms`. At most `max` tasks.
    pub fn claim_tasks(
        &self,
        worker: &str,
        live: &[String],
        lease_until_ms: i64,
        max: usize,
    ) -> Result<Vec<TaskRow>, DbError> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut claimed = Vec::new();
        {
            let mut q = tx.prepare(
                "SELECT t.id, s.name FROM tasks t JOIN streams s ON s.id = t.stream_id
                 WHERE t.enabled = 1 AND s.enabled = 1 AND (t.lease_until_ms < ?1 OR t.worker = ?2)
                 ORDER BY t.id",
            )?;
            let candidates: Vec<(i64, String)> = q
                .query_map(params![now, worker], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (id, stream) in candidates {
                if claimed.len() >= max || !live.contains(&stream) {
                    continue;
                }
                tx.execute(
                    "UPDATE tasks SET worker = ?2, lease_until_ms = ?3 WHERE id = ?1",
                    params![id, worker, lease_until_ms],
                )?;
                claimed.push(id);
            }
        }
        tx.commit()?;
        drop(conn);
        claimed.into_iter().map(|id| self.task(id)).collect()
    }

    /// Extends `worker`'s lease on a task and records its status; `false` if
    /// the worker no longer holds the lease (another took the task over).
    pub fn renew_task(
        &self,
        id: i64,
        worker: &str,
        lease_until_ms: i64,
        status: &TaskStatus,
    ) -> Result<bool, DbError> {
        let n = self.conn().execute(
            "UPDATE tasks SET lease_until_ms = ?3, state = ?4,
               last_error = COALESCE(?5, last_error), restarts = ?6, updated_at = ?7
             WHERE id = ?1 AND worker = ?2",
            params![
                id,
                worker,
                lease_until_ms,
                status.state,
                status.last_error,
                status.restarts,
                now_s()
            ],
        )?;
        Ok(n > 0)
    }

    /// Gives a task's lease back (its stream stopped, or it was disabled).
    pub fn release_task(&self, id: i64, worker: &str) -> Result<(), DbError> {
        self.conn().execute(
            "UPDATE tasks SET worker = NULL, lease_until_ms = 0, state = 'idle' WHERE id = ?1 AND worker = ?2",
            params![id, worker],
        )?;
        Ok(())
    }

    // --- nodes --------------------------------------------------------------

    /// Records a node's heartbeat.
    pub fn heartbeat(&self, node: &NodeRow) -> Result<(), DbError> {
        self.conn().execute(
            "INSERT INTO nodes (id, role, address, version, last_heartbeat_ms, load, streams) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET role = ?2, address = ?3, version = ?4, last_heartbeat_ms = ?5, load = ?6, streams = ?7",
            params![
                node.id,
                node.role,
                node.address,
                node.version,
                node.last_heartbeat_ms,
                node.load,
                serde_json::to_string(&node.streams).unwrap_or_else(|_| "[]".into())
            ],
        )?;
        Ok(())
    }

    /// Deletes nodes registered before `cutoff_ms` that are not in `keep`.
    pub fn prune_nodes(&self, cutoff_ms: i64, keep: &[String]) -> Result<usize, DbError> {
        let conn = self.conn();
        let mut q = conn.prepare("SELECT id FROM nodes WHERE last_heartbeat_ms < ?1")?;
        let old: Vec<String> = q
            .query_map([cutoff_ms], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut removed = 0;
        for id in old.iter().filter(|id| !keep.contains(id)) {
            removed += conn.execute("DELETE FROM nodes WHERE id = ?1", [id])?;
        }
        Ok(removed)
    }

    /// Every node ever seen, most recent heartbeat first.
    pub fn nodes(&self) -> Result<Vec<NodeRow>, DbError> {
        let conn = self.conn();
        let mut q = conn.prepare(
            "SELECT id, role, address, version, last_heartbeat_ms, load, streams FROM nodes ORDER BY last_heartbeat_ms DESC",
        )?;
        let rows = q
            .query_map([], |r| {
                Ok(NodeRow {
                    id: r.get(0)?,
                    role: r.get(1)?,
                    address: r.get(2)?,
                    version: r.get(3)?,
                    last_heartbeat_ms: r.get(4)?,
                    load: r.get(5)?,
                    streams: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                    edge: None,
                    relay: None,
                    viewers: Default::default(),
                    audience: Default::default(),
                    ingest: Default::default(),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

fn stream_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StreamRow> {
    Ok(StreamRow {
        id: r.get(0)?,
        name: r.get(1)?,
        enabled: r.get(2)?,
        created_at: r.get(3)?,
        settings: serde_json::from_str(&r.get::<_, String>(4)?)
            .unwrap_or_else(|_| serde_json::json!({})),
    })
}

fn task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    let config: String = r.get(3)?;
    Ok(TaskRow {
        id: r.get(0)?,
        stream: r.get(1)?,
        kind: r.get(2)?,
        config: serde_json::from_str(&config).unwrap_or(serde_json::Value::Null),
        enabled: r.get(4)?,
        state: r.get(5)?,
        last_error: r.get(6)?,
        restarts: r.get(7)?,
        worker: r.get(8)?,
        lease_until_ms: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_publish_their_stream_until_revoked() {
        let db = Db::memory().unwrap();
        db.create_stream("a", true).unwrap();
        assert!(matches!(
            db.create_stream("a", true),
            Err(DbError::Exists(_))
        ));
        let id = db.add_key("a", "secret-1").unwrap();
        assert_eq!(
            db.stream_for_key("secret-1").unwrap(),
            Some(("a".into(), true))
        );
        assert_eq!(db.stream_for_key("secret-2").unwrap(), None);
        db.revoke_key("a", id).unwrap();
        assert_eq!(db.stream_for_key("secret-1").unwrap(), None);
        assert!(db.revoke_key("a", id).is_err());
        assert_eq!(db.keys("a").unwrap()[0].hint, "secr…(8 chars)");
    }

    #[test]
    fn a_lease_is_held_until_it_expires_then_another_worker_takes_it() {
        let db = Db::memory().unwrap();
        db.create_stream("a", true).unwrap();
        let t = db
            .create_task("a", "restream", &serde_json::json!({}), true)
            .unwrap();
        let live = vec!["a".to_owned()];
        assert!(
            db.claim_tasks("w1", &[], now_ms() + 10_000, 10)
                .unwrap()
                .is_empty(),
            "not live"
        );
        assert_eq!(
            db.claim_tasks("w1", &live, now_ms() + 10_000, 10)
                .unwrap()
                .len(),
            1
        );
        assert!(
            db.claim_tasks("w2", &live, now_ms() + 10_000, 10)
                .unwrap()
                .is_empty()
        );
        let status = TaskStatus {
            state: "running".into(),
            last_error: None,
            restarts: 0,
        };
        assert!(db.renew_task(t.id, "w1", now_ms() - 1, &status).unwrap());
        let taken = db.claim_tasks("w2", &live, now_ms() + 10_000, 10).unwrap();
        assert_eq!(taken[0].worker.as_deref(), Some("w2"));
        assert!(
            !db.renew_task(t.id, "w1", now_ms() + 10_000, &status)
                .unwrap()
        );
    }

    #[test]
    fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        {
            let db = Db::open(&path).unwrap();
            db.create_stream("kept", false).unwrap();
            db.add_token("tok").unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert!(!db.stream("kept").unwrap().enabled);
        assert!(db.token_valid("tok").unwrap());
        assert!(!db.token_valid("other").unwrap());
    }
}

#[cfg(test)]
mod node_tests {
    use super::*;

    #[test]
    fn nodes_keep_their_streams() {
        let db = Db::memory().unwrap();
        let node = NodeRow {
            id: "o1".into(),
            role: "origin".into(),
            address: "a".into(),
            version: "1".into(),
            last_heartbeat_ms: now_ms(),
            load: 0.5,
            streams: vec!["s".into()],
            viewers: Default::default(),
            audience: Default::default(),
            ingest: Default::default(),
            edge: None,
            relay: None,
        };
        db.heartbeat(&node).unwrap();
        db.heartbeat(&node).unwrap();
        assert_eq!(db.nodes().unwrap(), vec![node]);
    }
}

impl control_client::KeyLookup for Db {
    fn lookup<'a>(&'a self, key: &'a str) -> control_client::auth::LookupFuture<'a> {
        use rtmp::auth::AuthError;
        let answer = match self.stream_for_key(key) {
            Ok(Some((name, true))) => Ok(Ok(name)),
            Ok(Some((_, false))) => Ok(Err(AuthError::Disabled)),
            Ok(None) => Ok(Err(AuthError::UnknownKey)),
            Err(e) => Err(e.to_string()),
        };
        Box::pin(std::future::ready(answer))
    }
}
