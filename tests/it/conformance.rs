//! The conformance suites of `gantry::testing::conformance` against the real adapters: the
//! same assertions the in-memory fakes pass in the unit tests. Docker, nginx, HAProxy and
//! the swarm engine are skipped with a message when missing (and fail the test under
//! `CI=true`), as in the other integration tests. Everything a test creates carries the test
//! run's label and is removed when it ends, pass or fail.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry::drivers::command::{CommandLb, LocalCommands};
use gantry::drivers::docker::DockerRuntime;
use gantry::drivers::fs::StateDir;
use gantry::drivers::journal::JournalFile;
use gantry::drivers::probe::HttpProber;
use gantry::drivers::sink::FileSink;
use gantry::drivers::swarm::SwarmManager;
use gantry::engine::StateSink;
use gantry::ports::{ContainerRuntime as _, LoadBalancer};
use gantry::state::State;
use gantry::state::journal::Entry;
use gantry::testing::conformance;
use support::docker::{self, DockerTestGuard, RUN_LABEL_KEY, SCOPE_LABEL_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A local HTTP server that answers every request with `answer(path)`: status, delay and
/// body. Stops with the test's runtime.
async fn serve(answer: fn(&str) -> (u16, Duration)) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let me = address.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let me = me.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, delay) = answer(&path);
                tokio::time::sleep(delay).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{me}",
                    me.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    address
}

