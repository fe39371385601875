//! Commands around rollouts: status and drift, rollback, prune, and load balancers driven
//! by the user's commands.

use super::{Web, images};
use crate::support;
use crate::support::docker::{self, DockerTestGuard};
use crate::support::project::{code, explain};

#[test]
fn status_shows_kept_replicas_and_names_drift() {
    if !docker::require_docker("status_shows_kept_replicas_and_names_drift") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Web::new(&guard, &v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    p.write(&v2, "", "");
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    let o = p.gantry(&["status"]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(text.matches("kept for rollback").count(), 3, "{text}");
    assert_eq!(text.matches("healthy").count(), 3, "{text}");
    assert!(text.contains("No drift"), "{text}");

    // A replica removed behind gantry's back, and a foreign container with its labels.
    docker::docker_ok(&["rm", "-f", &format!("{}-web-2-2", p.name)]);
    let project_label = format!("dev.gantry.project={}", p.name);
    let mut args: Vec<String> = guard.label_args();
    args.extend([
        "--label".into(),
        project_label,
        "--label".into(),
        "dev.gantry.service=web".into(),
        "--name".into(),
        format!("{}-intruder", p.name),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    guard.run(&args, &format!("gantry-testapp:{v1}"));
    // A container gantry does not manage, on the host port a kept v1 replica will need.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.dir.path().join(".gantry/state.json")).unwrap(),
    )
    .unwrap();
    let kept_port = state["services"]["web"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "stopped")
        .and_then(|r| r["host_port"].as_u64())
        .unwrap();
    let publish = format!("127.0.0.1:{kept_port}:8080");
    let mut args: Vec<String> = guard.label_args();
    args.extend([
        "-p".into(),
        publish,
        "--name".into(),
        format!("{}-squatter", p.name),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    guard.run(&args, &format!("gantry-testapp:{v1}"));

    let o = p.gantry(&["status"]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("Drift (3)"), "{text}");
    assert!(
        text.contains("#2 recorded running; no such container"),
        "{text}"
    );
    assert!(
        text.contains("-intruder on local: carries this project's labels"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "publishes host port {kept_port}, which service.web uses"
        )),
        "{text}"
    );

    // Plan stays offline and sees nothing; --refresh shows the drift and rolls the service.
    assert_eq!(code(&p.gantry(&["plan", "--detailed-exitcode"])), 0);
    let o = p.gantry(&["plan", "--refresh", "--detailed-exitcode"]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(text.contains("Drift found by --refresh (3)"), "{text}");
    assert!(text.contains("roll 3 replicas"), "{text}");
    let o = p.gantry(&["plan", "--refresh", "--format", "markdown"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("<details><summary>Drift found by"),
        "drift in its own collapsed section"
    );
    let o = p.gantry(&["plan", "--refresh", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["drift"].as_array().unwrap().len(), 3);

    // apply --refresh repairs: three healthy replicas again; the foreign ones stay drift.
    let o = p.gantry(&["apply", "--refresh", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let running = p.containers("status=running");
    assert_eq!(
        running.iter().filter(|c| c.contains("-web-3-")).count(),
        3,
        "{running:?}"
    );
    let o = p.gantry(&["plan", "--refresh", "--detailed-exitcode"]);
    assert_eq!(
        code(&o),
        0,
        "only what apply cannot repair is left\n{}",
        explain(&o)
    );
}

/// A load balancer gantry does not speak, driven by the user's commands: they run once per
/// joining or leaving replica with the placeholders filled in; a failing one fails the step
/// with its exit status and output, and the rollout restores itself.
#[test]
fn command_load_balancers_run_the_users_commands() {
    if !docker::require_docker("command_load_balancers") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Web::new(&guard, &v1);
    let log = p.dir.path().join("lb.log");
    let lb = |join: &str| {
        format!(
            "lb = [\"ext\"]\n\n[lb.ext]\nkind = \"command\"\njoin = {join}\nleave = [\"sh\", \"-c\", \"echo leave {{service}} {{replica}} {{address}} {{port}} >> {log}\"]\ndrain_check = [\"true\"]\ntimeout = \"5s\"\n",
            log = log.display()
        )
    };
    let good_join = format!(
        "[\"sh\", \"-c\", \"echo join {{service}} {{replica}} {{address}} {{port}} >> {}\"]",
        log.display()
    );
    p.write(&v1, "", &lb(&good_join));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("join web ")).count(),
        3,
        "{text}"
    );
    let port = docker::published_addr(&format!("{}-web-1-1", p.name), 8080)
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        text.contains(&format!("join web 1 127.0.0.1 {port}")),
        "{text}"
    );

    p.write(&v2, "", &lb(&good_join));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("leave web ")).count(),
        3,
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("idle after"),
        "drain_check was used: {}",
        explain(&o)
    );

    // A join command that fails: exit status and output in the error, v2 restored.
    p.write(
        &v1,
        "",
        &lb("[\"sh\", \"-c\", \"echo lbctl: pool is locked >&2; exit 7\"]"),
    );
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 3, "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("lbctl: pool is locked") && stderr.contains("exit status: 7"),
        "{stderr}"
    );
    assert!(
        p.containers("status=running")
            .iter()
            .all(|n| n.contains("-web-2-"))
    );
}

/// `gantry rollback` returns to the previous revision's exact image IDs, even after its tag
/// was re-pointed, without pulling; the history says where it came from.
#[test]
fn rollback_restores_the_recorded_images_even_when_the_tag_moved() {
    if !docker::require_docker("rollback_restores_recorded_images") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Web::new(&guard, &v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    let v1_id = docker::inspect(&format!("{}-web-1-1", p.name), "{{.Image}}");
    p.write(&v2, "", "");
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    // Someone re-points the v1 tag at another image; a rollback must not care.
    let v1_tag = format!("gantry-testapp:{v1}");
    let v2_id = docker::inspect(&format!("{}-web-2-1", p.name), "{{.Image}}");
    assert_ne!(v1_id, v2_id);
    docker::docker_ok(&["tag", &v2_id, &v1_tag]);

    // The fast path: the kept v1 containers are started again (no create, no pull).
    let o = p.gantry(&["rollback", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("restart #1,#2,#3 (kept from revision 1)"),
        "{}",
        explain(&o)
    );
    let running = p.containers("status=running");
    assert_eq!(
        running,
        (1..=3)
            .map(|i| format!("{}-web-1-{i}", p.name))
            .collect::<Vec<_>>()
    );
    for c in &running {
        assert_eq!(
            docker::inspect(c, "{{.Image}}"),
            v1_id,
            "{c} runs the recorded v1 image"
        );
        let r = support::http::get(&docker::published_addr(c, 8080), "/version").unwrap();
        assert_eq!(r.text().trim(), v1);
    }
    assert_eq!(
        code(&p.gantry(&["plan", "--detailed-exitcode"])),
        2,
        "config still says v2"
    );
    let history = String::from_utf8_lossy(&p.gantry(&["history"]).stdout).to_string();
    assert!(
        history.contains("rollback to revision 1 (from 2)"),
        "{history}"
    );

    // Forward again, then back with --recreate: new containers from the recorded image ID,
    // although the v1 tag now names another image.
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    let o = p.gantry(&["rollback", "--yes", "--recreate"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let running = p.containers("status=running");
    assert_eq!(running.len(), 3, "{running:?}");
    for c in &running {
        assert!(c.contains("-web-5-"), "{running:?}");
        assert_eq!(
            docker::inspect(c, "{{.Image}}"),
            v1_id,
            "{c} runs the recorded v1 image"
        );
    }
    // Roll back to a revision that no longer exists: refused, nothing changed.
    let o = p.gantry(&["rollback", "--to", "9", "--yes"]);
    assert_eq!(code(&o), 1);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a successful revision"),
        "{}",
        explain(&o)
    );
}

/// `keep_previous` revisions of stopped containers are kept after each apply; `gantry prune`
/// removes what is beyond it, and the images no container uses, never what runs.
#[test]
fn keep_previous_and_prune() {
    if !docker::require_docker("keep_previous_and_prune") {
        return;
    }
    let guard = DockerTestGuard::new();
    // Images of this test only: prune removes images, other tests' must not be touched.
    let (a, b) = (docker::run_tag("prune-a"), docker::run_tag("prune-b"));
    docker::build_testapp_images_once(&[&a, &b]);
    let p = Web::new(&guard, &a);
    let keep = |n: u32| {
        let toml = p.toml();
        let toml = toml
            .lines()
            .filter(|l| !l.starts_with("keep_previous"))
            .map(|l| {
                if l.starts_with("name = ") {
                    format!("{l}\nkeep_previous = {n}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        p.write_toml(&toml);
    };
    for tag in [&a, &b, &a] {
        p.write(tag, "", "");
        keep(2);
        let o = p.gantry(&["apply", "--yes"]);
        assert_eq!(code(&o), 0, "{}", explain(&o));
    }
    // Revisions 1 and 2 are kept stopped behind revision 3.
    let stopped = p.containers("status=exited");
    assert_eq!(stopped.len(), 6, "{stopped:?}");
    let b_id = docker::inspect(&format!("{}-web-2-1", p.name), "{{.Image}}");

    keep(0);
    let o = p.gantry(&["prune"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text.starts_with("Removed 6 container(s) and 1 image(s)"),
        "{text}"
    );
    assert!(p.containers("status=exited").is_empty());
    assert_eq!(p.containers("status=running").len(), 3);
    assert!(
        !docker::image_exists(&b_id),
        "the image no container uses is gone"
    );
    assert_eq!(code(&p.gantry(&["plan", "--detailed-exitcode"])), 0);
}
