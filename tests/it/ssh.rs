//! `ssh://` Docker hosts (issue 14, item 1) against a real sshd on loopback
//! (`support::sshd`) in front of this machine's own Docker engine. gantry runs the system
//! `ssh`; the tests give it a client config (aliases, keys, known_hosts) through an `ssh` on
//! PATH, as a user's `~/.ssh/config` would.
//!
//! What is pinned down: a project is applied, rolled and rolled back on an SSH host exactly
//! as on the unix socket (`status`, `exec` and `logs` too), and gantry leaves no ssh process
//! behind; an unknown host key, a
//! changed host key, a key the server does not accept, and a far side without docker each end
//! in pre-flight (exit 1) naming the host and the cause, with nothing changed.

use std::process::Output;

use crate::support::docker::{self, DockerTestGuard};
use crate::support::project::{self, Project, code, explain, stderr};
use crate::support::sshd::{Sshd, require_sshd};

fn images() -> (String, String) {
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    (tags[0].clone(), tags[1].clone())
}

/// Three replicas of the test app on host `far`, reached at `endpoint`.
fn write(p: &Project, endpoint: &str, tag: &str) {
    p.write_toml(&format!(
        r#"[project]
name = "{name}"

[[host]]
name = "far"
docker = "{endpoint}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 3
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "5s"
health = {{ http = "/healthz", interval = "200ms", timeout = "1s", retries = 5 }}
rollout = {{ batch = 1, order = "start-first", soak = "300ms" }}
"#,
        name = p.name,
        labels = p.labels
    ));
}

/// `gantry ARGS` in `p` with `sshd`'s client side.
fn gantry(p: &Project, sshd: &Sshd, args: &[&str]) -> Output {
    let mut c = p.command(args);
    c.env("PATH", sshd.path_env());
    project::run(c)
}

fn running_versions(p: &Project) -> Vec<String> {
    p.containers(&["status=running"], "{{.Names}}")
        .iter()
        .map(|c| {
            let r = crate::support::http::get(&docker::published_addr(c, 8080), "/version")
                .unwrap_or_else(|e| panic!("{c}: {e}"));
            r.text().trim().to_string()
        })
        .collect()
}

