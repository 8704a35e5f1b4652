//! The queries on SQLite; `tests/it/control.rs` runs the API (and so every
//! query) on PostgreSQL too.

use super::*;

#[tokio::test]
async fn keys_publish_their_stream_until_revoked() {
    let db = Db::memory().unwrap();
    db.create_stream("a", true).await.unwrap();
    assert!(matches!(
        db.create_stream("a", true).await,
        Err(DbError::Exists(_))
    ));
    let id = db.add_key("a", "secret-1").await.unwrap();
    assert!(matches!(
        db.add_key("a", "secret-1").await,
        Err(DbError::Exists(_))
    ));
    assert_eq!(
        db.stream_for_key("secret-1").await.unwrap(),
        Some(("a".into(), true))
    );
    assert_eq!(db.stream_for_key("secret-2").await.unwrap(), None);
    db.revoke_key("a", id).await.unwrap();
    assert_eq!(db.stream_for_key("secret-1").await.unwrap(), None);
    assert!(db.revoke_key("a", id).await.is_err());
    assert_eq!(db.keys("a").await.unwrap()[0].hint, "secr…(8 chars)");
}

#[tokio::test]
async fn a_lease_is_held_until_it_expires_then_another_worker_takes_it() {
    let db = Db::memory().unwrap();
    db.create_stream("a", true).await.unwrap();
    let t = db
        .create_task("a", "restream", &serde_json::json!({}), true)
        .await
        .unwrap();
    let live = vec!["a".to_owned()];
    let later = || now_ms() + 10_000;
    assert!(
        db.claim_tasks("w1", &[], later(), 10)
            .await
            .unwrap()
            .is_empty(),
        "not live"
    );
    assert_eq!(
        db.claim_tasks("w1", &live, later(), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        db.claim_tasks("w2", &live, later(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let status = TaskStatus {
        state: "running".into(),
        last_error: None,
        restarts: 0,
    };
    assert!(
        db.renew_task(t.id, "w1", now_ms() - 1, &status)
            .await
            .unwrap()
    );
    let taken = db.claim_tasks("w2", &live, later(), 10).await.unwrap();
    assert_eq!(taken[0].worker.as_deref(), Some("w2"));
    assert!(!db.renew_task(t.id, "w1", later(), &status).await.unwrap());
}

#[tokio::test]
async fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let db = Db::open(&path).unwrap();
        db.create_stream("kept", false).await.unwrap();
        db.add_token("tok").await.unwrap();
        db.set_drain("e1", true).await.unwrap();
    }
    let db = Db::open(&path).unwrap();
    assert!(!db.stream("kept").await.unwrap().enabled);
    assert!(db.token_valid("tok").await.unwrap());
    assert!(!db.token_valid("other").await.unwrap());
    assert_eq!(db.drains().await.unwrap(), ["e1"]);
}

fn node(id: &str, at_ms: i64) -> NodeRow {
    NodeRow {
        id: id.into(),
        role: "origin".into(),
        address: "a".into(),
        version: "1".into(),
        last_heartbeat_ms: at_ms,
        load: 0.5,
        streams: vec!["s".into()],
        viewers: Default::default(),
        audience: Default::default(),
        ingest: Default::default(),
        edge: None,
        relay: None,
    }
}

#[tokio::test]
async fn nodes_keep_their_streams() {
    let db = Db::memory().unwrap();
    let n = node("o1", now_ms());
    db.heartbeat(&n).await.unwrap();
    db.heartbeat(&n).await.unwrap();
    assert_eq!(db.nodes().await.unwrap(), vec![n]);
}

#[tokio::test]
async fn the_newest_beat_of_a_node_wins_whoever_stores_it() {
    let db = Db::memory().unwrap();
    let now = now_ms();
    db.store_beats(&[node("o1", now), node("o2", now)])
        .await
        .unwrap();
    // A slower control process stores an older beat of o1 afterwards.
    db.store_beats(&[node("o1", now - 500)]).await.unwrap();
    let mut seen = db.beats_since(now - 1).await.unwrap();
    seen.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].last_heartbeat_ms, now);
    assert!(db.beats_since(now).await.unwrap().is_empty());
    // Many at once, over the per-statement batch.
    let many: Vec<NodeRow> = (0..1200).map(|i| node(&format!("e{i}"), now + 1)).collect();
    db.store_beats(&many).await.unwrap();
    assert_eq!(db.beats_since(now).await.unwrap().len(), 1200);
}

#[tokio::test]
async fn one_holder_leads_until_its_lease_runs_out_or_it_resigns() {
    let db = Db::memory().unwrap();
    let a = db.lead("control", "a", 60_000).await.unwrap();
    assert!(a.leader);
    assert!(!db.lead("control", "b", 60_000).await.unwrap().leader);
    assert_eq!(db.lead("control", "a", 60_000).await.unwrap(), a);
    db.resign("control", "a").await.unwrap();
    let b = db.lead("control", "b", 60_000).await.unwrap();
    assert!(b.leader);
    assert!(b.term > a.term, "a new term when the lease changes hands");
    // Expired: taken over.
    db.lead("control", "b", -1).await.unwrap();
    assert!(db.lead("control", "a", 60_000).await.unwrap().leader);
}

#[tokio::test]
async fn a_kick_is_taken_once() {
    let db = Db::memory().unwrap();
    db.add_kick("s", "o1").await.unwrap();
    db.add_kick("s", "o1").await.unwrap();
    assert_eq!(db.kicks().await.unwrap(), [("s".into(), "o1".into())]);
    assert!(db.take_kick("s", "o1").await.unwrap());
    assert!(!db.take_kick("s", "o1").await.unwrap());
}

#[tokio::test]
async fn a_node_token_moves_only_when_its_node_is_gone() {
    let db = Db::memory().unwrap();
    db.add_token("admin").await.unwrap();
    db.add_token_with_role("edge-tok", TokenRole::Edge)
        .await
        .unwrap();
    assert_eq!(
        db.bind_node("edge-tok", "e1", |_| true).await.unwrap(),
        Ok(())
    );
    assert!(
        db.bind_node("edge-tok", "e2", |_| true)
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        db.bind_node("admin", "e1", |_| true)
            .await
            .unwrap()
            .is_err()
    );
    assert_eq!(
        db.bind_node("edge-tok", "e2", |_| false).await.unwrap(),
        Ok(())
    );
    assert_eq!(db.bind_node("admin", "e1", |_| true).await.unwrap(), Ok(()));
}
