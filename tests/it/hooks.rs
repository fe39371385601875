//! `[hooks]` on the deploying machine and the blue-green old colour's `idle_command` /
//! `resume_command`, against the real engine with the test app (issue 13, items 2 and 3).
//! The hooks are a shell script that writes its environment to a file; the old colour's
//! commands are `/testapp --get /idle` and `/resume`, exec'ed in the replicas, whose mode
//! (`/mode`) the test reads through their published port. Skipped (with a message) without
//! Docker locally; fails under CI. The validation errors of the new keys need no engine.

use std::path::Path;
use std::process::Output;

use crate::support::docker::{self, DockerTestGuard};
use crate::support::http;
use crate::support::project::{Project, code, explain, gantry_command, run, stderr};

/// The hook: appends `NAME ORIGIN OUTCOME` to `out/calls`, writes its environment to
/// `out/NAME.env` and the plan it was given to `out/NAME.plan.json`, says hello, and exits
/// with `$2` (default 0). Relative paths: it runs in the configuration's directory.
const HOOK: &str = r#"#!/bin/sh
mkdir -p out
echo "$1 $GANTRY_ORIGIN $GANTRY_OUTCOME" >> out/calls
env > "out/$1.env"
if [ -n "$GANTRY_PLAN" ]; then cp "$GANTRY_PLAN" "out/$1.plan.json"; fi
echo "hello from $1"
echo "to stderr from $1" >&2
exit "${2:-0}"
"#;

const SECRET: &str = "hunter2-never-in-hooks";

fn images(tags: &[&str]) -> Vec<String> {
    let tags: Vec<String> = tags.iter().map(|t| docker::run_tag(t)).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    docker::build_testapp_images_once(&refs);
    tags
}

/// One replica of `tag` (`env` added to its environment) with `hooks` (the body of a
/// `[hooks]` table) and two secrets, one of which the hooks may have.
fn write(p: &Project, tag: &str, env: &str, hooks: &str) {
    p.write_toml(&format!(
        r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 1
port = 8080
env = {{ VERSION = "{tag}"{env} }}
secret_env = ["DB_PASSWORD", "API_TOKEN"]
labels = {labels}
stop_grace_period = "2s"
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 10 }}

[hooks]
{hooks}
timeout = "30s"
secret_env = ["API_TOKEN"]
"#,
        name = p.name,
        labels = p.labels,
    ));
}

