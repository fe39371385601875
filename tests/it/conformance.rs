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
    let f = conformance::runtime::RuntimeFixture {
        image: &image,
        port: 8080,
        labels,
        prefix: &prefix,
        free_port: docker::free_port(),
        host_ip: "127.0.0.1",
        missing_image: "gantry-no-such-image:never",
        spare_image: None,
    };
    conformance::runtime::runtime(&rt, &f).await;
    drop(guard);
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