#[test]
fn a_project_is_applied_rolled_and_rolled_back_on_an_ssh_host() {
    if !docker::require_docker("ssh_host_apply") || !require_sshd("ssh_host_apply") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let sshd = Sshd::start(&[]);
    let p = Project::new("ssh", &guard);
    // The alias of the client config: user, port, key and known_hosts come from there.
    let endpoint = format!("ssh://{}", sshd.alias);
    write(&p, &endpoint, &v1);

    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}\nsshd: {}", explain(&o), sshd.log());
    assert_eq!(running_versions(&p), vec![v1.clone(); 3]);
    let o = gantry(&p, &sshd, &["plan", "--refresh", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));

    // Rolled, replica by replica, over SSH; `ssh://user@host:port` written out this time.
    let endpoint = format!("ssh://root@127.0.0.1:{}", sshd.port);
    write(&p, &endpoint, &v2);
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(running_versions(&p), vec![v2.clone(); 3]);

    let o = gantry(&p, &sshd, &["rollback", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stderr(&o).contains("(kept from revision 1)"),
        "{}",
        explain(&o)
    );
    assert_eq!(running_versions(&p), vec![v1.clone(); 3]);

    let o = gantry(&p, &sshd, &["status"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    // exec and logs attach to the engine through the same forwarded socket.
    let o = gantry(
        &p,
        &sshd,
        &[
            "exec",
            "web",
            "--",
            "/testapp",
            "--healthcheck",
            "http://127.0.0.1:8080/healthz",
        ],
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let o = gantry(&p, &sshd, &["logs", "web", "--tail", "5"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let leftover = sshd.leftover_ssh();
    assert!(leftover.is_empty(), "ssh left running: {leftover:?}");
}

/// Runs `apply` against `endpoint` and checks that it stopped in pre-flight, naming host
/// `far` and saying `cause`, with no container and no state.
fn refused_in_pre_flight(p: &Project, sshd: &Sshd, endpoint: &str, cause: &str) {
    let (v1, _) = images();
    write(p, endpoint, &v1);
    let o = gantry(p, sshd, &["apply", "--yes"]);
    assert_eq!(code(&o), 1, "{endpoint}: {}", explain(&o));
    let err = stderr(&o);
    assert!(
        err.contains("pre-flight: host `far`: cannot reach the Docker engine at ")
            && err.contains(cause)
            && err.contains("nothing was changed"),
        "{endpoint}: {}",
        explain(&o)
    );
    assert!(
        p.containers(&[], "{{.Names}}").is_empty(),
        "{endpoint}: containers were created"
    );
    assert!(!p.join(".gantry/state.json").exists(), "{endpoint}: state");
    let leftover = sshd.leftover_ssh();
    assert!(leftover.is_empty(), "ssh left running: {leftover:?}");
}

#[test]
fn unknown_or_changed_host_keys_and_a_refused_key_stop_in_pre_flight() {
    if !docker::require_docker("ssh_refusals") || !require_sshd("ssh_refusals") {
        return;
    }
    let guard = DockerTestGuard::new();
    let sshd = Sshd::start(&[]);
    let p = Project::new("sshno", &guard);
    let a = &sshd.alias;
    refused_in_pre_flight(
        &p,
        &sshd,
        &format!("ssh://{a}-unknown"),
        "ssh does not know the host key of",
    );
    refused_in_pre_flight(
        &p,
        &sshd,
        &format!("ssh://{a}-changed"),
        "has CHANGED since it was recorded in known_hosts",
    );
    refused_in_pre_flight(
        &p,
        &sshd,
        &format!("ssh://{a}-stranger"),
        "ssh authentication to",
    );
    // Nothing listens: the machine is named, with ssh's words.
    let closed = docker::free_port();
    refused_in_pre_flight(
        &p,
        &sshd,
        &format!("ssh://root@127.0.0.1:{closed}"),
        "Connection refused",
    );
}

#[test]
fn a_far_side_without_docker_stops_in_pre_flight() {
    if !docker::require_docker("ssh_no_docker") || !require_sshd("ssh_no_docker") {
        return;
    }
    let guard = DockerTestGuard::new();
    // The remote user's PATH has no docker in it: `docker` is "not found" there.
    let sshd = Sshd::start(&["SetEnv PATH=/nonexistent"]);
    let p = Project::new("sshnd", &guard);
    refused_in_pre_flight(
        &p,
        &sshd,
        &format!("ssh://{}", sshd.alias),
        &format!(
            "no Docker on the far side of {}: the `docker` command is not there",
            sshd.alias
        ),
    );
}

/// An nginx managed over SSH (`[lb.front] at = ["ssh://..."]`, issue 14 item 3): the
/// upstream file is written, and `nginx -t` and the reload run, on the far side (this
/// machine behind the sshd); a rollout and a roll back under load lose no request.
#[test]
fn a_rollout_behind_an_nginx_managed_over_ssh_loses_no_request() {
    use crate::support::nginx::{NginxUnderTest, require_nginx};
    use std::time::Duration;
    if !docker::require_docker("nginx_over_ssh")
        || !require_nginx("nginx_over_ssh")
        || !require_sshd("nginx_over_ssh")
    {
        return;
    }
    let _alone = crate::support::serial::alone();
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let sshd = Sshd::start(&[]);
    let p = Project::new("sshlb", &guard);
    let nginx = NginxUnderTest::start(&p.join("nginx"), "app");
    let (check, reload) = nginx.toml_commands();
    let write = |tag: &str| {
        p.write_toml(&format!(
            r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 4
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "10s"
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 10 }}
rollout = {{ batch = 1, order = "start-first", drain = "1s" }}

[lb.front]
kind = "nginx"
at = ["ssh://{alias}"]
upstream = "app"
upstream_file = "{file}"
check = {check}
reload = {reload}
"#,
            name = p.name,
            labels = p.labels,
            alias = sshd.alias,
            file = nginx.upstream_file.display(),
        ))
    };
    let version = || {
        crate::support::http::wait_for_status(
            &nginx.addr(),
            "/version",
            200,
            Duration::from_secs(5),
        )
        .map(|r| r.text().trim().to_string())
        .unwrap_or_else(|e| e)
    };
    write(&v1);
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let upstream = std::fs::read_to_string(&nginx.upstream_file).unwrap();
    assert!(
        upstream.starts_with("# Managed by gantry")
            && upstream.matches("server 127.0.0.1:").count() == 4,
        "{upstream}"
    );
    assert_eq!(version(), v1);
    assert!(
        !nginx
            .upstream_file
            .with_file_name("upstream.conf.gantry-tmp")
            .exists(),
        "the temporary file was renamed"
    );

    let tags = [v1.clone(), v2.clone()];
    crate::support::load::rounds_lose_no_request(
        "nginx over ssh",
        &nginx.addr(),
        &tags,
        crate::support::load::KeepAlive::Reported,
        Duration::from_millis(500),
        |rollout, tag| {
            write(tag);
            if rollout {
                gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"])
            } else {
                gantry(&p, &sshd, &["rollback", "--yes", "--progress", "plain"])
            }
        },
        version,
        |_| {},
    );

    // A machine that cannot be reached stops the next apply in pre-flight.
    let unreachable = format!("ssh://{}-unknown", sshd.alias);
    p.edit_toml(|t| {
        t.replace(
            &format!("ssh://{}\"", sshd.alias),
            &format!("{unreachable}\""),
        )
    });
    write_version_bump(&p, &v2);
    let o = gantry(&p, &sshd, &["apply", "--yes"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        stderr(&o).contains("pre-flight: lb.front: ssh does not know the host key of"),
        "{}",
        explain(&o)
    );
    let leftover = sshd.leftover_ssh();
    assert!(leftover.is_empty(), "ssh left running: {leftover:?}");
}

/// A change of the service (its image) so that the next apply has work to do.
fn write_version_bump(p: &Project, tag: &str) {
    p.edit_toml(|t| {
        let image = t
            .lines()
            .find(|l| l.starts_with("image = "))
            .unwrap()
            .to_string();
        t.replace(&image, &format!("image = \"gantry-testapp:{tag}\""))
    });
}

/// A failing `check` on a machine of `at` (here: the same machine twice, as two entries):
/// no machine is reloaded, every file is the previous one again, and the rollout restores
/// itself (exit 3), nginx serving v1 throughout.
#[test]
fn a_failing_check_over_ssh_restores_the_file_on_every_machine() {
    use crate::support::nginx::{NginxUnderTest, require_nginx};
    if !docker::require_docker("nginx_check_over_ssh")
        || !require_nginx("nginx_check_over_ssh")
        || !require_sshd("nginx_check_over_ssh")
    {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let sshd = Sshd::start(&[]);
    let p = Project::new("sshck", &guard);
    let nginx = NginxUnderTest::start(&p.join("nginx"), "app");
    let (check, reload) = nginx.toml_commands();
    let write = |tag: &str, check: &str| {
        p.write_toml(&format!(
            r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 2
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "5s"
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 10 }}
rollout = {{ batch = 1, order = "start-first", drain = "200ms" }}

[lb.front]
kind = "nginx"
at = ["ssh://{alias}", "ssh://root@127.0.0.1:{port}"]
upstream = "app"
upstream_file = "{file}"
check = {check}
reload = {reload}
"#,
            name = p.name,
            labels = p.labels,
            alias = sshd.alias,
            port = sshd.port,
            file = nginx.upstream_file.display(),
        ))
    };
    write(&v1, &check);
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let before = std::fs::read_to_string(&nginx.upstream_file).unwrap();

    write(
        &v2,
        r#"["sh", "-c", "echo refused by the test >&2; exit 1"]"#,
    );
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 3, "{}", explain(&o));
    let err = stderr(&o);
    assert!(
        err.contains("nginx configuration check `sh -c echo refused by the test >&2; exit 1` on ")
            && err.contains("refused by the test")
            && err.contains("the previous file was restored on every machine"),
        "{}",
        explain(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&nginx.upstream_file).unwrap(),
        before,
        "the previous file is back"
    );
    let r = crate::support::http::get(&nginx.addr(), "/version").unwrap();
    assert_eq!(r.text().trim(), v1);
}

/// An HAProxy on another machine (`at = ["ssh://..."]`, `socket` its path there): the
/// runtime API is reached through a socket forwarded over the ssh connection. A rollout
/// moves the backend from v1 to v2; a machine that cannot be reached stops the next apply
/// in pre-flight.
#[test]
fn haproxy_runtime_api_through_ssh() {
    use crate::support::haproxy::{HaproxyUnderTest, require_haproxy};
    use std::time::Duration;
    if !docker::require_docker("haproxy_over_ssh")
        || !require_haproxy("haproxy_over_ssh")
        || !require_sshd("haproxy_over_ssh")
    {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let sshd = Sshd::start(&[]);
    let p = Project::new("sshhp", &guard);
    let haproxy = HaproxyUnderTest::start(&p.join("haproxy"), "app");
    let write = |tag: &str, machine: &str| {
        p.write_toml(&format!(
            r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 2
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "5s"
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 10 }}
rollout = {{ batch = 1, order = "start-first", drain = "200ms" }}

[lb.front]
kind = "haproxy"
at = ["ssh://{machine}"]
socket = "{socket}"
backend = "app"
"#,
            name = p.name,
            labels = p.labels,
            socket = haproxy.socket.display(),
        ))
    };
    let version = || {
        crate::support::http::wait_for_status(
            &haproxy.addr(),
            "/version",
            200,
            Duration::from_secs(5),
        )
        .map(|r| r.text().trim().to_string())
        .unwrap_or_else(|e| e)
    };
    write(&v1, &sshd.alias);
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(version(), v1);
    write(&v2, &sshd.alias);
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(version(), v2);

    write(&v1, &format!("{}-stranger", sshd.alias));
    let o = gantry(&p, &sshd, &["apply", "--yes"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        stderr(&o).contains("pre-flight: lb.front: ssh authentication to"),
        "{}",
        explain(&o)
    );
    assert_eq!(version(), v2, "nothing changed");
    let leftover = sshd.leftover_ssh();
    assert!(leftover.is_empty(), "ssh left running: {leftover:?}");
}

/// A `reload` that fails on one machine of `at` after the check passed on all of them
/// (issue 14: "If any reload fails, every machine's previous file is restored and the step
/// fails"). Two machines are two ports of one sshd; `Match LocalPort` gives the second one
/// `GANTRY_IT_MACHINE=b`, and the reload command refuses there while a marker file exists.
/// Machine a has already loaded the new file when b refuses: it gets the previous file back
/// and is reloaded again; the step fails and the rollout restores revision 1 (exit 3), nginx
/// serving v1.
#[test]
fn a_failing_reload_over_ssh_restores_the_file_on_every_machine() {
    use crate::support::nginx::{NginxUnderTest, require_nginx};
    if !docker::require_docker("nginx_reload_over_ssh")
        || !require_nginx("nginx_reload_over_ssh")
        || !require_sshd("nginx_reload_over_ssh")
    {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let sshd = Sshd::start_with(2, |ports| {
        vec![
            "SetEnv GANTRY_IT_MACHINE=a".into(),
            format!("Match LocalPort {}", ports[1]),
            "  SetEnv GANTRY_IT_MACHINE=b".into(),
        ]
    });
    let p = Project::new("sshrl", &guard);
    let nginx = NginxUnderTest::start(&p.join("nginx"), "app");
    let marker = p.join("refuse-reload-on-b");
    let calls = p.join("reloads.log");
    // Logs `MACHINE ok|refused` per call; refuses on b while the marker exists.
    let script = format!(
        "echo \"$GANTRY_IT_MACHINE $( [ \"$GANTRY_IT_MACHINE\" = b ] && [ -e {m} ] && echo refused || echo ok)\" >> {c}; \
         if [ \"$GANTRY_IT_MACHINE\" = b ] && [ -e {m} ]; then echo reload refused by the test on b >&2; exit 1; fi; \
         exec nginx {args} -s reload",
        m = marker.display(),
        c = calls.display(),
        args = nginx.args().join(" "),
    );
    let (check, _) = nginx.toml_commands();
    let write = |tag: &str| {
        p.write_toml(&format!(
            r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 2
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "5s"
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 10 }}
rollout = {{ batch = 2, order = "start-first", drain = "200ms" }}

[lb.front]
kind = "nginx"
at = ["ssh://root@127.0.0.1:{a}", "ssh://root@127.0.0.1:{b}"]
upstream = "app"
upstream_file = "{file}"
check = {check}
reload = ["sh", "-c", {script:?}]
"#,
            name = p.name,
            labels = p.labels,
            a = sshd.ports[0],
            b = sshd.ports[1],
            file = nginx.upstream_file.display(),
        ))
    };
    write(&v1);
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}\nsshd: {}", explain(&o), sshd.log());
    let before = std::fs::read_to_string(&nginx.upstream_file).unwrap();
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "a ok\nb ok\n",
        "one reload per machine"
    );
    std::fs::write(&calls, "").unwrap();

    std::fs::write(&marker, "").unwrap();
    write(&v2);
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 3, "{}", explain(&o));
    let err = stderr(&o);
    assert!(
        err.contains("nginx reload `sh -c ")
            && err.contains(&format!(
                "on root@127.0.0.1:{} failed (exit 1)",
                sshd.ports[1]
            ))
            && err.contains("reload refused by the test on b")
            && err.contains("the previous file was restored on every machine"),
        "{}",
        explain(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&nginx.upstream_file).unwrap(),
        before,
        "the previous file is back"
    );
    // a loaded the new file, b refused, a was reloaded with the previous file; restoring
    // revision 1 then finds the file as it should be and reloads nothing.
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "a ok\nb refused\na ok\n",
        "{}",
        explain(&o)
    );
    let r = crate::support::http::get(&nginx.addr(), "/version").unwrap();
    assert_eq!(r.text().trim(), v1);
    assert_eq!(running_versions(&p), vec![v1.clone(); 2]);
    let leftover = sshd.leftover_ssh();
    assert!(leftover.is_empty(), "ssh left running: {leftover:?}");
}

