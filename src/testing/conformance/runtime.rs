//! The container runtime's contract, as the executor relies on it: create gives a
//! `Created` container with its name, labels and image; start makes it `Running` with its
//! host port (the one asked for, or one the driver fixed at create, the same after a stop and
//! a start); a start whose host port another container holds fails with `PortInUse`;
//! starting what runs is fine; stop makes it `Exited`, and stopping or removing what is gone
//! is fine; a name is taken until its container is removed; list finds containers by all of
//! the given labels, sorted by name; an image in use is not removed; an image that is not on
//! the host has no ID and cannot be used. Networks and volumes are ensured idempotently; a
//! container joins networks with aliases; a volume in use is not removed; the restart policy
//! of a container can be changed; a pull from nowhere fails without showing its credentials; missing bind sources are found; a health command that
//! passes makes a container `Healthy`, one that fails `Unhealthy` with its output; an exec in a
//! running container gives the command's exit code and output (a program that is not there
//! is a non-zero exit code, not an error), and in a stopped one is an error.
//!
//! What only a real engine can show (a name resolving on a network, what `docker ps`
//! shows, every option reaching the container) is checked by the real test alone
//! (`tests/it/conformance.rs`); the fake has accessors of its own for those.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ports::{
    ContainerRuntime, ContainerSpec, ContainerState, HealthStatus, Healthcheck, LiveSettings,
    Mount, MountSource, NetworkAttachment, NetworkMode, RegistryAuth, Restart, RuntimeError,
};

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
    /// A host path that exists and one that does not (bind-mount sources).
    pub existing_path: &'a str,
    pub missing_path: &'a str,
    /// A health command that passes in a container of `image`.
    pub healthcheck: Vec<String>,
    /// An environment entry that makes that command fail, and a text its output then holds.
    /// (The fake is told the same with `FakeRuntime::unhealthy` on the `sick` container.)
    pub sick_env: &'a str,
    pub sick_output: &'a str,
    /// How long health may take to show.
    pub within: Duration,
    /// A command that exits 0 when exec'ed in a running container of `image`, and one that
    /// exits non-zero writing a line that holds `exec_fail_output` (to stdout or stderr).
    /// (The fake is told with `FakeRuntime::script_exec`, as it is of the missing program.)
    pub exec_ok: Vec<String>,
    pub exec_fails: Vec<String>,
    pub exec_fail_output: &'a str,
}

