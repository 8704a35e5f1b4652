//! The `kubernetes` provider against a server on loopback that answers as
//! the Kubernetes API does (the scale subresource with resource versions
//! and 409 conflicts, pod merge patches and 404s, refusals): no API server
//! can be installed here, so this is the contract it is held to. A real one
//! is exercised by `FERRY_TEST_KUBECONFIG` runs (see the README).

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use autoscale::KubernetesConfig;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, patch};
use axum::{Json, Router};
use control::autoscale::Provider;
use control::autoscale::kubernetes::{DRAINED_POD_COST, KubernetesProvider};
use serde_json::{Value, json};

const TOKEN: &str = "sa-token-123";

#[derive(Default)]
struct Api {
    replicas: u64,
    version: u64,
    /// Conflicts to answer before accepting a PUT (someone else scaling).
    conflicts: usize,
    /// Answer every scale call with this status instead.
    refuse: Option<u16>,
    pods: BTreeMap<String, Value>,
    log: Vec<String>,
    lease: Option<Value>,
    /// Answer the next lease write with 409 (another process wrote first).
    lease_conflict: bool,
}

type Shared = Arc<Mutex<Api>>;

fn authorised(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn get_scale(State(api): State<Shared>, h: HeaderMap) -> (StatusCode, Json<Value>) {
    let mut a = api.lock().unwrap();
    a.log.push("GET scale".into());
    if !authorised(&h) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unauthorized"})),
        );
    }
    if let Some(s) = a.refuse {
        let message = "deployments.apps \"ferry-edge\" is forbidden: User \"system:serviceaccount:cdn:ferry-control\" cannot get resource \"deployments/scale\"";
        return (
            StatusCode::from_u16(s).unwrap(),
            Json(json!({"kind": "Status", "message": message})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": "ferry-edge", "namespace": "cdn", "resourceVersion": a.version.to_string()},
            "spec": {"replicas": a.replicas},
            "status": {"replicas": a.replicas, "selector": "app=ferry-edge"},
        })),
    )
}

async fn put_scale(
    State(api): State<Shared>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut a = api.lock().unwrap();
    assert!(authorised(&h));
    assert_eq!(body["kind"], "Scale");
    let wanted = body["spec"]["replicas"].as_u64().unwrap();
    a.log.push(format!("PUT scale {wanted}"));
    let current = a.version.to_string();
    if a.conflicts > 0 || body["metadata"]["resourceVersion"].as_str() != Some(current.as_str()) {
        a.conflicts = a.conflicts.saturating_sub(1);
        // Someone else scaled in between.
        a.version += 1;
        return (
            StatusCode::CONFLICT,
            Json(
                json!({"kind": "Status", "reason": "Conflict", "message": "the object has been modified; please apply your changes to the latest version and try again"}),
            ),
        );
    }
    a.replicas = wanted;
    a.version += 1;
    (
        StatusCode::OK,
        Json(json!({"kind": "Scale", "spec": {"replicas": wanted}})),
    )
}

async fn patch_pod(
    State(api): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    h: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let mut a = api.lock().unwrap();
    assert!(authorised(&h));
    assert_eq!(ns, "cdn");
    assert_eq!(
        h.get("content-type").unwrap(),
        "application/merge-patch+json",
        "a merge patch: other annotations stay"
    );
    a.log.push(format!("PATCH pod {name}"));
    let patch: Value = serde_json::from_str(&body).unwrap();
    match a.pods.get_mut(&name) {
        Some(pod) => {
            for (k, v) in patch["metadata"]["annotations"].as_object().unwrap() {
                pod["metadata"]["annotations"][k] = v.clone();
            }
            (StatusCode::OK, Json(pod.clone()))
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(
                json!({"kind": "Status", "reason": "NotFound", "message": format!("pods \"{name}\" not found")}),
            ),
        ),
    }
}

async fn get_lease(
    State(api): State<Shared>,
    Path((_, name)): Path<(String, String)>,
) -> (StatusCode, Json<Value>) {
    let a = api.lock().unwrap();
    assert_eq!(name, "ferry-autoscaler");
    match &a.lease {
        Some(l) => (StatusCode::OK, Json(l.clone())),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"kind": "Status", "reason": "NotFound"})),
        ),
    }
}

