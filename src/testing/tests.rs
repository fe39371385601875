//! Each conformance suite against its fake, and what the fakes add for tests (faults,
//! records).

use std::collections::BTreeMap;
use std::time::Duration;

use super::conformance;
use super::*;
use crate::ports::{
    ContainerRuntime, ContainerSpec, ContainerState, LoadBalancer, Member, Restart,
};

#[tokio::test(start_paused = true)]
async fn the_fake_runtime_conforms() {
    let rt = FakeRuntime::new();
    rt.add_image("testapp:v1");
    rt.add_image("spare:v1");
    let f = conformance::runtime::RuntimeFixture {
        image: "testapp:v1",
        port: 8080,
        labels: BTreeMap::from([("run".to_string(), "unit".to_string())]),
        prefix: "conf",
        free_port: 18080,
        host_ip: "127.0.0.1",
        missing_image: "nowhere:v0",
        spare_image: Some("spare:v1"),
        existing_path: "/srv/logs",
        missing_path: "/srv/nowhere",
        healthcheck: vec!["/testapp".into(), "--healthcheck".into()],
        sick_env: "NEVER_HEALTHY=1",
        sick_output: "health check of /healthz failed",
        within: Duration::from_secs(10),
        exec_ok: vec!["/testapp".into(), "--healthcheck".into()],
        exec_fails: vec![
            "/testapp".into(),
            "--healthcheck".into(),
            "http://127.0.0.1:1/".into(),
        ],
        exec_fail_output: "failed: Connection refused",
    };
    rt.script_exec(
        "conf",
        "127.0.0.1:1",
        1,
        &["testapp: health check of / failed: Connection refused (os error 111)"],
    );
    rt.script_exec(
        "conf",
        conformance::runtime::NO_SUCH_PROGRAM,
        126,
        &["OCI runtime exec failed: no such file or directory"],
    );
    rt.remove_host_path("/srv/nowhere");
    rt.exit_at_start("conf-exits", 3);
    rt.unhealthy(
        "conf-sick",
        "testapp: health check of /healthz failed: HTTP/1.1 503 Service Unavailable",
    );
    conformance::runtime::runtime(&rt, &f).await;
}

#[tokio::test(start_paused = true)]
async fn the_fake_lb_conforms() {
    let lb = FakeLb::new();
    let observer = lb.clone();
    conformance::lb::load_balancer(&lb, "10.0.0.1:1", "10.0.0.2:2", || {
        let o = observer.clone();
        async move { o.in_rotation() }
    })
    .await;
    assert_eq!(lb.sets().len(), 4, "one record per change");
    assert!(lb.leaving().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_fake_prober_conforms() {
    let p = FakeProber::new();
    let f = conformance::prober::script_fake(&p);
    conformance::prober::prober(&p, &f).await;
}

#[tokio::test(start_paused = true)]
async fn the_fake_swarm_conforms() {
    let s = FakeSwarm::new();
    let f = conformance::swarm::SwarmFixture {
        image: "testapp:v1",
        name: "conformance_web",
        labels: BTreeMap::from([("run".to_string(), "unit".to_string())]),
        port: Some(8080),
        within: Duration::from_secs(5),
    };
    conformance::swarm::swarm_api(&s, &f).await;
}

#[tokio::test(start_paused = true)]
async fn the_fake_command_runner_conforms() {
    let c = FakeCommands::new();
    conformance::commands::script_fake(&c);
    conformance::commands::command_runner(&c).await;
    assert_eq!(c.calls()[0].argv, ["sh", "-c", "exit 0"]);
}

#[test]
fn the_fake_clock_conforms() {
    let c = FakeClock::default();
    conformance::clock::clock(&c);
    c.advance(Duration::from_secs(90));
    assert_eq!(crate::ports::Clock::rfc3339(&c), "2026-01-01T00:01:30Z");
}

#[test]
fn the_memory_store_conforms() {
    let a = super::MemoryStore::new();
    conformance::state::store(&a, &a.handle(), true);
}

/// The local state directory, through two handles on one directory (two commands).
#[test]
fn the_state_directory_conforms_as_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |_| crate::drivers::fs::StateDir {
        dir: tmp.path().join(".gantry"),
    };
    conformance::state::store(&dir(0), &dir(1), false);
}

#[test]
fn the_memory_sink_conforms() {
    let s = MemorySink::new();
    conformance::state::state_store(&s, &[]);
    assert_eq!(s.saves().len(), 2);
}

fn spec(name: &str, host_port: Option<u16>) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: "app:v1".into(),
        command: None,
        env: Vec::new(),
        labels: BTreeMap::new(),
        port: Some(8080),
        host_port,
        host_ip: "127.0.0.1".into(),
        memory_bytes: None,
        cpus: None,
        log_max_size: None,
        log_max_files: None,
        stop_grace: Duration::from_secs(1),
        image_ref: None,
        options: Default::default(),
    }
}