/// A program that is in no image: an exec of it runs and fails (Docker: exit code 126 or 127).
pub const NO_SUCH_PROGRAM: &str = "/gantry-no-such-program";

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

    // A pull that fails, with credentials, says why without them.
    let auth = RegistryAuth {
        server: "127.0.0.1:1".into(),
        username: "conformance".into(),
        password: "conformance-password-never-shown".into(),
        identity_token: None,
    };
    match rt
        .pull("127.0.0.1:1/gantry-conformance:never", Some(&auth))
        .await
    {
        Err(e @ RuntimeError::ImageUnavailable { .. }) => {
            assert!(!e.to_string().contains(&auth.password), "{e}");
        }
        other => panic!("a pull from no registry: {other:?}"),
    }
    assert_eq!(
        rt.image_id("127.0.0.1:1/gantry-conformance:never")
            .await
            .expect("image_id"),
        None
    );

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

    // Start: running, with the port the driver fixed at create.
    rt.start(&id).await.expect("start");
    let info = rt.inspect(&id).await.expect("inspect").expect("exists");
    assert_eq!(info.state, ContainerState::Running);
    let a_port = info.host_port.expect("a host port chosen for it");
    rt.start(&id).await.expect("starting what runs is fine");

    // Another container asking for that port cannot start: PortInUse, with the port.
    let mut clash = spec(f, "clash", &[]);
    clash.host_port = Some(a_port);
    let clash_id = rt.create(&clash).await.expect("create clash");
    match rt.start(&clash_id).await {
        Err(RuntimeError::PortInUse { port, .. }) => assert_eq!(port, a_port),
        other => panic!("a start on a taken host port: {other:?}"),
    }
    rt.remove(&clash_id).await.expect("remove clash");

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
    assert!(
        rt.exec(&id, &f.exec_ok).await.is_err(),
        "an exec in a stopped container is an error"
    );
    rt.start(&id).await.expect("start again");
    let info = rt.inspect(&id).await.expect("inspect").expect("exists");
    assert_eq!(info.state, ContainerState::Running);
    assert_eq!(
        info.host_port,
        Some(a_port),
        "the host port is kept across a stop and a start"
    );
    rt.set_restart(&id, Restart::No).await.expect("set_restart");
    rt.set_restart(&id, Restart::OnFailure(Some(3)))
        .await
        .expect("set_restart");
    let _ = rt.logs_tail(&id, 5).await.expect("logs");

    // Exec: the exit code and the output of a command run in the container.
    let ok = rt.exec(&id, &f.exec_ok).await.expect("exec");
    assert_eq!(ok.exit_code, 0, "{ok:?}");
    let failed = rt
        .exec(&id, &f.exec_fails)
        .await
        .expect("a command that fails is an exit code, not an error");
    assert_ne!(failed.exit_code, 0, "{failed:?}");
    assert!(
        failed.output.iter().any(|l| l.contains(f.exec_fail_output)),
        "{failed:?}"
    );
    let missing = rt
        .exec(&id, &[NO_SUCH_PROGRAM.to_string()])
        .await
        .expect("a missing program is an exit code, not an error");
    assert_ne!(missing.exit_code, 0, "{missing:?}");

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

    networks_and_volumes(rt, f).await;
    health(rt, f).await;
    wait_for_exit(rt, f).await;
    assert_eq!(
        rt.missing_paths(
            f.image,
            &[f.existing_path.to_string(), f.missing_path.to_string()]
        )
        .await
        .expect("missing_paths"),
        [f.missing_path.to_string()]
    );
    assert!(
        rt.list(&mine).await.expect("list").is_empty(),
        "the suite leaves no container behind"
    );
}

fn labelled(f: &RuntimeFixture<'_>) -> BTreeMap<String, String> {
    let mut labels = f.labels.clone();
    labels.insert("dev.gantry.conformance".into(), f.prefix.into());
    labels
}

