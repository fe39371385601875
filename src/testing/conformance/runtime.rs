//! The container runtime's contract, as the executor relies on it: create gives a
//! `Created` container with its name, labels and image; start makes it `Running` with its
//! host port (the one asked for, or one the engine chose); starting what runs is fine;
//! stop makes it `Exited`, and stopping or removing what is gone is fine; a name is taken
//! until its container is removed; list finds containers by all of the given labels, sorted
//! by name; an image in use is not removed; an image that is not on the host has no ID and
//! cannot be used.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ports::{ContainerRuntime, ContainerSpec, ContainerState, RuntimeError};

pub struct RuntimeFixture<'a> {
    /// An image on the host whose container keeps running and listens on `port`.
    pub image: &'a str,
    pub port: u16,
    /// Labels every container the suite creates carries (the test run's).
    pub labels: BTreeMap<String, String>,
    /// A prefix that makes the suite's container names unique.
    pub prefix: &'a str,
    /// A host port free now, on `host_ip`.
    pub free_port: u16,
    pub host_ip: &'a str,
    /// A reference on no host and in no registry.
    pub missing_image: &'a str,
    /// An image on the host that nothing uses and the suite may remove (`None`: skip that).
    pub spare_image: Option<&'a str>,
}

fn spec(f: &RuntimeFixture<'_>, name: &str, extra: &[(&str, &str)]) -> ContainerSpec {
    let mut labels = f.labels.clone();
    labels.insert("dev.gantry.conformance".into(), f.prefix.into());
    for (k, v) in extra {
        labels.insert(k.to_string(), v.to_string());
    }
    ContainerSpec {
        name: format!("{}-{name}", f.prefix),
        image: f.image.to_string(),
        command: None,
        env: vec!["VERSION=conformance".into()],
        labels,
        port: Some(f.port),
        host_port: None,
        host_ip: f.host_ip.to_string(),
        memory_bytes: None,
        cpus: None,
        log_max_size: None,
        log_max_files: None,
        stop_grace: Duration::from_secs(2),
        image_ref: None,
        options: Default::default(),
    }
}

pub async fn runtime<R: ContainerRuntime>(rt: &R, f: &RuntimeFixture<'_>) {
    rt.ping().await.expect("ping");
    let image_id = rt
        .image_id(f.image)
        .await
        .expect("image_id")
        .expect("the fixture's image is on the host");
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    assert_eq!(rt.image_id(f.missing_image).await.expect("image_id"), None);

    // Create: not started, carries what it was given.
    let a = spec(f, "a", &[("dev.gantry.conformance-role", "a")]);
    let id = rt.create(&a).await.expect("create");
    let info = rt.inspect(&id).await.expect("inspect").expect("it exists");
    assert_eq!(info.state, ContainerState::Created);
    assert_eq!(info.name, a.name);
    assert_eq!(info.id, id);
    assert_eq!(info.image_id, image_id);
    for (k, v) in &a.labels {
        assert_eq!(info.labels.get(k), Some(v), "label {k}");
    }
    assert!(
        rt.create(&a).await.is_err(),
        "a name is taken while its container exists"
    );

    // Start: running, with the port the engine chose.
    rt.start(&id).await.expect("start");
    let info = rt.inspect(&id).await.expect("inspect").expect("exists");
    assert_eq!(info.state, ContainerState::Running);
    assert!(info.host_port.is_some(), "an engine-chosen host port");
    rt.start(&id).await.expect("starting what runs is fine");

    // A fixed host port is the one published.
    let mut fixed = spec(f, "b", &[("dev.gantry.conformance-role", "b")]);
    fixed.host_port = Some(f.free_port);
    let b = rt.create(&fixed).await.expect("create b");
    rt.start(&b).await.expect("start b");
    let info = rt.inspect(&b).await.expect("inspect").expect("exists");
    assert_eq!(info.host_port, Some(f.free_port));

    // List: by every label given, sorted by name.
    let mine = [("dev.gantry.conformance", f.prefix)];
    let names: Vec<String> = rt
        .list(&mine)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, [a.name.clone(), fixed.name.clone()]);
    let only_b = rt
        .list(&[mine[0], ("dev.gantry.conformance-role", "b")])
        .await
        .expect("list");
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].id, b);
    assert_eq!(only_b[0].state, ContainerState::Running);
    assert!(
        rt.list(&[mine[0], ("dev.gantry.conformance-role", "c")])
            .await
            .expect("list")
            .is_empty()
    );

    assert!(
        !rt.remove_image(&image_id).await.expect("remove_image"),
        "an image in use is kept"
    );
    assert!(rt.image_id(f.image).await.expect("image_id").is_some());

    // Stop: exited; stopping again is fine; a start brings it back.
    rt.stop(&id, Duration::from_secs(2)).await.expect("stop");
    let info = rt.inspect(&id).await.expect("inspect").expect("kept");
    assert!(
        matches!(info.state, ContainerState::Exited(_)),
        "{:?}",
        info.state
    );
    rt.stop(&id, Duration::from_secs(2))
        .await
        .expect("stopping a stopped container is fine");
    rt.start(&id).await.expect("start again");
    let info = rt.inspect(&id).await.expect("inspect").expect("exists");
    assert_eq!(info.state, ContainerState::Running);
    assert!(info.host_port.is_some());
    let _ = rt.logs_tail(&id, 5).await.expect("logs");

    // Remove: gone, and what is gone can be stopped and removed again.
    for c in [&id, &b] {
        rt.remove(c).await.expect("remove");
        assert_eq!(rt.inspect(c).await.expect("inspect"), None);
        rt.remove(c).await.expect("removing what is gone is fine");
        rt.stop(c, Duration::from_secs(1))
            .await
            .expect("stopping what is gone is fine");
    }
    assert!(rt.list(&mine).await.expect("list").is_empty());
    rt.create(&a).await.expect("the name is free again");
    let again = rt.list(&mine).await.expect("list");
    for c in &again {
        rt.remove(&c.id).await.expect("remove");
    }

    // Images that are not there.
    let mut missing = spec(f, "missing", &[]);
    missing.image = f.missing_image.to_string();
    assert!(matches!(
        rt.create(&missing).await,
        Err(RuntimeError::ImageUnavailable { .. })
    ));
    assert_eq!(
        rt.inspect(&missing.name).await.expect("inspect"),
        None,
        "nothing created"
    );
    assert!(
        !rt.remove_image(&format!("sha256:{}", "0".repeat(64)))
            .await
            .expect("remove_image of what is not there"),
    );
    if let Some(spare) = f.spare_image {
        let spare_id = rt.image_id(spare).await.expect("image_id").expect("spare");
        assert!(rt.remove_image(&spare_id).await.expect("remove_image"));
        assert_eq!(rt.image_id(spare).await.expect("image_id"), None);
    }
}