fn install_hook(p: &Project) {
    use std::os::unix::fs::PermissionsExt;
    let path = p.join("hook.sh");
    std::fs::write(&path, HOOK).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `gantry -f DIR/gantry.toml ARGS` run from another directory (hooks must still run in
/// the configuration's), with the secrets and a plain variable in its environment.
fn gantry(p: &Project, args: &[&str]) -> Output {
    let elsewhere = tempfile::tempdir().unwrap();
    let config = p.join("gantry.toml").display().to_string();
    let mut all = vec!["-f", config.as_str()];
    all.extend_from_slice(args);
    let mut cmd = gantry_command(elsewhere.path(), &all);
    cmd.env("DB_PASSWORD", SECRET)
        .env("API_TOKEN", "token-the-hooks-may-have")
        .env("HOOK_VISIBLE", "plain");
    run(cmd)
}

/// The environment a hook wrote, as `KEY=value` lines.
fn env_of(p: &Project, hook: &str) -> Vec<String> {
    let text = std::fs::read_to_string(p.join(&format!("out/{hook}.env")))
        .unwrap_or_else(|e| panic!("the {hook} hook did not run: {e}"));
    text.lines().map(str::to_string).collect()
}

fn var<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().find_map(|l| l.strip_prefix(&format!("{key}=")))
}

fn calls(p: &Project) -> Vec<String> {
    std::fs::read_to_string(p.join("out/calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Pins what a hook gets: each `GANTRY_*` variable, the JSON plan in a temporary file that
/// is gone afterwards, gantry's environment without the service secrets (but with the one
/// `[hooks] secret_env` names), the configuration's directory as working directory, and its
/// output on gantry's stderr, prefixed. An apply with nothing to change runs no hook.
#[test]
fn hooks_get_the_run_s_variables_and_the_plan_but_no_secret() {
    if !docker::require_docker("hooks_environment") {
        return;
    }
    let guard = DockerTestGuard::new();
    let [v1] = <[String; 1]>::try_from(images(&["hk1"])).unwrap();
    let p = Project::new("hk", &guard);
    install_hook(&p);
    write(
        &p,
        &v1,
        "",
        "before_apply = [\"./hook.sh\", \"before\"]\nafter_apply = [\"./hook.sh\", \"after\"]",
    );
    let o = gantry(&p, &["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));

    let before = env_of(&p, "before");
    assert_eq!(var(&before, "GANTRY_PROJECT"), Some(p.name.as_str()));
    assert_eq!(var(&before, "GANTRY_REVISION"), Some("1"));
    assert_eq!(var(&before, "GANTRY_ORIGIN"), Some("apply"));
    assert_eq!(var(&before, "GANTRY_OUTCOME"), Some("pending"));
    assert_eq!(var(&before, "GANTRY_SERVICES"), Some("web"));
    assert_eq!(var(&before, "GANTRY_HOOK"), Some("before_apply"));
    assert_eq!(var(&before, "HOOK_VISIBLE"), Some("plain"));
    assert_eq!(
        var(&before, "API_TOKEN"),
        Some("token-the-hooks-may-have"),
        "named in [hooks] secret_env"
    );
    assert_eq!(var(&before, "DB_PASSWORD"), None);
    let plan_path = var(&before, "GANTRY_PLAN")
        .expect("GANTRY_PLAN")
        .to_string();
    assert!(!Path::new(&plan_path).exists(), "the plan file is removed");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("out/before.plan.json")).unwrap())
            .expect("a JSON plan");
    assert!(plan["format_version"].is_number(), "{plan}");
    assert_eq!(plan["changes"][0]["address"], "service.web", "{plan}");

    let after = env_of(&p, "after");
    assert_eq!(var(&after, "GANTRY_OUTCOME"), Some("success"));
    assert_eq!(var(&after, "GANTRY_REVISION"), Some("1"));
    assert_eq!(var(&after, "GANTRY_HOOK"), Some("after_apply"));
    for hook in ["before", "after"] {
        let text = std::fs::read_to_string(p.join(&format!("out/{hook}.env"))).unwrap();
        assert!(!text.contains(SECRET), "a secret reached the {hook} hook");
    }
    let err = stderr(&o);
    assert!(
        err.contains("hook before_apply: running `./hook.sh before`"),
        "{err}"
    );
    assert!(
        err.contains("hook before_apply | hello from before"),
        "{err}"
    );
    assert!(
        err.contains("hook before_apply | to stderr from before"),
        "{err}"
    );
    assert!(err.contains("hook after_apply | hello from after"), "{err}");
    assert!(!err.contains(SECRET) && !String::from_utf8_lossy(&o.stdout).contains(SECRET));
    assert_eq!(calls(&p), ["before apply pending", "after apply success"]);

    let o = gantry(&p, &["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(calls(&p).len(), 2, "no change, no hook");
    drop(guard);
}

/// Pins a failing `before_apply`: exit 1, nothing created, no state, and no later hook;
/// a failing `after_apply` is reported and the apply still exits 0.
#[test]
fn a_failing_before_apply_stops_the_run_and_a_failing_after_apply_does_not() {
    if !docker::require_docker("hooks_failing") {
        return;
    }
    let guard = DockerTestGuard::new();
    let [v1] = <[String; 1]>::try_from(images(&["hk1"])).unwrap();
    let p = Project::new("hf", &guard);
    install_hook(&p);
    write(
        &p,
        &v1,
        "",
        "before_apply = [\"./hook.sh\", \"before\", \"7\"]\non_failure = [\"./hook.sh\", \"failure\"]",
    );
    let o = gantry(&p, &["apply", "--yes"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        stderr(&o).contains("the before_apply hook failed: exit code 7; nothing was changed"),
        "{}",
        explain(&o)
    );
    assert!(
        p.containers(&[], "{{.Names}}").is_empty(),
        "nothing created"
    );
    assert!(!p.join(".gantry/state.json").exists(), "no state");
    assert_eq!(calls(&p), ["before apply pending"]);

    write(
        &p,
        &v1,
        "",
        "after_apply = [\"./hook.sh\", \"after\", \"1\"]",
    );
    let o = gantry(&p, &["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stderr(&o)
            .contains("warning: the after_apply hook failed: exit code 1 (the outcome stands)"),
        "{}",
        explain(&o)
    );
    assert_eq!(p.containers(&[], "{{.Names}}").len(), 1);
    drop(guard);
}

/// Pins `after_rollback` after `gantry rollback` and `on_failure` after an apply that failed
/// and was restored, each told how the run ended.
#[test]
fn after_rollback_and_on_failure_run_with_the_outcome() {
    if !docker::require_docker("hooks_rollback") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = images(&["hk1", "hk2"]);
    let p = Project::new("hr", &guard);
    install_hook(&p);
    let hooks = "after_apply = [\"./hook.sh\", \"after\"]\non_failure = [\"./hook.sh\", \"failure\"]\nafter_rollback = [\"./hook.sh\", \"rollback\"]";
    write(&p, &tags[0], "", hooks);
    assert_eq!(code(&gantry(&p, &["apply", "--yes"])), 0);
    write(&p, &tags[1], "", hooks);
    assert_eq!(code(&gantry(&p, &["apply", "--yes"])), 0);

    let o = gantry(&p, &["rollback", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let env = env_of(&p, "rollback");
    assert_eq!(var(&env, "GANTRY_ORIGIN"), Some("rollback"));
    assert_eq!(var(&env, "GANTRY_OUTCOME"), Some("success"));
    assert_eq!(var(&env, "GANTRY_REVISION"), Some("3"));
    assert_eq!(var(&env, "GANTRY_SERVICES"), Some("web"));
    assert_eq!(var(&env, "GANTRY_HOOK"), Some("after_rollback"));
    assert_eq!(var(&env, "DB_PASSWORD"), None);

    write(&p, &tags[1], ", NEVER_HEALTHY = \"1\"", hooks);
    let o = gantry(&p, &["apply", "--yes"]);
    assert_eq!(code(&o), 3, "{}", explain(&o));
    let env = env_of(&p, "failure");
    assert_eq!(var(&env, "GANTRY_ORIGIN"), Some("apply"));
    assert_eq!(var(&env, "GANTRY_OUTCOME"), Some("restored"));
    assert_eq!(var(&env, "GANTRY_REVISION"), Some("4"));
    assert_eq!(
        calls(&p),
        [
            "after apply success",
            "after apply success",
            "rollback rollback success",
            "failure apply restored",
        ]
    );
    drop(guard);
}

/// One replica of `tag`, blue-green, no load balancer (a worker), the old colour kept 10
/// minutes for switch-back; `rollout` adds the idle and resume commands.
fn write_worker(p: &Project, tag: &str, rollout: &str) {
    p.write_toml(&format!(
        r#"[project]
name = "{name}"

[service.worker]
image = "gantry-testapp:{tag}"
replicas = 1
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "2s"
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 10 }}

[service.worker.rollout]
strategy = "blue-green"
scale_down_delay = "10m"
{rollout}
"#,
        name = p.name,
        labels = p.labels,
    ));
}

/// `/mode` of the project's replica `#1` of `revision`: `idle` or `active`.
fn mode(p: &Project, revision: u64) -> String {
    let container = format!("{}-worker-{revision}-1", p.name);
    let addr = docker::published_addr(&container, 8080);
    http::get(&addr, "/mode")
        .map(|r| r.text().trim().to_string())
        .unwrap_or_else(|e| format!("no answer from {container}: {e}"))
}

const IDLE_AND_RESUME: &str = "idle_command = [\"/testapp\", \"--get\", \"/idle\"]\nresume_command = [\"/testapp\", \"--get\", \"/resume\"]";

/// Pins `idle_command` and `resume_command` against the real engine: after a release the
/// old colour's replica is idle (exec'ed in it) while the new one is active; a switch-back
/// makes it active again before it takes over.
#[test]
fn the_old_colour_goes_idle_after_a_release_and_resumes_on_a_switch_back() {
    if !docker::require_docker("old_colour_idle") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = images(&["oc1", "oc2"]);
    let p = Project::new("oc", &guard);
    write_worker(&p, &tags[0], IDLE_AND_RESUME);
    let o = p.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(mode(&p, 1), "active");
    write_worker(&p, &tags[1], IDLE_AND_RESUME);
    let o = p.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stderr(&o).contains("idle_command ran in #1"),
        "{}",
        explain(&o)
    );
    assert_eq!(mode(&p, 1), "idle", "the old colour was sent idle");
    assert_eq!(mode(&p, 2), "active", "the new colour was not");

    let o = p.gantry(&["rollback", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stderr(&o).contains("no container started; resume_command ran in #1"),
        "{}",
        explain(&o)
    );
    assert_eq!(mode(&p, 1), "active", "resumed by the switch-back");
    drop(guard);
}

/// Pins a failing `resume_command`: the switch-back fails (exit 3, restored), the new colour
/// still runs and the old colour is idle again; and a failing `idle_command` is a warning:
/// the release stands (exit 0).
#[test]
fn a_failing_resume_command_fails_the_switch_back_and_a_failing_idle_command_does_not_fail_a_release()
 {
    if !docker::require_docker("old_colour_failures") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = images(&["oc1", "oc2"]);
    let p = Project::new("of", &guard);
    let failing_resume = "idle_command = [\"/testapp\", \"--get\", \"/idle\"]\nresume_command = [\"/testapp\", \"--get\", \"http://127.0.0.1:1/\"]";
    write_worker(&p, &tags[0], failing_resume);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    write_worker(&p, &tags[1], failing_resume);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    assert_eq!(mode(&p, 1), "idle");
    let o = p.gantry(&["rollback", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 3, "{}", explain(&o));
    assert!(
        stderr(&o).contains("resume_command `/testapp --get http://127.0.0.1:1/` failed in #1"),
        "{}",
        explain(&o)
    );
    assert_eq!(mode(&p, 2), "active", "the new colour still runs");
    assert_eq!(mode(&p, 1), "idle", "the old colour is idle as it was");

    let q = Project::new("oi", &guard);
    let failing_idle = "idle_command = [\"/gantry-no-such-program\"]";
    write_worker(&q, &tags[0], failing_idle);
    assert_eq!(code(&q.gantry(&["apply", "--yes"])), 0);
    write_worker(&q, &tags[1], failing_idle);
    let o = q.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stderr(&o).contains(
            "warning: service.worker: idle_command `/gantry-no-such-program` failed in #1"
        ),
        "{}",
        explain(&o)
    );
    assert_eq!(mode(&q, 2), "active");
    drop(guard);
}

/// `gantry validate` of `source` as `gantry.toml` in a fresh directory.
fn validate(source: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gantry.toml"), source).unwrap();
    run(gantry_command(dir.path(), &["validate"]))
}

/// Pins the validation of the new keys, each at its own `line:col`: `idle_command` and
/// `resume_command` on a rolling service, an empty hook, an empty idle command, a zero hook
/// timeout and a hook secret that is not a variable name.
#[test]
fn the_new_keys_are_refused_where_they_are_written() {
    let source = r#"[project]
name = "shop"

[service.web]
image = "registry.example/web:1"
rollout = { idle_command = ["kill", "-USR1", "1"], resume_command = ["true"] }

[service.worker]
image = "registry.example/worker:1"
rollout = { strategy = "blue-green", idle_command = [], resume_command = [""] }

[hooks]
before_apply = []
after_apply = ["./notify", "done"]
timeout = "0s"
secret_env = ["NOT-A-NAME"]
"#;
    let o = validate(source);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let err = stderr(&o);
    let headlines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(
        headlines,
        [
            "error: gantry.toml:6:28: `idle_command` only applies to `strategy = \"blue-green\"`",
            "error: gantry.toml:6:69: `resume_command` only applies to `strategy = \"blue-green\"`",
            "error: gantry.toml:10:53: `rollout.idle_command` must name a program: it is empty",
            "error: gantry.toml:10:74: `rollout.resume_command` must name a program: it is empty",
            "error: gantry.toml:13:16: `hooks.before_apply` must name a program: it is empty",
            "error: gantry.toml:15:11: hooks `timeout` must be more than 0",
            "error: gantry.toml:16:15: hooks `secret_env` names `NOT-A-NAME`, which is not a variable name",
        ],
        "{err}"
    );
    assert!(!err.contains("panicked"));

    let valid = r#"[project]
name = "shop"

[service.worker]
image = "registry.example/worker:1"
rollout = { strategy = "blue-green", idle_command = ["kill", "-USR1", "1"], resume_command = ["kill", "-USR2", "1"] }

[hooks]
before_apply = ["./notify", "start"]
"#;
    let o = validate(valid);
    assert_eq!(code(&o), 0, "{}", explain(&o));
}