/// The backends that answer requests through a load balancer at `front`, sorted: each
/// backend's body is its own address.
async fn answering(front: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..12 {
        let Ok(mut conn) = tokio::net::TcpStream::connect(front).await else {
            continue;
        };
        let request = format!("GET / HTTP/1.1\r\nHost: {front}\r\nConnection: close\r\n\r\n");
        if conn.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        let mut out = String::new();
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut out));
        if !matches!(read.await, Ok(Ok(_))) || !out.starts_with("HTTP/1.1 200") {
            continue;
        }
        if let Some((_, body)) = out.split_once("\r\n\r\n") {
            seen.push(body.to_string());
        }
    }
    seen.sort();
    seen.dedup();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_runtime_conforms() {
    if !docker::require_docker("docker_runtime_conforms") {
        return;
    }
    let guard = DockerTestGuard::new();
    let image = docker::build_testapp_image_once(&docker::run_tag("conformance"));
    let rt = DockerRuntime::connect("unix:///var/run/docker.sock", None)
        .await
        .expect("connect to the local engine");
    let labels: BTreeMap<String, String> = guard
        .labels()
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(labels.contains_key(RUN_LABEL_KEY) && labels.contains_key(SCOPE_LABEL_KEY));
    let prefix = format!("conf-{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let existing = tmp.path().display().to_string();
    let missing = tmp.path().join("nowhere").display().to_string();
    let f = conformance::runtime::RuntimeFixture {
        image: &image,
        port: 8080,
        labels,
        prefix: &prefix,
        free_port: docker::free_port(),
        host_ip: "127.0.0.1",
        missing_image: "gantry-no-such-image:never",
        spare_image: None,
        existing_path: &existing,
        missing_path: &missing,
        healthcheck: vec!["/testapp".into(), "--healthcheck".into()],
        sick_env: "NEVER_HEALTHY=1",
        sick_output: "health check of /healthz failed",
        within: Duration::from_secs(60),
        exec_ok: vec!["/testapp".into(), "--healthcheck".into()],
        exec_fails: vec![
            "/testapp".into(),
            "--healthcheck".into(),
            "http://127.0.0.1:1/".into(),
        ],
        exec_fail_output: "failed: Connection refused",
    };
    let started = std::time::Instant::now();
    conformance::runtime::runtime(&rt, &f).await;
    eprintln!(
        "docker_runtime_conforms: suite ran in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    drop(guard);
}

/// What only a real engine shows: every container option reaches the container
/// (`docker inspect`), a network alias resolves from another container on that network and
/// only there, `docker ps` shows the reference the user wrote while it names the recorded
/// image, a process killed behind the engine's back is restarted on the same host port, and
/// `set_restart` changes the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_containers_get_their_options() {
    use gantry::ports::{
        ContainerSpec, ContainerState, HealthStatus, Healthcheck, NetworkAttachment, Restart,
        labels as gantry_labels,
    };
    if !docker::require_docker("docker_containers_get_their_options") {
        return;
    }
    let guard = DockerTestGuard::new();
    let images = docker::build_testapp_images_once(&[
        &docker::run_tag("options-v1"),
        &docker::run_tag("options-v2"),
    ]);
    let (v1, v2) = (images[0].clone(), images[1].clone());
    let v1_id = docker::docker_ok(&["image", "inspect", "--format", "{{.Id}}", &v1]);
    let rt = DockerRuntime::connect("unix:///var/run/docker.sock", None)
        .await
        .expect("connect to the local engine");
    let labels: BTreeMap<String, String> = guard
        .labels()
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let prefix = format!("opts-{}", std::process::id());
    let (net, net2) = (format!("{prefix}-net"), format!("{prefix}-net2"));
    for n in [&net, &net2] {
        rt.ensure_network(n, &labels).await.expect("ensure_network");
    }
    let spec = |name: &str, networks: Vec<NetworkAttachment>| {
        let mut l = labels.clone();
        l.insert(gantry_labels::PORT.into(), "8080".into());
        let mut s = ContainerSpec {
            name: format!("{prefix}-{name}"),
            image: v1_id.clone(),
            command: None,
            env: vec!["VERSION=options".into()],
            labels: l,
            port: Some(8080),
            host_port: None,
            host_ip: "127.0.0.1".into(),
            memory_bytes: None,
            cpus: None,
            log_max_size: None,
            log_max_files: None,
            stop_grace: Duration::from_secs(2),
            image_ref: None,
            options: Default::default(),
        };
        s.options.networks = networks;
        s
    };
    let attach = |name: &str, alias: &str| NetworkAttachment {
        name: name.to_string(),
        aliases: vec![alias.to_string()],
    };

    // The server: every option that a FROM-scratch static binary can run with.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra_tcp = docker::free_port();
    let mut srv = spec(
        "srv",
        vec![attach(&net, "conf-srv"), attach(&net2, "conf-srv2")],
    );
    srv.image_ref = Some(v1.clone());
    let o = &mut srv.options;
    o.entrypoint = Some(vec!["/testapp".into()]);
    o.user = Some("1000:1000".into());
    o.working_dir = Some("/".into());
    o.publish = vec![
        format!("127.0.0.1:{udp}:8125/udp").parse().unwrap(),
        format!("127.0.0.1:{extra_tcp}:8081").parse().unwrap(),
    ];
    o.tmpfs = vec!["/tmp".into(), "/run:size=1m".into()];
    o.restart = Restart::OnFailure(Some(3));
    o.healthcheck = Some(Healthcheck {
        test: vec!["/testapp".into(), "--healthcheck".into()],
        interval: Duration::from_millis(500),
        timeout: Duration::from_secs(5),
        retries: 2,
        start_period: Duration::from_secs(1),
    });
    o.cap_add = vec!["SYS_PTRACE".into()];
    o.cap_drop = vec!["NET_RAW".into()];
    o.read_only = true;
    o.init = true;
    o.shm_size = Some(32 << 20);
    o.sysctls = BTreeMap::from([("net.ipv4.ip_unprivileged_port_start".into(), "0".into())]);
    o.ulimits = BTreeMap::from([(
        "nofile".into(),
        gantry::ports::Ulimit {
            soft: 1024,
            hard: 2048,
        },
    )]);
    o.extra_hosts = vec!["db.example:10.0.0.9".into()];
    o.devices = vec!["/dev/null:/dev/gantry-null:rw".into()];
    let host_dir = tempfile::tempdir().unwrap();
    let volume = format!("{prefix}-data");
    rt.ensure_volume(&volume, &labels)
        .await
        .expect("ensure_volume");
    o.mounts = vec![
        format!("{volume}:/data").parse().unwrap(),
        format!("{}:/host:ro", host_dir.path().display())
            .parse()
            .unwrap(),
    ];
    let srv_id = rt.create(&srv).await.expect("create srv");
    rt.start(&srv_id).await.expect("start srv");

    let got = |format: &str| docker::inspect(&srv_id, format);
    assert_eq!(
        got("{{.Config.Image}}"),
        v1,
        "docker ps shows what the user wrote"
    );
    assert_eq!(got("{{.Image}}"), v1_id, "and runs the recorded image");
    assert_eq!(got("{{json .Config.Entrypoint}}"), r#"["/testapp"]"#);
    assert_eq!(got("{{.Config.User}}"), "1000:1000");
    assert_eq!(got("{{.Config.WorkingDir}}"), "/");
    assert_eq!(
        got("{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","/testapp","--healthcheck"]"#
    );
    assert_eq!(
        got("{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"),
        "on-failure:3"
    );
    assert_eq!(got("{{.HostConfig.NetworkMode}}"), net);
    assert_eq!(got("{{json .HostConfig.CapAdd}}"), r#"["SYS_PTRACE"]"#);
    assert_eq!(got("{{json .HostConfig.CapDrop}}"), r#"["NET_RAW"]"#);
    assert_eq!(
        got("{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Init}} {{.HostConfig.ShmSize}}"),
        format!("true true {}", 32 << 20)
    );
    assert_eq!(got("{{index .HostConfig.Tmpfs \"/run\"}}"), "size=1m");
    assert_eq!(
        got("{{index .HostConfig.Sysctls \"net.ipv4.ip_unprivileged_port_start\"}}"),
        "0"
    );
    assert_eq!(
        got("{{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}}{{end}}"),
        "nofile=1024:2048"
    );
    assert_eq!(
        got("{{json .HostConfig.ExtraHosts}}"),
        r#"["db.example:10.0.0.9"]"#
    );
    assert_eq!(
        got(
            "{{range .HostConfig.Devices}}{{.PathOnHost}}>{{.PathInContainer}}:{{.CgroupPermissions}}{{end}}"
        ),
        "/dev/null>/dev/gantry-null:rw"
    );
    let networks: serde_json::Value =
        serde_json::from_str(&got("{{json .NetworkSettings.Networks}}")).unwrap();
    for (n, alias) in [(&net, "conf-srv"), (&net2, "conf-srv2")] {
        let aliases = &networks[n.as_str()]["Aliases"];
        assert!(
            aliases
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == alias)),
            "on {n} as {alias}: {networks}"
        );
    }

    assert_eq!(
        got("{{range .Mounts}}{{.Type}}:{{.Destination}}:{{.RW}} {{end}}")
            .split_whitespace()
            .collect::<std::collections::BTreeSet<_>>(),
        ["bind:/host:false", "volume:/data:true"].into(),
    );
    assert_eq!(
        docker::docker_ok(&["port", &srv_id, "8125/udp"]),
        format!("127.0.0.1:{udp}")
    );
    let info = rt.inspect(&srv_id).await.unwrap().unwrap();
    let host_port = info.host_port.expect("a host port");
    assert_eq!(
        docker::published_addr(&srv_id, 8080),
        format!("127.0.0.1:{host_port}"),
        "host_port is the probed port's, not the extra one's ({extra_tcp})"
    );
    assert_eq!(
        info.labels.get(gantry_labels::HOST_PORT),
        Some(&host_port.to_string())
    );
    let seen = conformance::eventually(
        &Some(HealthStatus::Healthy),
        Duration::from_secs(60),
        || {
            let rt = &rt;
            let id = srv_id.clone();
            async move {
                rt.inspect(&id)
                    .await
                    .unwrap()
                    .unwrap()
                    .health
                    .map(|h| h.status)
            }
        },
    )
    .await;
    assert_eq!(seen, Some(HealthStatus::Healthy));
    let body = reqwest_get(host_port).await;
    assert!(body.contains("\"version\":\"options\""), "{body}");

    // An alias resolves from another container on that network, and only there.
    let c1 = rt
        .create(&spec("c1", vec![attach(&net, "conf-c1")]))
        .await
        .unwrap();
    let c2 = rt
        .create(&spec("c2", vec![attach(&net2, "conf-c2")]))
        .await
        .unwrap();
    for c in [&c1, &c2] {
        rt.start(c).await.unwrap();
    }
    let reach = |from: &str, url: &str| {
        docker::docker(&["exec", from, "/testapp", "--healthcheck", url])
            .status
            .success()
    };
    assert!(reach(&c1, "http://conf-srv:8080/healthz"), "alias on net");
    assert!(reach(&c2, "http://conf-srv2:8080/healthz"), "alias on net2");
    assert!(
        !reach(&c2, "http://conf-srv:8080/healthz"),
        "net's alias from net2"
    );
    assert!(!reach(&c1, "http://conf-nosuch:8080/healthz"));

    // A process killed behind the engine's back (not `docker kill`, a manual stop): the
    // restart policy brings the container back on the same host port.
    let pid = got("{{.State.Pid}}");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let back = conformance::eventually(&(1, Some(host_port)), Duration::from_secs(30), || {
        let rt = &rt;
        let id = srv_id.clone();
        async move {
            let restarts: u32 = docker::inspect(&id, "{{.RestartCount}}")
                .parse()
                .unwrap_or(0);
            let info = rt.inspect(&id).await.unwrap().unwrap();
            let port = (info.state == ContainerState::Running)
                .then_some(info.host_port)
                .flatten();
            (restarts, port)
        }
    })
    .await;
    assert_eq!(
        back,
        (1, Some(host_port)),
        "(restarts, host port) after the kill"
    );
    // Running is not yet listening: wait for the answer.
    let answers = conformance::eventually(&true, Duration::from_secs(30), || async move {
        reqwest_get(host_port)
            .await
            .contains("\"version\":\"options\"")
    })
    .await;
    assert!(answers, "answers again on the same port {host_port}");

    rt.set_restart(&srv_id, Restart::No)
        .await
        .expect("set_restart");
    assert_eq!(got("{{.HostConfig.RestartPolicy.Name}}"), "no");

    // A reference naming another image, or nothing on the host: the ID is shown.
    for (name, reference) in [
        ("other", v2.as_str()),
        ("gone", "gantry-no-such-image:never"),
    ] {
        let mut s = spec(name, Vec::new());
        s.image_ref = Some(reference.to_string());
        let id = rt.create(&s).await.expect("create");
        assert_eq!(docker::inspect(&id, "{{.Config.Image}}"), v1_id, "{name}");
        assert_eq!(docker::inspect(&id, "{{.Image}}"), v1_id, "{name}");
    }

    // A bind source that does not exist is not created: the create fails.
    let mut unbound = spec("unbound", Vec::new());
    unbound.options.mounts = vec![
        format!("{}/nowhere:/x", host_dir.path().display())
            .parse()
            .unwrap(),
    ];
    let e = rt
        .create(&unbound)
        .await
        .expect_err("a missing bind source");
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!host_dir.path().join("nowhere").exists());

    // A host port a process (not a container) holds: PortInUse as well, naming it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let mut blocked = spec("blocked", Vec::new());
    blocked.host_port = Some(held_port);
    let id = rt.create(&blocked).await.expect("create blocked");
    match rt.start(&id).await {
        Err(gantry::ports::RuntimeError::PortInUse { port, message }) => {
            assert_eq!(port, held_port, "{message}")
        }
        other => panic!("a start on a port a process holds: {other:?}"),
    }
    drop(held);

    // host and none networking: nothing published; on the host's stack the container port is
    // the host port.
    let mut isolated = spec("none", Vec::new());
    isolated.options.network_mode = gantry::ports::NetworkMode::None;
    let id = rt.create(&isolated).await.expect("create none");
    rt.start(&id).await.expect("start none");
    assert_eq!(docker::inspect(&id, "{{.HostConfig.NetworkMode}}"), "none");
    assert_eq!(rt.inspect(&id).await.unwrap().unwrap().host_port, None);
    drop(guard);
}

/// `GET /` of the testapp on a local host port: the body, or the error in words.
async fn reqwest_get(port: u16) -> String {
    let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return format!("cannot connect to 127.0.0.1:{port}");
    };
    let request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if conn.write_all(request.as_bytes()).await.is_err() {
        return "write failed".into();
    }
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut out)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_prober_conforms() {
    let f = conformance::prober::ProbeFixture {
        ok: serve(|_| (200, Duration::ZERO)).await,
        error: serve(|_| (500, Duration::ZERO)).await,
        slow: serve(|_| (200, Duration::from_secs(2))).await,
        refused: format!("127.0.0.1:{}", docker::free_port()),
    };
    conformance::prober::prober(&HttpProber::new(), &f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_command_runner_conforms() {
    conformance::commands::command_runner(&LocalCommands).await;
}

#[test]
fn system_clock_conforms() {
    conformance::clock::clock(&gantry::drivers::clock::SystemClock);
}

/// The state directory and journal file, read back as the next command reads them.
struct FileStore {
    sink: FileSink,
}

impl StateSink for FileStore {
    fn save(&self, state: &State) -> Result<(), String> {
        self.sink.save(state)
    }

    fn journal(&self, entry: &Entry) -> Result<(), String> {
        self.sink.journal(entry)
    }
}

impl conformance::state::StateStore for FileStore {
    fn read_state(&self) -> Result<Option<State>, String> {
        self.sink.dir.read().map_err(|e| e.to_string())
    }

    fn read_journal(&self) -> Result<Vec<Entry>, String> {
        self.sink
            .dir
            .read_journal()
            .map(|j| j.map(|j| j.entries).unwrap_or_default())
            .map_err(|e| e.to_string())
    }
}

#[test]
fn state_dir_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir {
        dir: tmp.path().join(".gantry"),
    };
    std::fs::create_dir_all(&dir.dir).unwrap();
    // An empty journal: the suite writes every entry after the run's `Begin`.
    std::fs::write(dir.journal_path(), "").unwrap();
    let journal: Arc<JournalFile> = Arc::new(dir.reopen_journal().unwrap());
    let store = FileStore {
        sink: FileSink { dir, journal },
    };
    conformance::state::state_store(&store, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_lb_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().display().to_string();
    let argv = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let lb = CommandLb {
        join: argv(&format!("touch '{d}/{{address}}:{{port}}'")),
        leave: argv(&format!("rm '{d}/{{address}}:{{port}}'")),
        drain_check: None,
        timeout: Duration::from_secs(10),
    };
    let dir = tmp.path().to_path_buf();
    conformance::lb::load_balancer(&lb, "127.0.0.1:1", "127.0.0.1:2", || {
        let dir = dir.clone();
        async move {
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect();
            files.sort();
            files
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_conforms() {
    if !support::nginx::require_nginx("nginx_conforms") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let nginx = support::nginx::NginxUnderTest::start(tmp.path(), "conformance");
    let (check, reload) = {
        let with = |extra: &[&str]| {
            let mut a = vec!["nginx".to_string()];
            a.extend(nginx.args());
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        (with(&["-t", "-q"]), with(&["-s", "reload"]))
    };
    let lb = gantry::drivers::nginx::Nginx {
        name: "front".into(),
        project: "conformance".into(),
        upstream: "conformance".into(),
        upstream_file: nginx.upstream_file.clone(),
        check,
        reload,
        max_fails: None,
        fail_timeout: None,
        keepalive: None,
        backup: None,
        weights: BTreeMap::new(),
    };
    run_lb_suite(&lb, &nginx.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_conforms() {
    if !support::haproxy::require_haproxy("haproxy_conforms") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let haproxy = support::haproxy::HaproxyUnderTest::start(&tmp.path().join("haproxy"), "app");
    let lb = gantry::drivers::haproxy::Haproxy {
        socket: haproxy.socket.clone(),
        backend: "app".into(),
    };
    run_lb_suite(&lb, &haproxy.addr()).await;
}

async fn run_lb_suite(lb: &dyn LoadBalancer, front: &str) {
    let a = serve(|_| (200, Duration::ZERO)).await;
    let b = serve(|_| (200, Duration::ZERO)).await;
    let front = front.to_string();
    conformance::lb::load_balancer(lb, &a, &b, || {
        let front = front.clone();
        async move { answering(&front).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_manager_conforms() {
    let Some(swarm) = support::swarm_engine::require_swarm_engine("swarm_manager_conforms") else {
        return;
    };
    let guard = DockerTestGuard::new();
    let image = docker::build_testapp_image_once(&docker::run_tag("conformance"));
    swarm.load_images(&[&image]);
    let image_id = swarm.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    let rt = DockerRuntime::connect(&swarm.socket, None)
        .await
        .expect("connect to the swarm engine");
    let api = SwarmManager::new(rt.client().clone());
    let name = format!("conf{}_web", std::process::id());
    let labels = guard
        .labels()
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let f = conformance::swarm::SwarmFixture {
        image: &image_id,
        name: &name,
        labels,
        port: None,
        within: Duration::from_secs(120),
    };
    conformance::swarm::swarm_api(&api, &f).await;
    rt.ping().await.expect("the engine is still there");
    drop(guard);
}

/// The S3 backend against a real S3-compatible server (moto), through two stores with
/// their own local directories (two machines), and the local directory through the same
/// suite: the contract `ops` relies on, whichever backend `[state]` names.
#[test]
fn s3_state_store_conforms() {
    use gantry::drivers::s3::S3Store;
    use gantry::model::state_backend::S3Backend;
    if !crate::support::moto::require_moto("s3_state_store_conforms") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let moto = crate::support::moto::MotoServer::start(&tmp.path().join("moto"), None);
    moto.create_bucket("gantry-conformance");
    let cfg = S3Backend {
        bucket: "gantry-conformance".into(),
        key: "team/project".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(moto.endpoint()),
        stale_lock_after: gantry::model::Duration::from_secs(120),
    };
    let key = Some(("AKIDTEST".to_string(), "secret".to_string()));
    let a = S3Store::open_with(&cfg, tmp.path().join("a"), key.clone()).unwrap();
    let b = S3Store::open_with(&cfg, tmp.path().join("b"), key).unwrap();
    conformance::state::store(&a, &b, true);
}

#[test]
fn state_dir_conforms_as_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |_| StateDir {
        dir: tmp.path().join(".gantry"),
    };
    conformance::state::store(&dir(0), &dir(1), false);
}