async fn write_lease(api: Shared, create: bool, body: Value) -> (StatusCode, Json<Value>) {
    let mut a = api.lock().unwrap();
    if std::mem::take(&mut a.lease_conflict) || create == a.lease.is_some() {
        return (
            StatusCode::CONFLICT,
            Json(
                json!({"kind": "Status", "reason": if create { "AlreadyExists" } else { "Conflict" }}),
            ),
        );
    }
    let mut body = body;
    let version = a.version;
    a.version += 1;
    body["metadata"]["resourceVersion"] = json!(version.to_string());
    a.lease = Some(body.clone());
    (
        if create {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(body),
    )
}

async fn provider(api: &Shared) -> (KubernetesProvider, tempfile::TempDir) {
    let router = Router::new()
        .route(
            "/apis/apps/v1/namespaces/cdn/deployments/ferry-edge/scale",
            get(get_scale).put(put_scale),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}", patch(patch_pod))
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/cdn/leases",
            axum::routing::post(|State(api): State<Shared>, Json(b): Json<Value>| {
                write_lease(api, true, b)
            }),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
            get(get_lease)
                .put(|State(api): State<Shared>, Json(b): Json<Value>| write_lease(api, false, b)),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let p = KubernetesProvider::new(
        &KubernetesConfig {
            api_url: format!("http://{addr}"),
            namespace: "cdn".into(),
            deployment: "ferry-edge".into(),
            token_file: token_file.display().to_string(),
            ..KubernetesConfig::default()
        },
        "control-a",
    )
    .unwrap();
    (p, dir)
}

fn api(replicas: u64, pods: &[&str]) -> Shared {
    Arc::new(Mutex::new(Api {
        replicas,
        version: 7,
        pods: pods
            .iter()
            .map(|p| ((*p).to_owned(), json!({"metadata": {"name": p, "annotations": {"prometheus.io/scrape": "true"}}})))
            .collect(),
        ..Api::default()
    }))
}

#[tokio::test]
async fn growing_rereads_the_scale_after_a_conflict() {
    let api = api(2, &[]);
    api.lock().unwrap().conflicts = 1;
    let (p, _dir) = provider(&api).await;
    let ids = p.add(3).await.unwrap();
    assert!(ids.is_empty(), "pods are named by the ReplicaSet");
    let a = api.lock().unwrap();
    assert_eq!(a.replicas, 5);
    assert_eq!(
        a.log,
        ["GET scale", "PUT scale 5", "GET scale", "PUT scale 5"]
    );
}

#[tokio::test]
async fn a_drained_pod_is_made_the_cheapest_before_the_scale_goes_down() {
    let api = api(4, &["ferry-edge-7d9f-abcde", "ferry-edge-7d9f-fghij"]);
    let (p, _dir) = provider(&api).await;
    assert!(p.owns("ferry-edge-7d9f-abcde"));
    assert!(!p.owns("ferry-edgeless-1") && !p.owns("edge-by-hand") && !p.owns("ferry-edge"));
    p.remove("ferry-edge-7d9f-abcde").await.unwrap();
    let a = api.lock().unwrap();
    assert_eq!(a.replicas, 3);
    assert_eq!(
        a.log,
        [
            "PATCH pod ferry-edge-7d9f-abcde",
            "GET scale",
            "PUT scale 3"
        ],
        "cost first, then the scale"
    );
    let pod = &a.pods["ferry-edge-7d9f-abcde"]["metadata"]["annotations"];
    assert_eq!(
        pod["controller.kubernetes.io/pod-deletion-cost"],
        DRAINED_POD_COST
    );
    assert_eq!(
        pod["prometheus.io/scrape"], "true",
        "other annotations kept"
    );
    assert!(
        a.pods["ferry-edge-7d9f-fghij"]["metadata"]["annotations"]
            .get("controller.kubernetes.io/pod-deletion-cost")
            .is_none()
    );
}

#[tokio::test]
async fn a_pod_gone_already_still_shrinks_the_deployment() {
    let api = api(3, &[]);
    let (p, _dir) = provider(&api).await;
    p.remove("ferry-edge-7d9f-gone1").await.unwrap();
    assert_eq!(api.lock().unwrap().replicas, 2);
}

#[tokio::test]
async fn refusals_and_endless_conflicts_are_errors_that_say_why() {
    let api = api(3, &[]);
    api.lock().unwrap().refuse = Some(403);
    let (p, _dir) = provider(&api).await;
    let e = p.add(1).await.unwrap_err().to_string();
    assert!(e.contains("403") && e.contains("forbidden"), "{e}");
    let api2 = self::api(3, &[]);
    api2.lock().unwrap().conflicts = 100;
    let (p, _dir) = provider(&api2).await;
    let e = p.add(1).await.unwrap_err().to_string();
    assert!(e.contains("conflicting"), "{e}");
    assert_eq!(api2.lock().unwrap().replicas, 3, "nothing changed");
}

#[tokio::test]
async fn outside_a_pod_without_an_api_url_the_provider_says_so() {
    // Only meaningful outside Kubernetes (where the variable is absent).
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return;
    }
    let e = KubernetesProvider::new(&KubernetesConfig::default(), "control-a")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("KUBERNETES_SERVICE_HOST"), "{e}");
}

