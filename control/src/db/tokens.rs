//! Operator and node tokens (stored hashed), what each may do, and which
//! node ids a node token acts as.

use serde::Serialize;

use super::{Db, DbError, args, now_s};
use crate::secret;

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
        let pins = path == "/relay/pins" || path == "/origins";
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

impl Db {
    /// Whether any operator token exists.
    pub async fn has_tokens(&self) -> Result<bool, DbError> {
        let row = self
            .query_opt("SELECT COUNT(*) FROM tokens", args![])
            .await?;
        Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0) > 0)
    }

    /// Stores an admin token (its hash); a token already stored is left alone.
    pub async fn add_token(&self, token: &str) -> Result<(), DbError> {
        self.add_token_with_role(token, TokenRole::Admin)
            .await
            .map(|_| ())
    }

    /// Stores a token with a role; returns its id (the stored one's, if the
    /// token was stored already).
    pub async fn add_token_with_role(&self, token: &str, role: TokenRole) -> Result<i64, DbError> {
        let hash = secret::hash(token);
        self.exec(
            "INSERT INTO tokens (hash, hint, created_at, role) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hash) DO NOTHING",
            args![hash.clone(), secret::hint(token), now_s(), role.as_str()],
        )
        .await?;
        self.query_opt("SELECT id FROM tokens WHERE hash = ?1", args![hash])
            .await?
            .ok_or_else(|| DbError::NotFound("the token just stored".into()))?
            .int(0)
    }

    /// Makes `token` the admin token from the environment: stored if new,
    /// and any earlier environment token removed (changing
    /// `FERRY_ADMIN_TOKEN` revokes the old value).
    pub async fn set_env_admin_token(&self, token: &str) -> Result<(), DbError> {
        let hash = secret::hash(token);
        self.atomically(vec![
            (
                "DELETE FROM tokens WHERE from_env AND hash != ?1",
                args![hash.clone()],
            ),
            (
                "INSERT INTO tokens (hash, hint, created_at, role, from_env) VALUES (?1, ?2, ?3, 'admin', TRUE)
                 ON CONFLICT (hash) DO UPDATE SET from_env = TRUE, role = 'admin'",
                args![hash, secret::hint(token), now_s()],
            ),
        ])
        .await?;
        Ok(())
    }

    /// Records that the config file seeded `value` of `kind`; `true` the first
    /// time, `false` ever after (so a seed the operator deleted stays deleted).
    pub async fn seed_once(&self, kind: &str, value: &str) -> Result<bool, DbError> {
        let n = self
            .exec(
                "INSERT INTO seeds (kind, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                args![kind, value],
            )
            .await?;
        Ok(n > 0)
    }

    /// Binds `node_id` to `token`: a node id belongs to the token that first
    /// heartbeat as it (another token, an admin's too, gets
    /// [`BoundElsewhere`] until that token is deleted), and a node token acts
    /// as one node at a time (it moves to a new id only once its node is no
    /// longer `alive`). Writes are conditional, so two control processes
    /// binding at once cannot both win.
    pub async fn bind_node(
        &self,
        token: &str,
        node_id: &str,
        alive: impl Fn(&str) -> bool,
    ) -> Result<Result<(), BoundElsewhere>, DbError> {
        let hash = secret::hash(token);
        let owner = self
            .query_opt(
                "SELECT hint FROM tokens WHERE hash != ?2 AND (node_id = ?1
                   OR id IN (SELECT token_id FROM fleet_nodes WHERE node_id = ?1))",
                args![node_id, hash.clone()],
            )
            .await?;
        if let Some(owner) = owner {
            return Ok(Err(BoundElsewhere(format!(
                "node {node_id:?} belongs to token {}",
                owner.text(0)?
            ))));
        }
        let Some(row) = self
            .query_opt(
                "SELECT role, node_id FROM tokens WHERE hash = ?1",
                args![hash.clone()],
            )
            .await?
        else {
            return Ok(Ok(()));
        };
        let (role, bound) = (row.text(0)?, row.opt_text(1)?);
        if role == TokenRole::Admin.as_str() || bound.as_deref() == Some(node_id) {
            return Ok(Ok(()));
        }
        if role == TokenRole::EdgeFleet.as_str() {
            // Read first: a fleet edge beats every second.
            let known = self
                .query_opt(
                    "SELECT 1 FROM fleet_nodes WHERE node_id = ?1",
                    args![node_id],
                )
                .await?;
            if known.is_none() {
                self.exec(
                    "INSERT INTO fleet_nodes (node_id, token_id)
                     SELECT ?1, id FROM tokens WHERE hash = ?2 ON CONFLICT DO NOTHING",
                    args![node_id, hash],
                )
                .await?;
            }
            return Ok(Ok(()));
        }
        if let Some(other) = &bound
            && alive(other)
        {
            return Ok(Err(BoundElsewhere(format!(
                "this token belongs to node {other:?}; give each node a token of its own"
            ))));
        }
        let moved = self
            .exec(
                "UPDATE tokens SET node_id = ?2 WHERE hash = ?1
                   AND (node_id IS NULL OR node_id = CAST(?3 AS TEXT))",
                args![hash, node_id, bound.clone()],
            )
            .await?;
        if moved == 0 {
            return Ok(Err(BoundElsewhere(
                "this token was just bound to another node".into(),
            )));
        }
        Ok(Ok(()))
    }

    /// Whether `token` is an admin token (looked up by hash).
    pub async fn token_valid(&self, token: &str) -> Result<bool, DbError> {
        Ok(self.token_role(token).await? == Some(TokenRole::Admin))
    }

    /// The role of `token`, if it is one.
    pub async fn token_role(&self, token: &str) -> Result<Option<TokenRole>, DbError> {
        let row = self
            .query_opt(
                "SELECT role FROM tokens WHERE hash = ?1",
                args![secret::hash(token)],
            )
            .await?;
        Ok(match row {
            Some(r) => TokenRole::parse(&r.text(0)?),
            None => None,
        })
    }

    /// Every token (hints only), newest first.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>, DbError> {
        self.query(
            "SELECT id, hint, role, created_at FROM tokens ORDER BY id DESC",
            args![],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(TokenRow {
                id: r.int(0)?,
                hint: r.text(1)?,
                role: r.text(2)?,
                created_at: r.int(3)?,
            })
        })
        .collect()
    }

    /// Deletes a token; the last admin token cannot be deleted.
    pub async fn delete_token(&self, id: i64) -> Result<(), DbError> {
        let others = self
            .query_opt(
                "SELECT COUNT(*) FROM tokens WHERE role = 'admin' AND id != ?1",
                args![id],
            )
            .await?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        if others == 0 {
            return Err(DbError::Exists("the last admin token (it stays)".into()));
        }
        let n = self
            .exec("DELETE FROM tokens WHERE id = ?1", args![id])
            .await?;
        if n == 0 {
            return Err(DbError::NotFound(format!("token {id}")));
        }
        Ok(())
    }
}