#[tokio::test]
async fn a_host_port_is_fixed_at_create_and_kept_across_restarts() {
    let rt = FakeRuntime::new();
    rt.add_image("app:v1");
    let id = rt.create(&spec("a", None)).await.unwrap();
    let other = rt.create(&spec("b", None)).await.unwrap();
    rt.start(&id).await.unwrap();
    rt.start(&other).await.unwrap();
    let first = rt.inspect(&id).await.unwrap().unwrap().host_port;
    assert_eq!(first, Some(32768));
    assert_eq!(
        rt.inspect(&other).await.unwrap().unwrap().host_port,
        Some(32769),
        "each container its own port"
    );
    assert_eq!(
        rt.by_name("a").unwrap().labels[crate::ports::labels::HOST_PORT],
        "32768"
    );
    rt.stop(&id, Duration::ZERO).await.unwrap();
    assert_eq!(rt.inspect(&id).await.unwrap().unwrap().host_port, None);
    // A container created while `a` is stopped does not get its port.
    let c = rt.create(&spec("c", None)).await.unwrap();
    rt.start(&c).await.unwrap();
    assert_eq!(
        rt.inspect(&c).await.unwrap().unwrap().host_port,
        Some(32770)
    );
    rt.start(&id).await.unwrap();
    assert_eq!(rt.inspect(&id).await.unwrap().unwrap().host_port, first);
}

#[tokio::test]
async fn a_dead_process_is_restarted_as_its_policy_says_on_the_same_port() {
    let rt = FakeRuntime::new();
    rt.add_image("app:v1");
    let mut specs = Vec::new();
    for (name, restart) in [
        ("always", Restart::Always),
        ("unless", Restart::UnlessStopped),
        ("once", Restart::OnFailure(Some(1))),
        ("never", Restart::No),
    ] {
        let mut s = spec(name, None);
        s.options.restart = restart;
        let id = rt.create(&s).await.unwrap();
        rt.start(&id).await.unwrap();
        specs.push(id);
    }
    let port = rt.by_name("unless").unwrap().host_port;
    for name in ["always", "unless", "once", "never"] {
        rt.kill_process(name, 137);
    }
    assert_eq!(rt.running(), ["always", "once", "unless"]);
    assert_eq!(rt.by_name("unless").unwrap().host_port, port);
    rt.kill_process("once", 137);
    assert_eq!(
        rt.by_name("once").unwrap().state,
        ContainerState::Exited(137),
        "on-failure:1 restarts once"
    );

    // An engine restart: `unless-stopped` stays stopped once a stop call stopped it.
    rt.stop(&specs[1], Duration::ZERO).await.unwrap();
    rt.stop(&specs[0], Duration::ZERO).await.unwrap();
    rt.restart_engine();
    assert_eq!(rt.running(), ["always"]);
    rt.start(&specs[1]).await.unwrap();
    rt.set_restart(&specs[1], Restart::No).await.unwrap();
    assert_eq!(rt.restart_of("unless"), Some(Restart::No));
    rt.restart_engine();
    assert_eq!(rt.running(), ["always"]);
}

#[tokio::test]
async fn docker_ps_shows_the_reference_only_while_it_names_the_image() {
    let rt = FakeRuntime::new();
    let id = rt.add_image("app:v1");
    rt.add_image("app:v2");
    let mut s = spec("a", None);
    s.image = id.clone();
    s.image_ref = Some("app:v1".into());
    rt.create(&s).await.unwrap();
    assert_eq!(rt.shown_image("a").as_deref(), Some("app:v1"));
    let mut moved = spec("b", None);
    moved.image = id.clone();
    moved.image_ref = Some("app:v2".into());
    rt.create(&moved).await.unwrap();
    assert_eq!(rt.shown_image("b"), Some(id.clone()), "another image");
    let mut gone = spec("c", None);
    gone.image = id.clone();
    gone.image_ref = Some("app:v0".into());
    rt.create(&gone).await.unwrap();
    assert_eq!(rt.shown_image("c"), Some(id), "a reference not on the host");
}

