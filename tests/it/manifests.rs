//! `deploy/kubernetes/`: every object parses as its Kubernetes type (and
//! says nothing those types do not know: a misspelt field would be dropped
//! silently by the API server), and every Ferry container's settings
//! (its `FERRY_*` environment, its config file) are accepted by `ferry config`.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;

fn manifests() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !v.is_null() {
                docs.push((f.clone(), v));
            }
        }
    }
    docs
}

/// `v` read as `T` and written back: what `T` does not know is gone.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Value {
    let typed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
    serde_json::to_value(typed).unwrap()
}

#[test]
fn every_object_is_what_kubernetes_reads() {
    let docs = manifests();
    let kinds: Vec<&str> = docs
        .iter()
        .map(|(_, v)| v["kind"].as_str().unwrap())
        .collect();
    for want in [
        "Deployment",
        "Service",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
    ] {
        assert!(kinds.contains(&want), "no {want} in {kinds:?}");
    }
    for (file, v) in &docs {
        let back = match v["kind"].as_str().unwrap() {
            "Deployment" => round_trip::<Deployment>(v),
            "Service" => round_trip::<Service>(v),
            "ServiceAccount" => round_trip::<ServiceAccount>(v),
            "Role" => round_trip::<Role>(v),
            "RoleBinding" => round_trip::<RoleBinding>(v),
            "ConfigMap" => round_trip::<ConfigMap>(v),
            "PersistentVolumeClaim" => round_trip::<PersistentVolumeClaim>(v),
            "HorizontalPodAutoscaler" => round_trip::<HorizontalPodAutoscaler>(v),
            other => panic!("{}: a {other} is not checked here", file.display()),
        };
        assert_eq!(
            &back,
            v,
            "{}: fields the type does not know",
            file.display()
        );
    }
}

#[test]
fn the_edges_are_what_the_autoscaler_scales_and_drain_within_their_grace() {
    let docs = manifests();
    let deployment = |name: &str| {
        docs.iter()
            .find(|(_, v)| v["kind"] == "Deployment" && v["metadata"]["name"] == name)
            .map(|(_, v)| serde_json::from_value::<Deployment>(v.clone()).unwrap())
            .unwrap()
    };
    let edge = deployment("ferry-edge");
    let pod = edge.spec.unwrap().template.spec.unwrap();
    let env = |name: &str| {
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        env("FERRY_NODE_ID").as_deref(),
        Some("$(POD_NAME)"),
        "pods register under their names"
    );
    let drain: i64 = env("FERRY_EDGE__DRAIN_SECONDS").unwrap().parse().unwrap();
    assert!(
        drain < pod.termination_grace_period_seconds.unwrap(),
        "the drain fits the grace period"
    );
    // The autoscaler may scale exactly that Deployment.
    let role = docs
        .iter()
        .find(|(_, v)| v["kind"] == "Role")
        .map(|(_, v)| serde_json::from_value::<Role>(v.clone()).unwrap())
        .unwrap();
    let rules = role.rules.unwrap();
    assert!(rules.iter().any(|r| {
        r.resources.as_deref() == Some(&["deployments/scale".to_owned()][..])
            && r.resource_names.as_deref() == Some(&["ferry-edge".to_owned()][..])
            && r.verbs.contains(&"update".to_owned())
    }));
    let config = docs
        .iter()
        .find(|(_, v)| v["kind"] == "ConfigMap")
        .map(|(_, v)| v["data"]["ferry.toml"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(config.contains("deployment = \"ferry-edge\""), "{config}");
}

/// Every Ferry container's environment and config file, through `ferry config`.
#[test]
fn every_container_s_settings_are_accepted_by_ferry() {
    let docs = manifests();
    let dir = tempfile::tempdir().unwrap();
    let config_file = docs
        .iter()
        .find(|(_, v)| v["kind"] == "ConfigMap")
        .map(|(_, v)| {
            let path = dir.path().join("ferry.toml");
            std::fs::write(&path, v["data"]["ferry.toml"].as_str().unwrap()).unwrap();
            path
        })
        .unwrap();
    let mut checked = 0;
    for (file, v) in docs.iter().filter(|(_, v)| v["kind"] == "Deployment") {
        let d: Deployment = serde_json::from_value(v.clone()).unwrap();
        for c in d.spec.unwrap().template.spec.unwrap().containers {
            let args = c.args.unwrap_or_default();
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
            // `ferry config` takes the settings every role reads.
            cmd.arg("config").env_clear();
            let mut rest = args.iter().skip(1);
            while let Some(a) = rest.next() {
                match a.as_str() {
                    "--config" => {
                        rest.next();
                        cmd.arg("--config").arg(&config_file);
                    }
                    "--data-dir" | "--http-listen" | "--rtmp-listen" => {
                        cmd.arg(a).arg(rest.next().unwrap());
                    }
                    // Role flags `ferry config` does not take.
                    "--origins" | "--control" | "--public-url" | "--token" => {
                        rest.next();
                    }
                    other => panic!("{}: unexpected argument {other}", file.display()),
                }
            }
            for e in c.env.unwrap_or_default() {
                if !e.name.starts_with("FERRY_") {
                    continue;
                }
                // Secrets and pod fields stand in as plausible values.
                let value = match (e.value, e.name.as_str()) {
                    (Some(v), _) if !v.contains("$(") => v,
                    (_, n) if n.ends_with("_URL") || n.ends_with("ENDPOINT") => {
                        "http://10.0.0.9:8080".into()
                    }
                    _ => "manifest-check-value-0123456789abcdef".into(),
                };
                cmd.env(&e.name, value);
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{} container {}: {}",
                file.display(),
                c.name,
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "control, origin, edge, director");
}