async fn networks_and_volumes<R: ContainerRuntime>(rt: &R, f: &RuntimeFixture<'_>) {
    let labels = labelled(f);
    let net = format!("{}-net", f.prefix);
    let other = format!("{}-net2", f.prefix);
    assert!(!rt.network_exists(&net).await.expect("network_exists"));
    for n in [&net, &net, &other] {
        rt.ensure_network(n, &labels)
            .await
            .expect("ensure_network (twice is fine)");
    }
    assert!(rt.network_exists(&net).await.expect("network_exists"));
    assert!(
        !rt.network_exists(&format!("{}-nonet", f.prefix))
            .await
            .expect("network_exists")
    );

    let vol = format!("{}-vol", f.prefix);
    rt.ensure_volume(&vol, &labels)
        .await
        .expect("ensure_volume");
    rt.ensure_volume(&vol, &labels)
        .await
        .expect("ensure_volume twice is fine");
    let mine = [("dev.gantry.conformance", f.prefix)];
    assert_eq!(
        rt.list_volumes(&mine).await.expect("list_volumes"),
        std::slice::from_ref(&vol)
    );
    assert!(
        rt.list_volumes(&[mine[0], ("dev.gantry.conformance-role", "none")])
            .await
            .expect("list_volumes")
            .is_empty()
    );

    // A container on two networks, with an alias on each, and the volume mounted.
    let mut web = spec(f, "net", &[]);
    web.options.networks = vec![
        NetworkAttachment {
            name: net.clone(),
            aliases: vec!["conf-web".into()],
        },
        NetworkAttachment {
            name: other.clone(),
            aliases: vec!["conf-web2".into()],
        },
    ];
    web.options.mounts = vec![Mount {
        source: MountSource::Volume(vol.clone()),
        target: "/data".into(),
        read_only: false,
    }];
    web.options.restart = Restart::Always;
    web.memory_bytes = Some(96 << 20);
    web.cpus = Some(0.5);
    let id = rt.create(&web).await.expect("create on networks");
    rt.start(&id).await.expect("start on networks");
    let info = rt.inspect(&id).await.expect("inspect").expect("exists");
    assert_eq!(info.state, ContainerState::Running);
    assert!(info.host_port.is_some());
    // What can change while it lives is read back as it was asked for, then as changed.
    let mut networks = vec![net.clone(), other.clone()];
    networks.sort();
    let settings = LiveSettings {
        restart: Restart::Always,
        memory_bytes: Some(96 << 20),
        nano_cpus: Some(500_000_000),
        networks,
    };
    assert_eq!(info.settings.as_ref(), Some(&settings));
    rt.set_restart(&id, Restart::OnFailure(Some(3)))
        .await
        .expect("set_restart");
    let changed = rt.inspect(&id).await.expect("inspect").expect("exists");
    assert_eq!(
        changed.settings.map(|s| s.restart),
        Some(Restart::OnFailure(Some(3)))
    );
    assert!(
        rt.list(&[("dev.gantry.conformance", f.prefix)])
            .await
            .expect("list")
            .iter()
            .all(|c| c.settings.is_none()),
        "list reads no settings (one call per engine)"
    );
    let mut isolated = spec(f, "isolated", &[]);
    isolated.options.network_mode = NetworkMode::None;
    let isolated_id = rt.create(&isolated).await.expect("create, network none");
    let none = rt
        .inspect(&isolated_id)
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(
        none.settings.map(|s| (s.restart, s.networks)),
        Some((Restart::UnlessStopped, vec!["none".to_string()]))
    );
    rt.remove(&isolated_id).await.expect("remove");

    // A network that is not there refuses the create, or (Docker 20.10) the start.
    let mut lost = spec(f, "lost", &[]);
    lost.options.networks = vec![NetworkAttachment {
        name: format!("{}-nonet", f.prefix),
        aliases: Vec::new(),
    }];
    if let Ok(lost_id) = rt.create(&lost).await {
        assert!(rt.start(&lost_id).await.is_err(), "a missing network");
        rt.remove(&lost_id).await.expect("remove");
    }
    assert_eq!(rt.inspect(&lost.name).await.expect("inspect"), None);

    assert!(
        !rt.remove_volume(&vol).await.expect("remove_volume"),
        "a volume in use is kept"
    );
    assert!(
        !rt.remove_network(&net, &mine)
            .await
            .expect("remove_network"),
        "a network a running container is on is kept"
    );
    rt.stop(&id, Duration::from_secs(2)).await.expect("stop");
    assert!(
        !rt.remove_volume(&vol).await.expect("remove_volume"),
        "a stopped container still uses it"
    );
    rt.remove(&id).await.expect("remove");
    assert!(
        !rt.remove_network(&net, &[("dev.gantry.conformance", "someone-else")])
            .await
            .expect("remove_network"),
        "a network without the labels is not ours to remove"
    );
    for n in [&net, &other] {
        assert!(rt.remove_network(n, &mine).await.expect("remove_network"));
        assert!(!rt.network_exists(n).await.expect("network_exists"));
        assert!(
            !rt.remove_network(n, &mine).await.expect("remove_network"),
            "what is gone"
        );
    }
    assert!(rt.remove_volume(&vol).await.expect("remove_volume"));
    assert!(
        rt.list_volumes(&mine)
            .await
            .expect("list_volumes")
            .is_empty()
    );
    assert!(
        !rt.remove_volume(&vol).await.expect("remove_volume"),
        "what is gone"
    );
}

