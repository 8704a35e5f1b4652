//! Nodes and what several control processes share about them: each node's
//! registration, its latest beat (written in batches, so liveness reaches
//! every control process without a write per beat), drains, kicks waiting
//! for an origin's next beat, and the leader's lease.

use control_client::types::NodeRow;

use super::{Db, DbError, Value, args, now_ms};

/// Beats per batched statement (well under both dialects' parameter limits).
const BEATS_PER_STATEMENT: usize = 500;

/// What taking or keeping the leader's lease answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// This holder has the lease until it runs out.
    pub leader: bool,
    /// Bumped each time the lease changes hands: work done under an older
    /// term is stale.
    pub term: i64,
}

impl Db {
    /// Records a node's registration (new, or its role, address or version
    /// changed).
    pub async fn heartbeat(&self, node: &NodeRow) -> Result<(), DbError> {
        self.exec(
            "INSERT INTO nodes (id, role, address, version, last_heartbeat_ms, load, streams) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET role = excluded.role, address = excluded.address, version = excluded.version,
               last_heartbeat_ms = excluded.last_heartbeat_ms, load = excluded.load, streams = excluded.streams",
            args![
                node.id.as_str(),
                node.role.as_str(),
                node.address.as_str(),
                node.version.as_str(),
                node.last_heartbeat_ms,
                node.load,
                serde_json::to_string(&node.streams).unwrap_or_else(|_| "[]".into())
            ],
        )
        .await?;
        Ok(())
    }

    /// Deletes nodes (and their beats) last seen before `cutoff_ms` that are
    /// not in `keep`.
    pub async fn prune_nodes(&self, cutoff_ms: i64, keep: &[String]) -> Result<usize, DbError> {
        let old = self
            .query(
                "SELECT id FROM nodes WHERE last_heartbeat_ms < ?1",
                args![cutoff_ms],
            )
            .await?;
        let mut removed = 0;
        for row in old {
            let id = row.text(0)?;
            if keep.contains(&id) {
                continue;
            }
            removed += self
                .exec("DELETE FROM nodes WHERE id = ?1", args![id.as_str()])
                .await?;
        }
        self.exec("DELETE FROM beats WHERE at_ms < ?1", args![cutoff_ms])
            .await?;
        Ok(removed as usize)
    }