#[tokio::test]
async fn publish_ports_clash_and_host_networking_uses_the_container_port() {
    let rt = FakeRuntime::new();
    rt.add_image("app:v1");
    let udp: crate::ports::Publish = "8125:8125/udp".parse().unwrap();
    let mut a = spec("a", None);
    a.options.publish = vec![udp.clone()];
    let mut b = spec("b", None);
    b.options.publish = vec![udp];
    let a = rt.create(&a).await.unwrap();
    let b = rt.create(&b).await.unwrap();
    rt.start(&a).await.unwrap();
    match rt.start(&b).await {
        Err(crate::ports::RuntimeError::PortInUse { port: 8125, .. }) => {}
        other => panic!("{other:?}"),
    }
    let mut h = spec("h", None);
    h.options.network_mode = crate::ports::NetworkMode::Host;
    let h = rt.create(&h).await.unwrap();
    rt.start(&h).await.unwrap();
    assert_eq!(rt.inspect(&h).await.unwrap().unwrap().host_port, Some(8080));
    let mut n = spec("n", None);
    n.options.network_mode = crate::ports::NetworkMode::None;
    let n = rt.create(&n).await.unwrap();
    rt.start(&n).await.unwrap();
    assert_eq!(rt.inspect(&n).await.unwrap().unwrap().host_port, None);
}

#[tokio::test]
async fn scripted_faults_strike_the_containers_they_name() {
    let rt = FakeRuntime::new();
    rt.add_image("app:v1");
    rt.fail_once(FakeOp::Start, "web-2", "no space left on device");
    rt.exit_at_start("worker", 3);
    rt.ignore_sigterm("slow");
    let a = rt.create(&spec("p-web-2-1", None)).await.unwrap();
    let e = rt.start(&a).await.unwrap_err();
    assert!(e.to_string().contains("no space left"), "{e}");
    rt.start(&a).await.expect("once only");
    let w = rt.create(&spec("p-worker-2-1", None)).await.unwrap();
    rt.start(&w).await.unwrap();
    assert_eq!(
        rt.inspect(&w).await.unwrap().unwrap().state,
        ContainerState::Exited(3)
    );
    let s = rt.create(&spec("p-slow-2-1", None)).await.unwrap();
    rt.start(&s).await.unwrap();
    rt.stop(&s, Duration::ZERO).await.unwrap();
    assert_eq!(
        rt.inspect(&s).await.unwrap().unwrap().state,
        ContainerState::Exited(137)
    );
    let b = rt.create(&spec("p-web-3-1", Some(18080))).await.unwrap();
    let c = rt.create(&spec("p-web-3-2", Some(18080))).await.unwrap();
    rt.start(&b).await.unwrap();
    let e = rt.start(&c).await.unwrap_err();
    assert!(
        matches!(e, crate::ports::RuntimeError::PortInUse { port: 18080, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("already allocated"), "{e}");
}

#[tokio::test]
async fn the_fake_lb_can_refuse_a_change_and_keeps_its_members() {
    let lb = FakeLb::new();
    let m = |a: &str| Member {
        address: a.into(),
        service: "web".into(),
        replica: 1,
        host: String::new(),
    };
    lb.set_members(&[], &[m("a:1")]).await.unwrap();
    lb.fail_set_after(0);
    assert!(lb.set_members(&[m("a:1")], &[m("b:1")]).await.is_err());
    assert_eq!(lb.in_rotation(), ["a:1"]);
    lb.set_members(&[m("a:1")], &[m("b:1")]).await.unwrap();
    assert_eq!(lb.leaving(), ["a:1"]);
}

#[tokio::test(start_paused = true)]
async fn a_scripted_swarm_update_rolls_back_with_failed_tasks() {
    let s = FakeSwarm::new();
    let api: &dyn crate::ports::SwarmApi = &s;
    let spec = |env: &str| bollard::models::ServiceSpec {
        name: Some("p_web".into()),
        task_template: Some(bollard::models::TaskSpec {
            container_spec: Some(bollard::models::TaskSpecContainerSpec {
                env: Some(vec![env.to_string()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = api.create(spec("A=1")).await.unwrap();
    s.on_update("p_web", FakeUpdate::RollsBack);
    api.update(&id, 1, spec("A=2")).await.unwrap();
    let svc = api.inspect("p_web").await.unwrap().unwrap();
    assert_eq!(
        crate::drivers::swarm::update_state(&svc),
        Some("rollback_completed")
    );
    let env = |svc: &bollard::models::Service| {
        svc.spec
            .as_ref()
            .unwrap()
            .task_template
            .as_ref()
            .unwrap()
            .container_spec
            .as_ref()
            .unwrap()
            .env
            .clone()
    };
    assert_eq!(env(&svc), Some(vec!["A=1".to_string()]));
    let tasks = api.tasks(&id).await.unwrap();
    assert!(
        tasks
            .iter()
            .any(|t| t.status.as_ref().unwrap().err.is_some())
    );
}