/// `wait`: the exit code of a container that exits (the test app with
/// `CRASH_AFTER_SECONDS` exits 3; the fake is told so with `exit_at_start` on `exits`), and
/// `None` at the timeout for one that keeps running.
async fn wait_for_exit<R: ContainerRuntime>(rt: &R, f: &RuntimeFixture<'_>) {
    let mut exits = spec(f, "exits", &[]);
    exits.env.push("CRASH_AFTER_SECONDS=0.2".into());
    exits.options.restart = Restart::No;
    let runs = spec(f, "runs", &[]);
    let exits_id = rt.create(&exits).await.expect("create");
    let runs_id = rt.create(&runs).await.expect("create");
    rt.start(&exits_id).await.expect("start");
    rt.start(&runs_id).await.expect("start");
    assert_eq!(
        rt.wait(&exits_id, f.within).await.expect("wait"),
        Some(3),
        "the exit code"
    );
    assert_eq!(
        rt.wait(&exits_id, f.within).await.expect("wait"),
        Some(3),
        "again, once exited"
    );
    assert_eq!(
        rt.wait(&runs_id, Duration::from_millis(300))
            .await
            .expect("wait"),
        None,
        "still running at the timeout"
    );
    for id in [&exits_id, &runs_id] {
        rt.remove(id).await.expect("remove");
    }
    assert!(
        rt.wait(&exits_id, Duration::from_millis(300))
            .await
            .is_err(),
        "a container that is gone"
    );
}

async fn health<R: ContainerRuntime>(rt: &R, f: &RuntimeFixture<'_>) {
    let check = Healthcheck {
        test: f.healthcheck.clone(),
        interval: Duration::from_millis(500),
        timeout: Duration::from_secs(5),
        retries: 1,
        start_period: Duration::ZERO,
    };
    let mut well = spec(f, "well", &[("dev.gantry.conformance-role", "well")]);
    well.options.healthcheck = Some(check.clone());
    let mut sick = spec(f, "sick", &[]);
    sick.env.push(f.sick_env.to_string());
    sick.options.healthcheck = Some(check);
    let plain = spec(f, "plain", &[]);
    let mut ids = Vec::new();
    for s in [&well, &sick, &plain] {
        let id = rt.create(s).await.expect("create");
        rt.start(&id).await.expect("start");
        ids.push(id);
    }
    let status = |id: String| async move {
        rt.inspect(&id)
            .await
            .expect("inspect")
            .and_then(|i| i.health)
            .map(|h| h.status)
    };
    let seen = super::eventually(&Some(HealthStatus::Healthy), f.within, || {
        status(ids[0].clone())
    })
    .await;
    assert_eq!(
        seen,
        Some(HealthStatus::Healthy),
        "a passing health command"
    );
    let listed = rt
        .list(&[
            ("dev.gantry.conformance", f.prefix),
            ("dev.gantry.conformance-role", "well"),
        ])
        .await
        .expect("list");
    assert_eq!(
        listed[0].health.as_ref().map(|h| h.status),
        Some(HealthStatus::Healthy),
        "list reports health too"
    );
    let seen = super::eventually(&Some(HealthStatus::Unhealthy), f.within, || {
        status(ids[1].clone())
    })
    .await;
    assert_eq!(
        seen,
        Some(HealthStatus::Unhealthy),
        "a failing health command"
    );
    let health = rt
        .inspect(&ids[1])
        .await
        .expect("inspect")
        .and_then(|i| i.health)
        .expect("health");
    let output = health.last_output.unwrap_or_default();
    assert!(
        output.contains(f.sick_output),
        "the last output: {output:?}"
    );
    assert_eq!(
        rt.inspect(&ids[2])
            .await
            .expect("inspect")
            .expect("exists")
            .health,
        None,
        "no health command, no health"
    );
    for id in &ids {
        rt.remove(id).await.expect("remove");
    }
}