/// A directory under `/run` for `ChrootDirectory` (sshd wants every component owned by root
/// and writable by no one else, which `/tmp` is not), removed on drop.
struct ChrootRoot(std::path::PathBuf);

impl ChrootRoot {
    fn new(dirs: &[&str]) -> ChrootRoot {
        use std::os::unix::fs::PermissionsExt;
        let id = uuid_like();
        let root = std::path::PathBuf::from(format!("/run/gantry-it-{id}"));
        for d in std::iter::once("").chain(dirs.iter().copied()) {
            let path = root.join(d);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        ChrootRoot(root)
    }
}

impl Drop for ChrootRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// One HAProxy load balancer on two machines (`at` with two entries, issue 14 item 3): two
/// real HAProxy processes, each behind its own port of one sshd, whose `Match LocalPort`
/// chroots each session into that machine's directory, so that the same `socket` path
/// names each machine's own stats socket. (sshd chroots only the sessions of a user it
/// drops privileges to, and forwards from there: the login is `nobody`, the sockets are
/// opened to it.) A rollout changes both. Then machine b cannot
/// take the new replica (a backend with a hash `balance` and two `server-template` slots,
/// both taken, while a start-first batch needs a third): a was already changed, and gets
/// its servers back as they were; the apply restores itself (exit 3), both serving v1.
#[test]
fn one_haproxy_load_balancer_on_two_machines_changes_both_or_neither() {
    use crate::support::haproxy::{HaproxyUnderTest, require_haproxy};
    use std::time::Duration;
    if !docker::require_docker("haproxy_two_machines")
        || !require_haproxy("haproxy_two_machines")
        || !require_sshd("haproxy_two_machines")
    {
        return;
    }
    // sshd chroots only as root, into a directory under /run.
    if !crate::support::extra_engine::is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "haproxy_two_machines: needs root (sshd's ChrootDirectory), and CI=true"
        );
        println!("SKIPPED: haproxy_two_machines: needs root (sshd's ChrootDirectory)");
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let root = ChrootRoot::new(&["a", "b"]);
    let sshd = Sshd::start_with(2, |ports| {
        vec![
            format!("Match LocalPort {}", ports[0]),
            format!("  ChrootDirectory {}/a", root.0.display()),
            format!("Match LocalPort {}", ports[1]),
            format!("  ChrootDirectory {}/b", root.0.display()),
        ]
    });
    let a = HaproxyUnderTest::start(&root.0.join("a/haproxy"), "app");
    let b = HaproxyUnderTest::start_with(
        &root.0.join("b/haproxy"),
        "app",
        "    balance source\n    server-template gantry- 2 127.0.0.1:1 disabled\n",
    );
    for h in [&a, &b] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&h.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let p = Project::new("sshh2", &guard);
    let write = |tag: &str, order: &str| {
        p.write_toml(&format!(
            r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 2
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "5s"
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 10 }}
rollout = {{ batch = 1, order = "{order}", drain = "200ms" }}

[lb.front]
kind = "haproxy"
at = ["ssh://nobody@127.0.0.1:{pa}", "ssh://nobody@127.0.0.1:{pb}"]
socket = "/haproxy/admin.sock"
backend = "app"
"#,
            name = p.name,
            labels = p.labels,
            pa = sshd.ports[0],
            pb = sshd.ports[1],
        ))
    };
    let version = |h: &HaproxyUnderTest| {
        crate::support::http::wait_for_status(&h.addr(), "/version", 200, Duration::from_secs(5))
            .map(|r| r.text().trim().to_string())
            .unwrap_or_else(|e| e)
    };
    // `show servers state` of gantry's servers: `name address:port admin-state`.
    let servers = |h: &HaproxyUnderTest| -> Vec<String> {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(format!(
            "echo 'show servers state app' | socat - UNIX-CONNECT:{}",
            h.socket.display()
        ));
        let out = String::from_utf8_lossy(&c.output().unwrap().stdout).to_string();
        let mut v: Vec<String> = out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 18 && f[3].starts_with("gantry-"))
            .map(|f| format!("{} {}:{} {}", f[3], f[4], f[18], f[6]))
            .collect();
        v.sort();
        v
    };
    // Stop-first first: b's two slots suffice for every change of a stop-first rollout.
    write(&v1, "stop-first");
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}\nsshd: {}", explain(&o), sshd.log());
    assert_eq!((version(&a), version(&b)), (v1.clone(), v1.clone()));
    write(&v2, "stop-first");
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!((version(&a), version(&b)), (v2.clone(), v2.clone()));

    // Start-first: b has no slot for the new replica; a gets its servers back.
    let a_before = servers(&a);
    let b_before = servers(&b);
    assert_eq!(a_before.len(), 2, "{a_before:?}");
    write(&v1, "start-first");
    let o = gantry(&p, &sshd, &["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 3, "{}", explain(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "nobody@127.0.0.1:{}: backend `app` does not take dynamic servers",
            sshd.ports[1]
        )) && err.contains(&format!(
            "the servers were put back as they were on nobody@127.0.0.1:{}, nobody@127.0.0.1:{}",
            sshd.ports[0], sshd.ports[1]
        )),
        "{}",
        explain(&o)
    );
    assert_eq!(servers(&a), a_before, "a is back as it was");
    assert_eq!(servers(&b), b_before, "b is as it was");
    assert_eq!((version(&a), version(&b)), (v2.clone(), v2.clone()));
    let leftover = sshd.leftover_ssh();
    assert!(leftover.is_empty(), "ssh left running: {leftover:?}");
}

