//! `gantry logs` and `gantry exec` against the real engine: the replicas' own output, merged
//! and prefixed; `--follow` across a rollout; commands run inside replicas, their output and
//! exit codes; bad names answered with the list of what exists. Neither takes the lock.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use crate::support::docker::{self, DockerTestGuard};
use crate::support::process::{Background, signal};
use crate::support::project::{Project, code, explain, stderr, stdout};
use crate::support::{debian, stack};

fn images() -> (String, String) {
    let tags = [docker::run_tag("ops-v1"), docker::run_tag("ops-v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    (tags[0].clone(), tags[1].clone())
}

/// `replicas` of the test app as service web; a SIGTERM makes a replica say so and keep
/// serving (SHUTDOWN_DELAY_SECONDS), which gives each replica lines at chosen times.
fn write_web(p: &Project, tag: &str, replicas: u32) {
    p.write_toml(&format!(
        r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = {replicas}
port = 8080
env = {{ VERSION = "{tag}", SHUTDOWN_DELAY_SECONDS = "120" }}
labels = {labels}
stop_grace_period = "1s"
health = {{ http = "/healthz", interval = "200ms", timeout = "1s", retries = 5 }}
rollout = {{ batch = 1, order = "start-first" }}
"#,
        name = p.name,
        labels = p.labels
    ));
}

/// The running container of `service#index`, by gantry's labels.
fn container(p: &Project, service: &str, index: u32) -> String {
    let found = p.containers(
        &[
            &format!("label=dev.gantry.service={service}"),
            &format!("label=dev.gantry.replica={index}"),
            "status=running",
        ],
        "{{.ID}}",
    );
    assert_eq!(found.len(), 1, "{service}#{index}: {found:?}");
    found[0].clone()
}

/// The container's hostname: what the test app prints as `host=`.
fn hostname(id: &str) -> String {
    docker::inspect(id, "{{.Config.Hostname}}")
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// Holds the state lock as a live apply would (this test process is alive on this host).
fn hold_lock(p: &Project) {
    let info = serde_json::json!({
        "holder": "test@here",
        "pid": std::process::id(),
        "host": gantry::drivers::fs::hostname(),
        "started_at": "2024-05-01T10:00:00Z",
        "operation": "apply",
    });
    std::fs::write(p.join(".gantry/lock.json"), info.to_string()).unwrap();
}

#[test]
fn logs_merge_every_replica_in_time_order_with_its_prefix() {
    if !docker::require_docker("logs_merge_every_replica_in_time_order_with_its_prefix") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Project::new("lg", &guard);
    write_web(&p, &v1, 3);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let ids: Vec<String> = (1..=3).map(|i| container(&p, "web", i)).collect();

    // Lines at known times: #2, #3, #1, then #2 again.
    let term = |i: usize| docker::docker_ok(&["kill", "-s", "TERM", &ids[i - 1]]);
    let gap = || sleep(Duration::from_millis(400));
    term(2);
    gap();
    let before_3 = SystemTime::now();
    gap();
    term(3);
    gap();
    term(1);
    gap();
    term(2);
    gap();
    // An apply is running (it holds the lock): logs do not need it.
    hold_lock(&p);

    let o = p.gantry(&["logs"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let out = stdout(&o);
    let got = lines(&out);
    assert_eq!(got.len(), 7, "{out}");
    // First what each replica said when it started, each under its own prefix.
    let mut started: Vec<&str> = got[..3].to_vec();
    started.sort();
    for (i, line) in started.iter().enumerate() {
        let prefix = format!(
            "web#{}@local | testapp: listening on 0.0.0.0:8080 (version={v1} host={}",
            i + 1,
            hostname(&ids[i])
        );
        assert!(line.starts_with(&prefix), "{line}\nwanted {prefix}\n{out}");
    }
    let delay = "testapp: SIGTERM received; still serving for 120s (SHUTDOWN_DELAY_SECONDS) before closing the listener";
    let again = "testapp: SIGTERM received again; already shutting down";
    assert_eq!(
        got[3..],
        [
            format!("web#2@local | {delay}"),
            format!("web#3@local | {delay}"),
            format!("web#1@local | {delay}"),
            format!("web#2@local | {again}"),
        ],
        "{out}"
    );
    assert!(
        !out.contains('\u{1b}'),
        "no colour without a terminal: {out:?}"
    );

    // With the engine's times: in order.
    let o = p.gantry(&["logs", "web", "--timestamps"]);
    let times: Vec<SystemTime> = lines(&stdout(&o))
        .iter()
        .map(|l| {
            let t = l.split(" | ").nth(1).unwrap().split(' ').next().unwrap();
            humantime::parse_rfc3339(t).unwrap()
        })
        .collect();
    assert_eq!(times.len(), 7, "{}", explain(&o));
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{}", stdout(&o));

    // --tail: the last line of each replica, merged.
    let o = p.gantry(&["logs", "--tail", "1"]);
    assert_eq!(
        lines(&stdout(&o)),
        [
            format!("web#3@local | {delay}"),
            format!("web#1@local | {delay}"),
            format!("web#2@local | {again}"),
        ],
        "{}",
        explain(&o)
    );

    // --since: an RFC 3339 time (to the sub-second), or a duration.
    let since = humantime::format_rfc3339_millis(before_3).to_string();
    let o = p.gantry(&["logs", "--since", &since]);
    assert_eq!(lines(&stdout(&o)), got[4..], "{}", explain(&o));
    let o = p.gantry(&["logs", "--since", "1h"]);
    assert_eq!(lines(&stdout(&o)), got, "{}", explain(&o));
    let o = p.gantry(&["logs", "--since", "yesterday"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        stderr(&o).contains("--since `yesterday`"),
        "{}",
        explain(&o)
    );

    // Bad names: exit 1 with what exists.
    let o = p.gantry(&["logs", "nope"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        stderr(&o).contains("unknown service `nope`; the services are: web"),
        "{}",
        explain(&o)
    );
}

/// Appends what `log` holds until `done` says it is complete; panics after `within`.
fn wait_for(log: &Path, within: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "not within {within:?}:\n{text}");
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn logs_follow_picks_up_the_replicas_a_rollout_starts() {
    if !docker::require_docker("logs_follow_picks_up_the_replicas_a_rollout_starts") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new("lf", &guard);
    write_web(&p, &v1, 2);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));

    let log = p.join("follow.log");
    let follow: Background = p.spawn_logged(&["logs", "--follow", "web"], &log);
    let listening = |v: &str, i: u32| {
        format!("web#{i}@local | testapp: listening on 0.0.0.0:8080 (version={v} ")
    };
    wait_for(&log, Duration::from_secs(20), |t| {
        t.contains(&listening(&v1, 1)) && t.contains(&listening(&v1, 2))
    });

    // The rollout starts new replicas: their lines join the stream.
    write_web(&p, &v2, 2);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let text = wait_for(&log, Duration::from_secs(20), |t| {
        t.contains(&listening(&v2, 1)) && t.contains(&listening(&v2, 2))
    });
    // The old ones' stop was followed to its end (gantry's SIGTERM, before the kill).
    assert!(
        text.contains("web#1@local | testapp: SIGTERM received; still serving"),
        "{text}"
    );
    // Each line once: nothing shown twice when streams restart.
    for v in [&v1, &v2] {
        for i in [1, 2] {
            assert_eq!(text.matches(&listening(v, i)).count(), 1, "{text}");
        }
    }

    // Ctrl-C stops it cleanly.
    signal("INT", i64::from(follow.id()));
    let status = follow.wait_status(Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

#[test]
fn exec_runs_in_a_replica_and_returns_the_exit_code() {
    if !debian::require_debian_images("exec_runs_in_a_replica_and_returns_the_exit_code") {
        return;
    }
    let guard = DockerTestGuard::new();
    let image = stack::base_image();
    let p = Project::new("ex", &guard);
    p.write_toml(&format!(
        r#"[project]
name = "{name}"

[service.box]
image = "{image}"
replicas = 2
command = ["sh", "-c", "echo started $(hostname); echo complaint >&2; exec sleep infinity"]
labels = {labels}
stop_grace_period = "1s"
"#,
        name = p.name,
        labels = p.labels
    ));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let ids: Vec<String> = (1..=2).map(|i| container(&p, "box", i)).collect();
    hold_lock(&p);

    // Output on its streams, byte for byte, and the exit code passed on.
    let o = p.gantry(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "printf 'out\\n\\033[1mbold'; echo err >&2; exit 7",
    ]);
    assert_eq!(code(&o), 7, "{}", explain(&o));
    assert_eq!(o.stdout, b"out\n\x1b[1mbold", "{}", explain(&o));
    assert_eq!(stderr(&o), "err\n");

    // By default the first replica; --replica chooses.
    let o = p.gantry(&["exec", "box", "--", "hostname"]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, format!("{}\n", hostname(&ids[0]))),
        "{}",
        explain(&o)
    );
    let o = p.gantry(&[
        "exec",
        "box",
        "--replica",
        "2",
        "--host",
        "local",
        "--",
        "hostname",
    ]);
    assert_eq!(
        stdout(&o),
        format!("{}\n", hostname(&ids[1])),
        "{}",
        explain(&o)
    );

    // The container's stdout and stderr are both in its logs.
    let o = p.gantry(&["logs", "box", "--tail", "2"]);
    let out = stdout(&o);
    for (i, id) in ids.iter().enumerate() {
        assert!(
            out.contains(&format!("box#{}@local | started {}\n", i + 1, hostname(id))),
            "{out}"
        );
        assert!(
            out.contains(&format!("box#{}@local | complaint\n", i + 1)),
            "{out}"
        );
    }

    // Bad names: exit 1 with what exists.
    let o = p.gantry(&["exec", "box", "--replica", "5", "--", "true"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        stderr(&o).contains("the running replicas are: box#1@local, box#2@local"),
        "{}",
        explain(&o)
    );
    let o = p.gantry(&["exec", "nope", "--", "true"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        stderr(&o).contains("the services are: box"),
        "{}",
        explain(&o)
    );
    let o = p.gantry(&["exec", "box", "--host", "elsewhere", "--", "true"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        stderr(&o).contains("unknown host `elsewhere`; the hosts are: local"),
        "{}",
        explain(&o)
    );
    // A command the image does not have: the engine's exit code for it.
    let o = p.gantry(&["exec", "box", "--", "no-such-command"]);
    assert!([126, 127].contains(&code(&o)), "{}", explain(&o));

    // On a terminal (script(1) gives it one): a TTY inside, the terminal restored after.
    if let Some(o) = on_a_terminal(
        &p,
        "stty -g > before; gantry exec box -- sh -c 'test -t 0 && echo on-a-tty; exit 3'; echo \"exit=$?\"; stty -g > after",
        true,
    ) {
        assert!(o.contains("on-a-tty"), "{o}");
        assert!(o.contains("exit=3"), "{o}");
        assert_eq!(
            std::fs::read_to_string(p.join("before")).unwrap(),
            std::fs::read_to_string(p.join("after")).unwrap(),
            "raw mode left on"
        );
        // The prefixes are coloured on a terminal, one colour per replica; not with NO_COLOR.
        let o = on_a_terminal(&p, "gantry logs box --tail 1", false).unwrap();
        assert!(o.contains("\u{1b}[36mbox#1@local |\u{1b}[0m "), "{o:?}");
        assert!(o.contains("\u{1b}[33mbox#2@local |\u{1b}[0m "), "{o:?}");
        let o = on_a_terminal(&p, "gantry logs box --tail 1", true).unwrap();
        assert!(
            o.contains("box#1@local | ") && !o.contains('\u{1b}'),
            "{o:?}"
        );
    }
}

/// Runs `script` in `sh` on a pseudo-terminal (util-linux `script`), in the project's
/// directory with the gantry binary on PATH; its output, or `None` without `script`. The
/// terminal's input stays open for a while: at the end of its input, `script` sends the
/// terminal's end-of-file, which is not what a person at a terminal does.
fn on_a_terminal(p: &Project, script: &str, no_color: bool) -> Option<String> {
    let bin = Path::new(env!("CARGO_BIN_EXE_gantry")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = std::process::Command::new("sh");
    c.args([
        "-c",
        "command -v script >/dev/null || exit 99; sleep 3 | script -qec \"$0\" /dev/null",
        script,
    ])
    .current_dir(p.path())
    .env("PATH", path)
    .env("TERM", "xterm")
    .env_remove("NO_COLOR")
    .env_remove("CLICOLOR_FORCE");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    let o = crate::support::process::run_with_timeout(c, Duration::from_secs(60)).unwrap();
    (o.status.code() != Some(99)).then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}