    /// Every node ever registered, most recent registration first.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, DbError> {
        self.query(
            "SELECT id, role, address, version, last_heartbeat_ms, load, streams FROM nodes ORDER BY last_heartbeat_ms DESC",
            args![],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(NodeRow {
                id: r.text(0)?,
                role: r.text(1)?,
                address: r.text(2)?,
                version: r.text(3)?,
                last_heartbeat_ms: r.int(4)?,
                load: r.real(5)?,
                streams: serde_json::from_str(&r.text(6)?).unwrap_or_default(),
                edge: None,
                relay: None,
                viewers: Default::default(),
                audience: Default::default(),
                ingest: Default::default(),
            })
        })
        .collect()
    }

    /// Stores the latest beat of each node in `beats` (a newer one already
    /// stored, from another control process, wins), in a few statements.
    pub async fn store_beats(&self, beats: &[NodeRow]) -> Result<(), DbError> {
        for chunk in beats.chunks(BEATS_PER_STATEMENT) {
            let mut sql = String::from("INSERT INTO beats (node_id, at_ms, body) VALUES ");
            let mut values = Vec::with_capacity(chunk.len() * 3);
            for (i, b) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let n = i * 3;
                sql.push_str(&format!("(?{}, ?{}, ?{})", n + 1, n + 2, n + 3));
                values.push(Value::from(b.id.as_str()));
                values.push(Value::Int(b.last_heartbeat_ms));
                values.push(Value::Text(
                    serde_json::to_string(b).map_err(|_| DbError::Column(2))?,
                ));
            }
            sql.push_str(
                " ON CONFLICT (node_id) DO UPDATE SET at_ms = excluded.at_ms, body = excluded.body
                  WHERE excluded.at_ms > beats.at_ms",
            );
            self.exec(&sql, values).await?;
        }
        Ok(())
    }

    /// The beats stored since `since_ms`, from every control process.
    pub async fn beats_since(&self, since_ms: i64) -> Result<Vec<NodeRow>, DbError> {
        let rows = self
            .query("SELECT body FROM beats WHERE at_ms > ?1", args![since_ms])
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(&r.text(0).ok()?).ok())
            .collect())
    }

    /// Marks edge `id` draining (or not), for every control process and
    /// across restarts.
    pub async fn set_drain(&self, id: &str, draining: bool) -> Result<(), DbError> {
        if draining {
            self.exec(
                "INSERT INTO drains (node_id, since_ms) VALUES (?1, ?2) ON CONFLICT (node_id) DO NOTHING",
                args![id, now_ms()],
            )
            .await?;
        } else {
            self.exec("DELETE FROM drains WHERE node_id = ?1", args![id])
                .await?;
        }
        Ok(())
    }

    /// The edges marked draining.
    pub async fn drains(&self) -> Result<Vec<String>, DbError> {
        self.query("SELECT node_id FROM drains", args![])
            .await?
            .iter()
            .map(|r| r.text(0))
            .collect()
    }

    /// Asks origin `node` to kick the publisher of `stream` with its next
    /// beat, whichever control process that beat reaches.
    pub async fn add_kick(&self, stream: &str, node: &str) -> Result<(), DbError> {
        self.exec(
            "INSERT INTO kicks (stream, node_id, at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (stream, node_id) DO UPDATE SET at_ms = excluded.at_ms",
            args![stream, node, now_ms()],
        )
        .await?;
        Ok(())
    }

    /// Drops kicks asked for before `cutoff_ms`.
    pub async fn drop_kicks_before(&self, cutoff_ms: i64) -> Result<(), DbError> {
        self.exec("DELETE FROM kicks WHERE at_ms < ?1", args![cutoff_ms])
            .await?;
        Ok(())
    }

    /// Every kick waiting, as `(stream, node)`.
    pub async fn kicks(&self) -> Result<Vec<(String, String)>, DbError> {
        self.query("SELECT stream, node_id FROM kicks", args![])
            .await?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
    }

    /// Takes a waiting kick: `true` for the one caller that removed it.
    pub async fn take_kick(&self, stream: &str, node: &str) -> Result<bool, DbError> {
        Ok(self
            .exec(
                "DELETE FROM kicks WHERE stream = ?1 AND node_id = ?2",
                args![stream, node],
            )
            .await?
            > 0)
    }

    /// Takes or keeps the lease `name` for `holder` until `now + ttl_ms`:
    /// granted when nobody holds it, it ran out, or `holder` has it already.
    pub async fn lead(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<Leadership, DbError> {
        let now = now_ms();
        self.exec(
            "INSERT INTO leader (name, holder, until_ms, term) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (name) DO UPDATE SET
               term = CASE WHEN leader.holder = excluded.holder THEN leader.term ELSE leader.term + 1 END,
               holder = excluded.holder, until_ms = excluded.until_ms
             WHERE leader.holder = excluded.holder OR leader.until_ms < ?4",
            args![name, holder, now + ttl_ms, now],
        )
        .await?;
        let row = self
            .query_opt(
                "SELECT holder, term FROM leader WHERE name = ?1",
                args![name],
            )
            .await?
            .ok_or_else(|| DbError::NotFound(format!("lease {name:?}")))?;
        Ok(Leadership {
            leader: row.text(0)? == holder,
            term: row.int(1)?,
        })
    }

    /// Gives the lease `name` up (a clean shutdown), so another process
    /// takes it at once instead of when it runs out.
    pub async fn resign(&self, name: &str, holder: &str) -> Result<(), DbError> {
        self.exec(
            "UPDATE leader SET until_ms = 0 WHERE name = ?1 AND holder = ?2",
            args![name, holder],
        )
        .await?;
        Ok(())
    }
}
