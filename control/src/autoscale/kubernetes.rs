//! The `kubernetes` provider: the edges are a Deployment, and the farm's
//! size is its `scale` subresource. Removing a drained edge marks its pod
//! the cheapest to delete (`controller.kubernetes.io/pod-deletion-cost`)
//! before the scale goes down, so the ReplicaSet removes that pod and not
//! one with viewers.
//!
//! Four REST calls, made with the HTTP client already in the tree rather
//! than the `kube` crate (whose generated API types would add minutes to
//! every build for these four calls).

use std::path::{Path, PathBuf};

use autoscale::KubernetesConfig;
use serde_json::json;
use tracing::info;

use super::provider::{Provider, ProviderError, ProviderFuture};

/// Where a pod's service account secrets are mounted.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The deletion cost given to a drained pod: below any default (0).
pub const DRAINED_POD_COST: &str = "-1000000";
/// Attempts at a scale change that meets a conflict (409) before giving up.
const CONFLICT_RETRIES: usize = 5;

/// A Deployment's scale, through the Kubernetes API.
pub struct KubernetesProvider {
    http: reqwest::Client,
    api: String,
    namespace: String,
    deployment: String,
    token_file: PathBuf,
    lease: String,
    lease_seconds: u32,
    identity: String,
}

impl KubernetesProvider {
    /// A provider from `[autoscale.kubernetes]`: in-cluster defaults for
    /// whatever is left empty; `identity` holds the Lease (the node id).
    pub fn new(c: &KubernetesConfig, identity: &str) -> Result<Self, ProviderError> {
        let sa = Path::new(SERVICE_ACCOUNT);
        let api = if c.api_url.is_empty() {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                ProviderError::Config(
                    "[autoscale.kubernetes] api_url is empty and KUBERNETES_SERVICE_HOST is not set (not in a pod?)"
                        .into(),
                )
            })?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        } else {
            c.api_url.trim_end_matches('/').to_owned()
        };
        let namespace = if c.namespace.is_empty() {
            std::fs::read_to_string(sa.join("namespace"))
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    ProviderError::Config(format!("[autoscale.kubernetes] namespace is empty and the pod's cannot be read: {e}"))
                })?
        } else {
            c.namespace.clone()
        };
        let token_file = if c.token_file.is_empty() {
            sa.join("token")
        } else {
            PathBuf::from(&c.token_file)
        };
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10));
        let ca = if c.ca_file.is_empty() {
            sa.join("ca.crt")
        } else {
            PathBuf::from(&c.ca_file)
        };
        if api.starts_with("https://") {
            let pem = std::fs::read(&ca).map_err(|e| {
                ProviderError::Config(format!("[autoscale.kubernetes] CA {}: {e}", ca.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ProviderError::Config(format!("CA {}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| ProviderError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            api,
            namespace,
            deployment: c.deployment.clone(),
            token_file,
            lease: c.lease.clone(),
            lease_seconds: c.lease_seconds.max(1),
            identity: identity.to_owned(),
        })
    }

    fn lease_url(&self) -> String {
        format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/{}/leases",
            self.api, self.namespace
        )
    }

    /// Takes or renews the Lease: `true` while this process holds it.
    /// Another holder whose renewal is older than the lease's duration has
    /// lost it; a write that meets a conflict lost the race for it.
    async fn hold_lease(&self) -> Result<bool, ProviderError> {
        let now = std::time::SystemTime::now();
        let stamp = humantime::format_rfc3339_micros(now).to_string();
        let url = format!("{}/{}", self.lease_url(), self.lease);
        let r = self
            .http
            .get(&url)
            .bearer_auth(self.token()?)
            .send()
            .await
            .map_err(|e| ProviderError::Api(format!("GET lease: {e}")))?;
        let status = r.status().as_u16();
        let spec = |transitions: u64, acquired: &str| {
            json!({
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": acquired,
                "renewTime": stamp,
                "leaseTransitions": transitions,
            })
        };
        let write = match status {
            404 => {
                let body = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.lease, "namespace": self.namespace},
                    "spec": spec(0, &stamp),
                });
                self.http.post(self.lease_url()).json(&body)
            }
            200 => {
                let lease: serde_json::Value = r
                    .json()
                    .await
                    .map_err(|e| ProviderError::Api(format!("GET lease: {e}")))?;
                let s = &lease["spec"];
                let holder = s["holderIdentity"].as_str().unwrap_or("");
                let renewed = s["renewTime"]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
                let duration = std::time::Duration::from_secs(
                    s["leaseDurationSeconds"]
                        .as_u64()
                        .unwrap_or(u64::from(self.lease_seconds)),
                );
                let expired = renewed.is_none_or(|t| t + duration < now);
                let mine = holder == self.identity;
                if !mine && !holder.is_empty() && !expired {
                    return Ok(false);
                }
                let transitions = s["leaseTransitions"].as_u64().unwrap_or(0) + u64::from(!mine);
                let acquired = if mine {
                    s["acquireTime"].as_str().unwrap_or(&stamp).to_owned()
                } else {
                    stamp.clone()
                };
                let mut body = lease.clone();
                body["spec"] = spec(transitions, &acquired);
                self.http.put(&url).json(&body)
            }
            s => {
                let text = r.text().await.unwrap_or_default();
                return Err(ProviderError::Api(format!("GET lease: {s}: {text}")));
            }
        };
        let r = write
            .bearer_auth(self.token()?)
            .send()
            .await
            .map_err(|e| ProviderError::Api(format!("writing the lease: {e}")))?;
        match r.status().as_u16() {
            200 | 201 => Ok(true),
            // Another process wrote it first.
            409 => Ok(false),
            s => {
                let text = r.text().await.unwrap_or_default();
                Err(ProviderError::Api(format!(
                    "writing the lease: {s}: {text}"
                )))
            }
        }
    }

    fn token(&self) -> Result<String, ProviderError> {
        // Read each time: the kubelet rotates projected tokens.
        std::fs::read_to_string(&self.token_file)
            .map(|t| t.trim().to_owned())
            .map_err(|e| ProviderError::Config(format!("token {}: {e}", self.token_file.display())))
    }

    fn scale_url(&self) -> String {
        format!(
            "{}/apis/apps/v1/namespaces/{}/deployments/{}/scale",
            self.api, self.namespace, self.deployment
        )
    }

    /// The Deployment's wanted replicas and the scale's resource version.
    async fn scale(&self) -> Result<(u32, String), ProviderError> {
        let r = self
            .http
            .get(self.scale_url())
            .bearer_auth(self.token()?)
            .send()
            .await
            .map_err(|e| ProviderError::Api(format!("GET scale: {e}")))?;
        let status = r.status();
        let body: serde_json::Value = r
            .json()
            .await
            .map_err(|e| ProviderError::Api(format!("GET scale ({status}): {e}")))?;
        if !status.is_success() {
            return Err(ProviderError::Api(format!(
                "GET scale of deployment {}/{}: {status}: {}",
                self.namespace,
                self.deployment,
                body["message"].as_str().unwrap_or("")
            )));
        }
        let replicas = body["spec"]["replicas"].as_u64().unwrap_or(0);
        let version = body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok((u32::try_from(replicas).unwrap_or(u32::MAX), version))
    }

    /// Changes the wanted replicas by `delta`, re-reading on conflicts.
    async fn rescale(&self, delta: i64) -> Result<u32, ProviderError> {
        for _ in 0..CONFLICT_RETRIES {
            let (replicas, version) = self.scale().await?;
            let wanted = u32::try_from((i64::from(replicas) + delta).max(0)).unwrap_or(0);
            let body = json!({
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": self.deployment,
                    "namespace": self.namespace,
                    "resourceVersion": version,
                },
                "spec": {"replicas": wanted},
            });
            let r = self
                .http
                .put(self.scale_url())
                .bearer_auth(self.token()?)
                .json(&body)
                .send()
                .await
                .map_err(|e| ProviderError::Api(format!("PUT scale: {e}")))?;
            match r.status().as_u16() {
                200 | 201 => {
                    info!(deployment = %self.deployment, from = replicas, to = wanted, "scaled the edge deployment");
                    return Ok(wanted);
                }
                // Someone else changed the scale in between: read it again.
                409 => continue,
                s => {
                    let text = r.text().await.unwrap_or_default();
                    return Err(ProviderError::Api(format!("PUT scale: {s}: {text}")));
                }
            }
        }
        Err(ProviderError::Api(format!(
            "PUT scale: still conflicting after {CONFLICT_RETRIES} attempts"
        )))
    }

    /// Makes pod `name` the one the ReplicaSet deletes first. `false` when
    /// the pod is gone already.
    async fn mark_cheapest(&self, name: &str) -> Result<bool, ProviderError> {
        let url = format!(
            "{}/api/v1/namespaces/{}/pods/{name}",
            self.api, self.namespace
        );
        let patch = json!({"metadata": {"annotations": {
            "controller.kubernetes.io/pod-deletion-cost": DRAINED_POD_COST,
        }}});
        let r = self
            .http
            .patch(url)
            .bearer_auth(self.token()?)
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .map_err(|e| ProviderError::Api(format!("PATCH pod: {e}")))?;
        match r.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => {
                let text = r.text().await.unwrap_or_default();
                Err(ProviderError::Api(format!("PATCH pod {name}: {s}: {text}")))
            }
        }
    }
}

impl Provider for KubernetesProvider {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn add(&self, n: u32) -> ProviderFuture<'_, Vec<String>> {
        Box::pin(async move {
            self.rescale(i64::from(n)).await?;
            // Pods are named by the ReplicaSet: counted as starting until
            // edges new to control report.
            Ok(Vec::new())
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            if !self.mark_cheapest(id).await? {
                // Gone already (evicted, crashed): the ReplicaSet has made a
                // fresh pod in its place, which scaling down now removes
                // (it has no viewers yet and no cost set).
                info!(pod = %id, "drained pod already gone");
            }
            self.rescale(-1).await?;
            Ok(())
        })
    }

    fn owns(&self, id: &str) -> bool {
        id.strip_prefix(self.deployment.as_str())
            .is_some_and(|rest| rest.starts_with('-'))
    }

    fn leader(&self) -> ProviderFuture<'_, bool> {
        Box::pin(async move {
            if self.lease.is_empty() {
                return Ok(true);
            }
            self.hold_lease().await
        })
    }
}