fn lease_held_by(holder: &str, renewed: std::time::SystemTime) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "ferry-autoscaler", "namespace": "cdn", "resourceVersion": "3"},
        "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": 15,
            "acquireTime": humantime::format_rfc3339_micros(renewed).to_string(),
            "renewTime": humantime::format_rfc3339_micros(renewed).to_string(),
            "leaseTransitions": 2,
        },
    })
}

#[tokio::test]
async fn one_control_process_holds_the_lease_and_scales() {
    let api = api(2, &[]);
    let (p, _dir) = provider(&api).await;
    // No Lease yet: this process creates it and leads, then renews it.
    assert!(p.leader().await.unwrap());
    let first = api.lock().unwrap().lease.clone().unwrap();
    assert_eq!(first["spec"]["holderIdentity"], "control-a");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(p.leader().await.unwrap());
    let renewed = api.lock().unwrap().lease.clone().unwrap();
    assert_ne!(renewed["spec"]["renewTime"], first["spec"]["renewTime"]);
    assert_eq!(renewed["spec"]["acquireTime"], first["spec"]["acquireTime"]);
    assert_eq!(renewed["spec"]["leaseTransitions"], 0);

    // Another process holds it and renews it: this one does not lead.
    api.lock().unwrap().lease = Some(lease_held_by("control-b", std::time::SystemTime::now()));
    assert!(!p.leader().await.unwrap(), "a lost lease");
    // It stopped renewing 20 s ago (past its 15 s): taken over.
    let stale = std::time::SystemTime::now() - std::time::Duration::from_secs(20);
    api.lock().unwrap().lease = Some(lease_held_by("control-b", stale));
    assert!(p.leader().await.unwrap());
    let taken = api.lock().unwrap().lease.clone().unwrap();
    assert_eq!(taken["spec"]["holderIdentity"], "control-a");
    assert_eq!(taken["spec"]["leaseTransitions"], 3);
    // Racing another process for an expired lease and losing: not leader.
    api.lock().unwrap().lease = Some(lease_held_by("control-b", stale));
    api.lock().unwrap().lease_conflict = true;
    assert!(!p.leader().await.unwrap());
}

/// Against a real API server, when `FERRY_TEST_KUBECONFIG` names a
/// kubeconfig (kind, k3s, any cluster; `kubectl` on the PATH): the manifests
/// pass a server-side dry run, a scratch Deployment's replicas follow the
/// provider, and the pod it drained is the one removed. Skipped otherwise
/// (no API server can be installed where CI runs).
#[tokio::test]
async fn live_cluster_follows_the_provider_when_one_is_given() {
    let Some(kubeconfig) = std::env::var_os("FERRY_TEST_KUBECONFIG") else {
        eprintln!("FERRY_TEST_KUBECONFIG not set: skipped");
        return;
    };
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .args(args)
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ns = format!("ferry-test-{:06x}", rand::random::<u32>() & 0xff_ffff);
    kubectl(&["create", "namespace", &ns]);
    let manifests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        &ns,
        "-f",
        manifests.to_str().unwrap(),
    ]);
    kubectl(&[
        "create",
        "deployment",
        "ferry-edge",
        "-n",
        &ns,
        "--replicas=2",
        "--image=busybox:1.36",
        "--",
        "sleep",
        "3600",
    ]);
    // kubectl proxy holds the credentials; the provider speaks plain HTTP to it.
    let mut proxy = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args(["proxy", "--port", "18801"])
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "unused-behind-kubectl-proxy").unwrap();
    let p = KubernetesProvider::new(
        &KubernetesConfig {
            api_url: "http://127.0.0.1:18801".into(),
            namespace: ns.clone(),
            token_file: token.display().to_string(),
            ..KubernetesConfig::default()
        },
        "control-live",
    )
    .unwrap();
    let pods = || {
        let names = kubectl(&[
            "get",
            "pods",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        names
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let wait = async |what: &str, ok: &dyn Fn(&[String]) -> bool| {
        for _ in 0..120 {
            if ok(&pods()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        panic!("{what}: {:?}", pods());
    };
    assert!(p.leader().await.unwrap(), "the Lease");
    p.add(1).await.unwrap();
    wait("three pods", &|p| p.len() == 3).await;
    let victim = pods()[1].clone();
    assert!(p.owns(&victim));
    p.remove(&victim).await.unwrap();
    wait("the drained pod gone", &|p| {
        p.len() == 2 && !p.contains(&victim)
    })
    .await;
    let _ = proxy.kill();
    let _ = proxy.wait();
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