/// gantry SIGKILLed in the middle of an apply on an SSH host: its ssh master (a child of
/// gantry's, which nothing else reaps) must not outlive it. A watcher the session starts
/// beside the master stops it when gantry's end of a pipe closes, whatever killed gantry.
#[test]
fn a_killed_gantry_leaves_no_ssh_master_behind() {
    use std::time::{Duration, Instant};
    if !docker::require_docker("ssh_killed") || !require_sshd("ssh_killed") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let sshd = Sshd::start(&[]);
    let p = Project::new("sshkill", &guard);
    write(&p, &format!("ssh://{}", sshd.alias), &v1);
    // A long soak: the apply is still running when it is killed.
    p.edit_toml(|t| t.replace("soak = \"300ms\"", "soak = \"60s\""));
    let mut c = p.command(&["apply", "--yes", "--progress", "plain"]);
    c.env("PATH", sshd.path_env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let gantry = crate::support::process::Background::spawn(c, "gantry apply");
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.containers(&["status=running"], "{{.Names}}").is_empty() {
        assert!(Instant::now() < deadline, "the apply started no replica");
        std::thread::sleep(Duration::from_millis(100));
    }
    let running = sshd.leftover_ssh();
    assert!(!running.is_empty(), "the ssh master runs");
    // Its private directory (`ControlPath=DIR/ctl`): removed with it.
    let dir = running
        .iter()
        .flat_map(|l| l.split_whitespace())
        .find_map(|a| a.strip_prefix("ControlPath="))
        .map(|c| std::path::PathBuf::from(c.trim_end_matches("/ctl")))
        .expect("the master's ControlPath");
    assert!(dir.exists(), "{}", dir.display());
    gantry.kill();
    let killed = Instant::now();
    while !sshd.leftover_ssh().is_empty() && killed.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let leftover = sshd.leftover_ssh();
    assert!(
        leftover.is_empty(),
        "ssh still running {:.1}s after gantry was killed: {leftover:?}",
        killed.elapsed().as_secs_f64()
    );
    eprintln!(
        "the ssh master was gone {:.2}s after gantry was killed",
        killed.elapsed().as_secs_f64()
    );
    while dir.exists() && killed.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!dir.exists(), "{} is left", dir.display());
}
