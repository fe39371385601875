//! The Swarm API's contract, as the `swarm_*` steps rely on it: a created service is found
//! by name and by ID with the spec gantry set (labels, template digest) and converges; an
//! update at the current version converges to the new template, one at an outdated version
//! is refused; a rollback puts the previous spec back and says `rollback_completed` in a
//! new update status; a removed service is gone, and removing it again is fine. An overlay
//! network is created once and has scope `swarm`; the engine's `bridge` has scope `local`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::drivers::swarm::{
    self as driver, Progress, ServiceInput, progress, service_spec, template_of, update_started,
    update_state,
};
use crate::ports::{SwarmApi, SwarmServiceInfo, SwarmSpec, labels};

pub struct SwarmFixture<'a> {
    /// An image on the manager whose container keeps running.
    pub image: &'a str,
    /// A service name no one else uses.
    pub name: &'a str,
    /// Labels the service and its tasks carry (the test run's).
    pub labels: BTreeMap<String, String>,
    /// A container port to publish (`None`: none; Swarm's routing mesh needs iptables).
    pub port: Option<u16>,
    /// How long Swarm may take to converge.
    pub within: Duration,
}

fn spec(f: &SwarmFixture<'_>, revision: u64, version: &str) -> SwarmSpec {
    let toml = format!(
        "[project]\nname = \"conformance\"\n\n[service.web]\nruntime = \"swarm\"\nimage = \"{}\"\nstop_grace_period = \"1s\"\n{}",
        f.image,
        f.port.map_or(String::new(), |p| format!("port = {p}\n"))
    );
    let mut model = crate::testing::model(&toml)
        .services
        .remove("web")
        .expect("web");
    model.labels = f.labels.clone();
    let update = crate::plan::steps::swarm::update_config(&model);
    service_spec(&ServiceInput {
        name: f.name,
        project: "conformance",
        service: "web",
        host: "manager",
        revision,
        spec: &model,
        image: f.image,
        env: &[format!("VERSION={version}")],
        replicas: 1,
        update: &update,
        spec_hash: "conformance",
        network: None,
        project_labels: &BTreeMap::new(),
    })
}

async fn inspect(api: &dyn SwarmApi, name: &str) -> SwarmServiceInfo {
    api.inspect(name)
        .await
        .expect("inspect")
        .unwrap_or_else(|| panic!("service {name} exists"))
}

/// Waits until the service runs `template` in full; the last progress otherwise.
async fn converge(
    api: &dyn SwarmApi,
    f: &SwarmFixture<'_>,
    before: Option<&str>,
    template: &str,
) -> Progress {
    let deadline = tokio::time::Instant::now() + f.within;
    loop {
        let svc = inspect(api, f.name).await;
        let tasks = api
            .tasks(svc.id.as_deref().unwrap_or(f.name))
            .await
            .expect("tasks");
        let p = progress(&svc, before, &tasks, 1, template);
        if matches!(p, Progress::Converged(_)) || tokio::time::Instant::now() >= deadline {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn swarm_api(api: &dyn SwarmApi, f: &SwarmFixture<'_>) {
    api.check_manager().await.expect("an active manager");
    assert!(api.inspect(f.name).await.expect("inspect").is_none());

    // Create.
    let v1 = spec(f, 1, "v1");
    let t1 = template_of(&v1).expect("a template digest").to_string();
    let id = api.create(v1).await.expect("create");
    let svc = inspect(api, &id).await;
    assert_eq!(svc.id.as_deref(), Some(id.as_str()), "found by ID");
    let svc2 = inspect(api, f.name).await;
    assert_eq!(svc2.id, svc.id, "found by name");
    assert_eq!(driver::label(&svc, labels::REVISION), Some("1"));
    for (k, v) in &f.labels {
        assert_eq!(driver::label(&svc, k), Some(v.as_str()), "label {k}");
    }
    let set = svc.spec.as_ref().expect("a spec");
    assert_eq!(template_of(set), Some(t1.as_str()));
    let p = converge(api, f, None, &t1).await;
    assert!(matches!(p, Progress::Converged(_)), "created: {p:?}");
    if let Some(port) = f.port {
        let svc = inspect(api, f.name).await;
        assert!(driver::published_port(&svc, port).is_some(), "published");
    }

    // Update at the current version; an outdated one is refused.
    let svc = inspect(api, f.name).await;
    let version = svc
        .version
        .as_ref()
        .and_then(|v| v.index)
        .expect("a version");
    let before = update_started(&svc);
    let v2 = spec(f, 2, "v2");
    let t2 = template_of(&v2).expect("digest").to_string();
    assert_ne!(t1, t2, "another environment is another template");
    api.update(&id, version, v2.clone()).await.expect("update");
    assert!(
        api.update(&id, version, v2).await.is_err(),
        "an update at an outdated version is refused"
    );
    let p = converge(api, f, before.as_deref(), &t2).await;
    assert!(matches!(p, Progress::Converged(_)), "updated: {p:?}");
    let svc = inspect(api, f.name).await;
    assert_eq!(driver::label(&svc, labels::REVISION), Some("2"));

    // Rollback: the previous spec, in a new update status.
    let before = update_started(&svc);
    api.rollback(&svc).await.expect("rollback");
    let deadline = tokio::time::Instant::now() + f.within;
    let svc = loop {
        let svc = inspect(api, f.name).await;
        let done =
            update_state(&svc) == Some("rollback_completed") && update_started(&svc) != before;
        if done || tokio::time::Instant::now() >= deadline {
            break svc;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(update_state(&svc), Some("rollback_completed"));
    assert_eq!(driver::label(&svc, labels::REVISION), Some("1"));
    assert_eq!(
        svc.spec.as_ref().and_then(template_of),
        Some(t1.as_str()),
        "the previous template"
    );

    let image_id = "sha256:".to_string() + &"0".repeat(64);
    let pinned = api.pinned_image(f.image, &image_id).await;
    assert!(!pinned.is_empty());
    assert_eq!(api.health_output("no-such-container").await, None);

    // Remove.
    api.remove(f.name).await.expect("remove");
    let gone = crate::testing::conformance::eventually(&true, f.within, || async {
        api.inspect(f.name).await.expect("inspect").is_none()
    })
    .await;
    assert!(gone, "removed");
    api.remove(f.name)
        .await
        .expect("removing what is gone is fine");

    // Networks: an overlay network is created once, with its labels; a local one (the
    // engine's `bridge`) is not one a service can join.
    let net = format!("{}_net", f.name);
    assert_eq!(api.network_scope(&net).await.expect("scope"), None);
    assert!(api.ensure_overlay(&net, &f.labels).await.expect("create"));
    assert!(!api.ensure_overlay(&net, &f.labels).await.expect("exists"));
    assert_eq!(
        api.network_scope(&net).await.expect("scope").as_deref(),
        Some("swarm")
    );
    assert_eq!(
        api.network_scope("bridge").await.expect("scope").as_deref(),
        Some("local")
    );
    let err = api
        .ensure_overlay("bridge", &f.labels)
        .await
        .expect_err("a local network is not an overlay network");
    assert!(err.contains("scope `local`"), "{err}");
}
