//! Pulls from a private registry (issue 14, item 2), against a real one: Debian's
//! `docker-registry` on a free loopback port, with htpasswd authentication and TLS from a
//! test CA. The local engine treats 127.0.0.0/8 registries as insecure, so it talks TLS to it
//! without trusting the CA (`registry_is_tls_only` checks that plain HTTP is refused).
//! The test app is pushed to it and removed locally, then `gantry apply` pulls it through
//! each credential source `docker pull` knows: the configuration's `[registry."HOST"]`, an
//! `auths` entry of the Docker config, and a `docker-credential-*` helper on PATH. A wrong
//! password ends in pre-flight exit 1 naming the registry, never the password.
//!
//! Needs docker-registry, htpasswd (apache2-utils) and openssl: skipped with a message when
//! one is missing, a failure under `CI=true`.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use support::docker::{self, DockerTestGuard};
use support::process::Background;
use support::project::{Project, code, explain, run};

const USER: &str = "gtest";
const PASSWORD: &str = "gtest-Pa55word-never-printed";

/// Whether every tool is there; otherwise skip (or fail under `CI=true`).
fn require_tools(test: &str) -> bool {
    if !docker::require_docker(test) {
        return false;
    }
    let missing: Vec<&str> = ["docker-registry", "htpasswd", "openssl"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: missing {missing:?}, and CI=true: the registry tests must run in CI");
    }
    println!(
        "SKIPPED: {test}: missing {missing:?} (apt-get install docker-registry apache2-utils openssl)"
    );
    false
}

fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A running `docker-registry`, stopped (and its storage removed) on drop.
struct Registry {
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`: the registry host of image references.
    host: String,
    process: Option<Background>,
}

impl Registry {
    fn start() -> Registry {
        Registry::start_with(true)
    }

    /// With `tls` false it speaks plain HTTP (for the 503 proxy, which reads requests).
    fn start_with(tls: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A test CA, and a server certificate for 127.0.0.1 signed by it.
        sh(Command::new("openssl")
            .current_dir(d)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=gantry-test-ca",
            ]));
        sh(Command::new("openssl")
            .current_dir(d)
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
            ])
            .args(["-out", "server.csr", "-subj", "/CN=127.0.0.1"]));
        std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        sh(Command::new("openssl")
            .current_dir(d)
            .args([
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
            ])
            .args(["-CAcreateserial", "-out", "server.crt", "-days", "1"])
            .args(["-extfile", "san.ext"]));
        let htpasswd = sh(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
        std::fs::write(d.join("htpasswd"), htpasswd).unwrap();
        let port = docker::free_port();
        let host = format!("127.0.0.1:{port}");
        let tls = if tls {
            format!(
                "  tls:\n    certificate: {dir}/server.crt\n    key: {dir}/server.key\n",
                dir = d.display()
            )
        } else {
            String::new()
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {host}\n{tls}auth:\n  htpasswd:\n    realm: gantry-test\n    path: {dir}/htpasswd\n",
            data = d.join("data").display(),
            dir = d.display(),
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.args(["serve"])
            .arg(d.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("registry.log")).unwrap());
        let process = Background::spawn(cmd, "docker-registry");
        let start = Instant::now();
        while TcpStream::connect(&host).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry did not listen on {host}: {}",
                std::fs::read_to_string(d.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            dir,
            host,
            process: Some(process),
        }
    }

    /// A Docker config directory of its own (`DOCKER_CONFIG`), empty.
    fn docker_config(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Pushes `local` as `REGISTRY/gantry-testapp:TAG` (after a `docker login` with a
    /// throw-away config), then removes that reference here; returns it.
    fn push(&self, local: &str, tag: &str) -> String {
        let config = self.docker_config("pusher");
        let remote = format!("{}/gantry-testapp:{tag}", self.host);
        let docker = || {
            let mut c = Command::new("docker");
            c.env("DOCKER_CONFIG", &config);
            c
        };
        let mut login = docker()
            .args(["login", &self.host, "-u", USER, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        login
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        let o = login.wait_with_output().unwrap();
        assert!(o.status.success(), "docker login: {o:?}");
        sh(docker().args(["tag", local, &remote]));
        sh(docker().args(["push", &remote]));
        sh(docker().args(["rmi", &remote]));
        assert!(!docker::image_exists(&remote));
        remote
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            p.kill();
        }
    }
}

/// The test app's service, from `image`, with `extra` TOML after it.
fn project(guard: &DockerTestGuard, image: &str, extra: &str) -> Project {
    let p = Project::new("reg", guard);
    p.write_toml(&format!(
        r#"[project]
name = "{name}"

[service.web]
image = "{image}"
replicas = 2
port = 8080
env = {{ VERSION = "registry" }}
labels = {labels}
stop_grace_period = "5s"
health = {{ http = "/healthz", interval = "200ms", timeout = "1s", retries = 5 }}
{extra}
"#,
        name = p.name,
        labels = p.labels
    ));
    p
}

/// `gantry apply --yes` with `DOCKER_CONFIG`, extra variables and a PATH with `bin` first.
fn apply(
    p: &Project,
    docker_config: &Path,
    vars: &[(&str, &str)],
    bin: Option<&Path>,
) -> std::process::Output {
    let mut c = p.command(&["apply", "--yes"]);
    c.env("DOCKER_CONFIG", docker_config);
    for (k, v) in vars {
        c.env(k, v);
    }
    if let Some(bin) = bin {
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("PATH", format!("{}:{path}", bin.display()));
    }
    run(c)
}

fn running(p: &Project) -> usize {
    p.containers(&["status=running"], "{{.Names}}").len()
}

/// Removes the pulled references at the end, whatever happens.
struct Pulled(Vec<String>);

impl Drop for Pulled {
    fn drop(&mut self) {
        for r in &self.0 {
            // The digest references too (`repo@sha256:...`), which outlive the tag.
            let o = docker::docker(&[
                "image",
                "inspect",
                "--format",
                "{{join .RepoDigests \" \"}}",
                r,
            ]);
            let digests = String::from_utf8_lossy(&o.stdout).to_string();
            let _ = docker::docker(&["rmi", r]);
            for d in digests.split_whitespace() {
                let _ = docker::docker(&["rmi", d]);
            }
        }
    }
}

#[test]
fn pulls_through_each_credential_source_and_refuses_a_wrong_password() {
    let test = "registry::pulls_through_each_credential_source";
    if !require_tools(test) {
        return;
    }
    let guard = DockerTestGuard::new();
    let local = docker::build_testapp_image_once(&docker::run_tag("reg"));
    let registry = Registry::start();
    let tag = |what: &str| docker::run_tag(what);
    let images: Vec<String> = ["cfg", "auths", "helper", "wrong"]
        .iter()
        .map(|w| registry.push(&local, &tag(w)))
        .collect();
    let _pulled = Pulled(images.clone());
    let empty = registry.docker_config("empty");

    // Without credentials, the registry refuses: exit 1, naming it.
    let p = project(&guard, &images[0], "");
    let o = apply(&p, &empty, &[], None);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains(&format!(
            "pull from registry `{}` without credentials",
            registry.host
        )),
        "{err}"
    );

    // 1. The configuration's section, the password from the variable it names.
    p.edit_toml(|t| {
        format!(
            "{t}\n[registry.\"{}\"]\nusername = \"{USER}\"\npassword_env = \"GTEST_REGISTRY_PASSWORD\"\n",
            registry.host
        )
    });
    let o = apply(&p, &empty, &[("GTEST_REGISTRY_PASSWORD", PASSWORD)], None);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(running(&p), 2);
    assert!(docker::image_exists(&images[0]));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!all.contains(PASSWORD), "{all}");
    let state = std::fs::read_to_string(p.join(".gantry/state.json")).unwrap();
    assert!(!state.contains(PASSWORD));
    // The repo digest is recorded beside the image ID.
    let json = p.state_json();
    let web = &json["history"].as_array().unwrap().last().unwrap()["services"]["web"];
    let digest = web["image_digest"].as_str().unwrap_or_default();
    let repo = images[0].rsplit_once(':').unwrap().0;
    assert!(digest.starts_with(&format!("{repo}@sha256:")), "{web}");
    assert_eq!(
        web["image_id"].as_str(),
        Some(docker::inspect(&images[0], "{{.Id}}").trim())
    );
    for entry in std::fs::read_dir(p.join(".gantry")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let text = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains(PASSWORD),
                "{} holds the password",
                path.display()
            );
        }
    }

    // 2. An `auths` entry of the Docker config (base64 `user:password`, as `docker login`
    //    writes it).
    let auths = registry.docker_config("auths");
    let encoded = sh(Command::new("sh").args([
        "-c",
        &format!("printf '%s' '{USER}:{PASSWORD}' | base64 -w0"),
    ]));
    std::fs::write(
        auths.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{encoded}"}}}}}}"#,
            registry.host
        ),
    )
    .unwrap();
    let p = project(&guard, &images[1], "");
    let o = apply(&p, &auths, &[], None);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(running(&p), 2);

    // 3. A credential helper on PATH, named by `credHelpers`; it must be asked for this
    //    registry's server address.
    let helper = registry.docker_config("helper");
    let bin = registry.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = registry.dir.path().join("helper-asked");
    let script = bin.join("docker-credential-gtest");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\nprintf '%s' \"$server\" > {asked}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            asked = asked.display()
        ),
    )
    .unwrap();
    sh(Command::new("chmod").arg("+x").arg(&script));
    std::fs::write(
        helper.join("config.json"),
        format!(
            r#"{{"auths": {{}}, "credHelpers": {{"{}": "gtest"}}}}"#,
            registry.host
        ),
    )
    .unwrap();
    let p = project(&guard, &images[2], "");
    let o = apply(&p, &helper, &[], Some(&bin));
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(running(&p), 2);
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), registry.host);

    // A wrong password: pre-flight, exit 1, the registry named, the password not, nothing
    // changed.
    let wrong = "wrong-Pa55word-not-shown";
    let p = project(
        &guard,
        &images[3],
        &format!(
            "[registry.\"{}\"]\nusername = \"{USER}\"\npassword_env = \"GTEST_REGISTRY_PASSWORD\"\n",
            registry.host
        ),
    );
    let o = apply(&p, &empty, &[("GTEST_REGISTRY_PASSWORD", wrong)], None);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("pre-flight"), "{err}");
    assert!(
        err.contains(&format!("registry `{}`", registry.host))
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(!err.contains(wrong) && !String::from_utf8_lossy(&o.stdout).contains(wrong));
    assert!(p.containers(&[], "{{.Names}}").is_empty());
    assert!(!p.join(".gantry/state.json").exists());

    // An unset variable: pre-flight, exit 1, naming the registry and the variable.
    let o = apply(&p, &empty, &[], None);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains(&format!("registry `{}`", registry.host))
            && err.contains("$GTEST_REGISTRY_PASSWORD, which is not set"),
        "{err}"
    );
}

/// The local engine talks TLS to the loopback registry without trusting the test CA (it
/// treats 127.0.0.0/8 as insecure); the registry itself refuses plain HTTP.
#[test]
fn registry_is_tls_only() {
    if !require_tools("registry::registry_is_tls_only") {
        return;
    }
    let registry = Registry::start();
    let mut s = TcpStream::connect(&registry.host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.contains("400") || answer.is_empty(),
        "plain HTTP should be refused by a TLS listener: {answer}"
    );
}

/// A proxy in front of a plain-HTTP registry that answers `503` to its first `fail` requests
/// and then passes everything through. A TLS hello (the engine tries HTTPS first) is closed,
/// so that the engine falls back to HTTP. Stops on drop.
struct FlakyProxy {
    host: String,
    answered_503: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FlakyProxy {
    fn start(upstream: &str, fail: usize) -> FlakyProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let answered_503 = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt, upstream) = (answered_503.clone(), stop.clone(), upstream.to_string());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                let conn = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let (count, upstream) = (count.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_nonblocking(false);
                    let mut first = [0u8; 1];
                    if conn.peek(&mut first).is_err() || first[0] == 0x16 {
                        return;
                    }
                    if count.load(Ordering::SeqCst) < fail {
                        count.fetch_add(1, Ordering::SeqCst);
                        let mut conn = conn;
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match std::io::Read::read(&mut conn, &mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = conn.write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return;
                    }
                    let Ok(up) = TcpStream::connect(&upstream) else {
                        return;
                    };
                    let (mut a, mut b) = (conn.try_clone().unwrap(), up.try_clone().unwrap());
                    let (mut c, mut d) = (conn, up);
                    let t = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a, &mut b);
                        let _ = b.shutdown(std::net::Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut d, &mut c);
                    let _ = c.shutdown(std::net::Shutdown::Write);
                    let _ = t.join();
                });
            }
        });
        FlakyProxy {
            host,
            answered_503,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Registries fail with 5xx (seed 004): a registry that answers 503 to the first requests
/// does not stop the apply, which retries the pull with the same credentials.
#[test]
fn a_registry_answering_503_at_first_does_not_stop_the_apply() {
    if !require_tools("registry::a_registry_answering_503_at_first") {
        return;
    }
    let guard = DockerTestGuard::new();
    let local = docker::build_testapp_image_once(&docker::run_tag("reg"));
    let registry = Registry::start_with(false);
    let pushed = registry.push(&local, &docker::run_tag("flaky"));
    let proxy = FlakyProxy::start(&registry.host, 2);
    let image = pushed.replacen(&registry.host, &proxy.host, 1);
    let _pulled = Pulled(vec![pushed.clone(), image.clone()]);
    let p = project(
        &guard,
        &image,
        &format!(
            "[registry.\"{}\"]\nusername = \"{USER}\"\npassword_env = \"GTEST_REGISTRY_PASSWORD\"\n",
            proxy.host
        ),
    );
    let empty = registry.docker_config("empty");
    let o = apply(&p, &empty, &[("GTEST_REGISTRY_PASSWORD", PASSWORD)], None);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(running(&p), 2);
    assert_eq!(
        proxy.answered_503.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the proxy answered 503 twice before the pull went through"
    );
}

/// The Docker driver against the real registry: a pull reports the image's repo digest, and
/// a pull of `repo:tag@digest` fetches that digest and tags it `repo:tag` on the host (what
/// the other hosts of a service do after the first one resolved the tag).
#[test]
fn a_pull_by_digest_tags_the_image_and_reports_its_digest() {
    use gantry::ports::{ContainerRuntime as _, RegistryAuth};
    if !require_tools("registry::a_pull_by_digest_tags_the_image") {
        return;
    }
    let _guard = DockerTestGuard::new();
    let local = docker::build_testapp_image_once(&docker::run_tag("reg"));
    let registry = Registry::start();
    let image = registry.push(&local, &docker::run_tag("digest"));
    let _pulled = Pulled(vec![image.clone()]);
    let auth = RegistryAuth {
        server: registry.host.clone(),
        username: USER.into(),
        password: PASSWORD.into(),
        identity_token: None,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine =
            gantry::drivers::docker::DockerRuntime::connect("unix:///var/run/docker.sock", None)
                .await
                .unwrap();
        let first = engine.pull(&image, Some(&auth)).await.unwrap();
        let digest = first.repo_digest.clone().expect("a repo digest");
        let repo = image.rsplit_once(':').unwrap().0;
        assert!(digest.starts_with(&format!("{repo}@sha256:")), "{digest}");
        docker::docker_ok(&["rmi", &image]);
        let by_digest = format!("{image}@{}", digest.split_once('@').unwrap().1);
        let again = engine.pull(&by_digest, Some(&auth)).await.unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(again.repo_digest, Some(digest));
        assert_eq!(engine.image_id(&image).await.unwrap(), Some(first.id));
    });
}

/// Two hosts, each its own engine (the second one a `dockerd` of its own, reached over TLS,
/// in this machine's network namespace, so it reaches the loopback registry too): the first
/// pulls the tag, the second the digest the first resolved; both run the same image.
#[test]
fn two_hosts_run_the_same_digest() {
    use support::second_engine;
    if !require_tools("registry::two_hosts_run_the_same_digest") {
        return;
    }
    let Some(b) = second_engine::require_second_engine("registry::two_hosts_run_the_same_digest")
    else {
        return;
    };
    let guard = DockerTestGuard::new();
    let local = docker::build_testapp_image_once(&docker::run_tag("reg"));
    let registry = Registry::start();
    let image = registry.push(&local, &docker::run_tag("two"));
    let _pulled = Pulled(vec![image.clone()]);
    let p = Project::new("reg", &guard);
    p.write_toml(&format!(
        r#"[project]
name = "{name}"

[[host]]
name = "a"
docker = "unix:///var/run/docker.sock"
address = "127.0.0.1"

{host_b}
[service.web]
image = "{image}"
hosts = ["a", "b"]
replicas = 1
port = 8080
env = {{ VERSION = "registry" }}
labels = {labels}
stop_grace_period = "5s"
health = {{ http = "/healthz", interval = "200ms", timeout = "1s", retries = 5 }}

[registry."{host}"]
username = "{USER}"
password_env = "GTEST_REGISTRY_PASSWORD"
"#,
        name = p.name,
        labels = p.labels,
        host_b = b.host_toml("b"),
        host = registry.host,
    ));
    let empty = registry.docker_config("empty");
    let o = apply(&p, &empty, &[("GTEST_REGISTRY_PASSWORD", PASSWORD)], None);
    let filter = format!("label=dev.gantry.project={}", p.name);
    let on_b = |args: &[&str]| {
        String::from_utf8_lossy(&b.docker(args).stdout)
            .trim()
            .to_string()
    };
    let cleanup_b = || {
        let ids = on_b(&["ps", "-aq", "--filter", &filter]);
        for id in ids.split_whitespace() {
            let _ = b.docker(&["rm", "-f", "-v", id]);
        }
        let _ = b.docker(&["rmi", &image]);
    };
    if code(&o) != 0 {
        cleanup_b();
        panic!("{}", explain(&o));
    }
    let id_a = docker::inspect(&image, "{{.Id}}");
    let id_b = on_b(&["image", "inspect", "--format", "{{.Id}}", &image]);
    let digests_a = docker::inspect(&image, "{{json .RepoDigests}}");
    let digests_b = on_b(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &image,
    ]);
    let running_b = on_b(&[
        "ps",
        "-q",
        "--filter",
        &filter,
        "--filter",
        "status=running",
    ]);
    cleanup_b();
    assert_eq!(id_a.trim(), id_b, "both hosts hold the same image");
    // The main engine may hold digests of other tests' registries (the same local image).
    let ours = |json: &str| -> Vec<String> {
        serde_json::from_str::<Vec<String>>(json.trim())
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d.starts_with(&format!("{}/", registry.host)))
            .collect()
    };
    assert_eq!(
        ours(&digests_a),
        ours(&digests_b),
        "and the same repo digest"
    );
    assert_eq!(ours(&digests_b).len(), 1, "{digests_b}");
    assert_eq!(running(&p), 1);
    assert_eq!(running_b.lines().count(), 1);
}

/// A Swarm service of a private image (issue 14 item 2: "Swarm services receive the
/// credentials as `--with-registry-auth` passes them"), end to end on the test swarm (its
/// own dockerd, which has never held the image; it reaches the loopback registry with TLS
/// without trusting the test CA, as the main engine does: dockerd treats 127.0.0.0/8 as
/// insecure by default). Credentials from `[registry."HOST"]`. Pre-flight pulls on the
/// manager to pin the digest, so the first task finds the image there; to prove the
/// credentials reached Swarm itself, the test then removes the task's container and the
/// image from the node: the task Swarm starts in its place pulls again, with the
/// credentials stored with the service, and runs.
#[test]
fn a_swarm_service_of_a_private_image_runs_with_the_registry_credentials() {
    use support::swarm_engine;
    let test = "registry::a_swarm_service_of_a_private_image";
    if !require_tools(test) {
        return;
    }
    let Some(swarm) = swarm_engine::require_swarm_engine(test) else {
        return;
    };
    let guard = DockerTestGuard::new();
    let local = docker::build_testapp_image_once(&docker::run_tag("reg"));
    let registry = Registry::start();
    let image = registry.push(&local, &docker::run_tag("swarm"));
    let on_swarm = |args: &[&str]| swarm.docker(args);
    assert!(
        !on_swarm(&["image", "inspect", &image]).status.success(),
        "the swarm engine must not hold {image} before the apply"
    );
    let p = Project::new("regsw", &guard);
    let service = format!("{}_web", p.name);
    p.write_toml(&format!(
        r#"[project]
name = "{name}"

[[host]]
name = "manager"
docker = "{socket}"

[service.web]
runtime = "swarm"
image = "{image}"
replicas = 1
env = {{ VERSION = "private" }}
stop_grace_period = "2s"
health = {{ command = ["/testapp", "--healthcheck", "/healthz"], interval = "1s", timeout = "2s", retries = 2 }}

[registry."{host}"]
username = "{USER}"
password_env = "GTEST_REGISTRY_PASSWORD"
"#,
        name = p.name,
        socket = swarm.socket,
        host = registry.host,
    ));
    let empty = registry.docker_config("empty");
    let o = apply(&p, &empty, &[("GTEST_REGISTRY_PASSWORD", PASSWORD)], None);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!all.contains(PASSWORD), "{all}");
    for entry in std::fs::read_dir(p.join(".gantry")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert!(
                !String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(PASSWORD),
                "{} holds the password",
                path.display()
            );
        }
    }
    let pinned = swarm.docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        &service,
    ]);
    assert!(
        pinned
            .trim()
            .starts_with(&format!("{}@sha256:", image.rsplit_once(':').unwrap().0))
            || pinned.trim().starts_with(&format!("{image}@sha256:")),
        "the service runs the pinned digest: {pinned}"
    );
    let running = || {
        swarm
            .docker_ok(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name={service}"),
                "--filter",
                "status=running",
            ])
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let first = running();
    assert_eq!(first.len(), 1, "one task runs");

    // The node loses the image and the task: the replacement task must pull again, with
    // what gantry gave the manager.
    let mut rm = vec!["rm", "-f"];
    rm.extend(first.iter().map(String::as_str));
    swarm.docker_ok(&rm);
    let ids = swarm.docker_ok(&[
        "image",
        "ls",
        "-q",
        "--no-trunc",
        image.rsplit_once(':').unwrap().0,
    ]);
    for id in ids.split_whitespace() {
        let _ = on_swarm(&["rmi", "-f", id]);
    }
    assert!(!on_swarm(&["image", "inspect", &image]).status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let replaced = loop {
        let now = running();
        if now.len() == 1 && now != first {
            break now;
        }
        if Instant::now() > deadline {
            panic!(
                "no replacement task runs: {}",
                swarm.docker_ok(&["service", "ps", "--no-trunc", &service])
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let held = swarm.docker_ok(&["image", "ls", "-q", image.rsplit_once(':').unwrap().0]);
    assert!(
        !held.trim().is_empty(),
        "the node pulled the image again for {replaced:?}"
    );
}

/// Per-layer pull progress on a terminal (issue 14 item 2: "per-layer progress on a
/// terminal"): `gantry apply` runs under a pseudo-terminal (`script` from util-linux), its
/// stderr a terminal, and pulls from the test registry: a line per layer of the pull, with
/// the host, ends with the layer's last status. The same apply with stderr a pipe shows
/// none of them. The password is in neither.
#[test]
fn pull_progress_shows_a_line_per_layer_on_a_terminal_only() {
    let test = "registry::pull_progress_shows_a_line_per_layer";
    if !require_tools(test) {
        return;
    }
    if !Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: `script` (util-linux) is missing, and CI=true"
        );
        println!("SKIPPED: {test}: `script` (util-linux) is missing");
        return;
    }
    let guard = DockerTestGuard::new();
    let local = docker::build_testapp_image_once(&docker::run_tag("reg"));
    let registry = Registry::start();
    // The test app with one more layer of its own (random bytes), so that the engine has
    // a layer to download: it has every layer of the test app itself already.
    let with_layer = |name: &str| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("noise");
        let mut bytes = vec![0u8; 512 * 1024];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .unwrap();
        std::fs::write(&file, bytes).unwrap();
        let container =
            docker::docker_ok(&["create", "--label", &docker::run_label(), &local, "true"]);
        let copied = docker::docker(&[
            "cp",
            &file.display().to_string(),
            &format!("{container}:/noise"),
        ]);
        let committed = format!("gantry-testapp:{}", docker::run_tag(name));
        let o = docker::docker(&["commit", &container, &committed]);
        let _ = docker::docker(&["rm", "-f", &container]);
        assert!(
            copied.status.success() && o.status.success(),
            "{copied:?} {o:?}"
        );
        let pushed = registry.push(&committed, &docker::run_tag(name));
        docker::docker_ok(&["rmi", &committed]);
        pushed
    };
    let tty_image = with_layer("tty");
    let pipe_image = with_layer("pipe");
    let _pulled = Pulled(vec![tty_image.clone(), pipe_image.clone()]);
    let section = format!(
        "[registry.\"{}\"]\nusername = \"{USER}\"\npassword_env = \"GTEST_REGISTRY_PASSWORD\"\n",
        registry.host
    );
    let empty = registry.docker_config("empty");

    let p = project(&guard, &tty_image, &section);
    let gantry = crate::support::project::gantry_command(p.path(), &[]);
    let line = format!(
        "'{}' apply --yes 2>&1",
        gantry.get_program().to_string_lossy()
    );
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"])
        .current_dir(p.path())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", &empty)
        .env("GTEST_REGISTRY_PASSWORD", PASSWORD)
        .stdin(Stdio::null());
    let o = run(c);
    let shown = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(code(&o), 0, "{shown}");
    assert_eq!(running(&p), 2, "{shown}");
    // The terminal's output: lines redrawn in place; the last state of each is there.
    // `pull on HOST: LAYER STATUS ... (IMAGE)`, cut at the terminal's width (80 here).
    let layers: Vec<&str> = shown
        .split(['\r', '\n'])
        .filter_map(|l| l.split_once("pull on local: ").map(|(_, rest)| rest))
        .filter(|rest| rest.contains("Pull complete"))
        .collect();
    assert!(!layers.is_empty(), "no per-layer line in: {shown:?}");
    for rest in &layers {
        let layer = rest.split_whitespace().next().unwrap();
        assert!(
            layer.len() == 12 && layer.chars().all(|c| c.is_ascii_hexdigit()),
            "{rest}"
        );
    }
    assert!(!shown.contains(PASSWORD));

    // Not a terminal: nothing of it.
    let p = project(&guard, &pipe_image, &section);
    let o = apply(&p, &empty, &[("GTEST_REGISTRY_PASSWORD", PASSWORD)], None);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !all.contains(" on host ") || !all.contains("pull "),
        "{all}"
    );
    assert!(
        !all.contains(&format!("pull {pipe_image} on host")),
        "{all}"
    );
    assert!(!all.contains(PASSWORD));
}
