//! The container options of issue 12 against the real engine, with the test app: the
//! project network and its DNS aliases, named volumes kept through rolls, rollbacks and
//! destroys (`prune --volumes` removes them), restart policies of running and kept replicas,
//! health commands run by the engine, and the pre-flight checks of networks and bind paths.

use super::images;
use crate::support::docker::{self, DockerTestGuard};
use crate::support::project::{Project, code, explain, stderr, stdout};

/// `[project]` of `p`: its labels on what gantry creates besides containers (the network and
/// the volumes), so that the guard removes them too.
fn project(p: &Project) -> String {
    format!("[project]\nname = \"{}\"\nlabels = {}\n", p.name, p.labels)
}

/// `web`: 2 replicas of the test app `tag` with `extra` lines.
fn web(p: &Project, tag: &str, extra: &str) -> String {
    format!(
        r#"
[service.web]
image = "gantry-testapp:{tag}"
replicas = 2
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "5s"
health = {{ http = "/healthz", interval = "200ms", timeout = "1s", retries = 5 }}
rollout = {{ batch = 2, order = "start-first" }}
{extra}
"#,
        labels = p.labels
    )
}

fn running_names(p: &Project, service: &str) -> Vec<String> {
    p.containers(
        &[
            "status=running",
            &format!("label=dev.gantry.service={service}"),
        ],
        "{{.Names}}",
    )
}

fn restart_policy(container: &str) -> String {
    docker::inspect(container, "{{.HostConfig.RestartPolicy.Name}}")
}

/// Every replica joins the network named after the project, with its service's name as a
/// DNS alias there; the network carries the project's labels; `docker ps` shows the image as
/// written.
#[test]
fn containers_join_the_project_network_with_their_service_name() {
    if !docker::require_docker("containers_join_the_project_network_with_their_service_name") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Project::new("net", &guard);
    p.write_toml(&format!("{}{}", project(&p), web(&p, &v1, "")));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));

    let labels = docker::inspect(&p.name, "{{range $k, $v := .Labels}}{{$k}}={{$v}}\n{{end}}");
    assert!(
        labels.contains(&format!("dev.gantry.project={}", p.name)),
        "{labels}"
    );
    assert!(labels.contains(&docker::run_label()), "{labels}");
    let replicas = running_names(&p, "web");
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    for c in &replicas {
        let networks = docker::inspect(
            c,
            "{{range $n, $v := .NetworkSettings.Networks}}{{$n}}:{{range $v.Aliases}}{{.}},{{end}} {{end}}",
        );
        assert!(
            networks.contains(&format!("{}:", p.name)) && networks.contains("web,"),
            "{c}: {networks}"
        );
        let shown = p.containers(&[&format!("name={c}")], "{{.Image}}");
        assert_eq!(shown, [format!("gantry-testapp:{v1}")], "docker ps of {c}");
    }
}

/// A named volume is created once with gantry's labels, mounted by every replica of every
/// revision, and survives a roll and a rollback. The running replicas have the default
/// policy `unless-stopped`; those kept for rollback `no`, and get `unless-stopped` back when
/// the rollback starts them again.
#[test]
fn a_named_volume_and_restart_policies_through_a_roll_and_a_rollback() {
    if !docker::require_docker("a_named_volume_and_restart_policies_through_a_roll_and_a_rollback")
    {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new("vol", &guard);
    let volume = format!("{}_cache-data", p.name);
    let write = |tag: &str| {
        p.write_toml(&format!(
            "{}{}",
            project(&p),
            // A read-write volume rolls stop-first (validation refuses start-first).
            web(&p, tag, "volumes = [\"cache-data:/data\"]")
                .replace("order = \"start-first\"", "order = \"stop-first\"")
        ))
    };
    write(&v1);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let labels = docker::docker_ok(&[
        "volume",
        "inspect",
        "--format",
        "{{range $k, $v := .Labels}}{{$k}}={{$v}}\n{{end}}",
        &volume,
    ]);
    for l in [
        format!("dev.gantry.project={}", p.name),
        "dev.gantry.volume=cache-data".to_string(),
        docker::run_label(),
    ] {
        assert!(labels.contains(&l), "{l} in {labels}");
    }
    let v1_replicas = running_names(&p, "web");
    let mounted =
        |c: &str| docker::inspect(c, "{{range .Mounts}}{{.Name}}:{{.Destination}} {{end}}");
    for c in &v1_replicas {
        assert_eq!(mounted(c).trim(), format!("{volume}:/data"), "{c}");
        assert_eq!(restart_policy(c), "unless-stopped", "{c}");
    }

    write(&v2);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let v2_replicas = running_names(&p, "web");
    for c in &v2_replicas {
        assert_eq!(mounted(c).trim(), format!("{volume}:/data"), "{c}");
        assert_eq!(restart_policy(c), "unless-stopped", "{c}");
    }
    for c in &v1_replicas {
        assert_eq!(restart_policy(c), "no", "kept {c}");
    }

    let o = p.gantry(&["rollback", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(running_names(&p, "web"), v1_replicas, "the fast path");
    for c in &v1_replicas {
        assert_eq!(restart_policy(c), "unless-stopped", "{c} running again");
    }
    for c in &v2_replicas {
        assert_eq!(restart_policy(c), "no", "kept {c}");
    }
    let volumes = docker::docker_ok(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=dev.gantry.project={}", p.name),
    ]);
    assert_eq!(volumes.trim(), volume);
}

/// A service destroyed by an apply leaves its volume, and the apply says so; `prune
/// --volumes` refuses without a terminal and without --yes, then removes it with --yes.
/// Plain `prune` never touches it.
#[test]
fn prune_volumes_removes_what_no_service_declares() {
    if !docker::require_docker("prune_volumes_removes_what_no_service_declares") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Project::new("prune", &guard);
    let cache = format!(
        r#"
[service.cache]
image = "gantry-testapp:{v1}"
labels = {labels}
stop_grace_period = "2s"
volumes = ["cache-data:/data"]
"#,
        labels = p.labels
    );
    p.write_toml(&format!("{}{}{cache}", project(&p), web(&p, &v1, "")));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let volume = format!("{}_cache-data", p.name);
    let exists = || {
        docker::docker(&["volume", "inspect", &volume])
            .status
            .success()
    };
    assert!(exists());

    p.write_toml(&format!("{}{}", project(&p), web(&p, &v1, "")));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stdout(&o).contains(&format!(
            "kept volume {volume} (remove with `gantry prune --volumes`)"
        )),
        "{}",
        explain(&o)
    );
    assert!(exists());

    let o = p.gantry(&["prune"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(exists(), "plain prune keeps volumes");
    let o = p.gantry(&["prune", "--volumes"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(stderr(&o).contains("refusing"), "{}", explain(&o));
    assert!(exists());
    let o = p.gantry(&["prune", "--volumes", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stdout(&o).contains(&format!("Removed volume {volume}")),
        "{}",
        explain(&o)
    );
    assert!(!exists());
}

/// A health command runs in the container (the test app's `--healthcheck`): the health step
/// waits for the engine's verdict; a revision whose command fails is restored (exit 3), with
/// the command's output in the error.
#[test]
fn a_health_command_gates_the_rollout() {
    if !docker::require_docker("a_health_command_gates_the_rollout") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new("hc", &guard);
    let health = "health = { command = [\"/testapp\", \"--healthcheck\"], interval = \"500ms\", timeout = \"2s\", retries = 2 }";
    let write = |tag: &str, env: &str| {
        p.write_toml(&format!(
            "{}{}",
            project(&p),
            web(&p, tag, "").replace(
                "health = { http = \"/healthz\", interval = \"200ms\", timeout = \"1s\", retries = 5 }",
                health
            ).replace(&format!("VERSION = \"{tag}\""), &format!("VERSION = \"{tag}\"{env}"))
        ))
    };
    write(&v1, "");
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stderr(&o).contains("healthy (health command)"),
        "{}",
        explain(&o)
    );
    let v1_replicas = running_names(&p, "web");
    for c in &v1_replicas {
        assert_eq!(docker::inspect(c, "{{.State.Health.Status}}"), "healthy");
    }

    write(&v2, ", NEVER_HEALTHY = \"1\"");
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 3, "{}", explain(&o));
    assert!(
        stderr(&o).contains("the health command failed"),
        "{}",
        explain(&o)
    );
    assert_eq!(running_names(&p, "web"), v1_replicas);
}

/// Pre-flight refuses an external network missing on the host and a bind source missing
/// there: exit 1, naming the host and what is missing, and nothing created (not even the
/// project's network).
#[test]
fn preflight_refuses_a_missing_network_and_a_missing_bind_path() {
    if !docker::require_docker("preflight_refuses_a_missing_network_and_a_missing_bind_path") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Project::new("pf", &guard);
    let missing_network = format!("{}-nowhere", p.name);
    let missing_path = format!("/nonexistent-{}", p.name);
    for (extra, named) in [
        (
            format!("networks = [\"{missing_network}\"]"),
            format!("joins network `{missing_network}`, which does not exist on host `local`"),
        ),
        (
            format!("volumes = [\"{missing_path}:/data:ro\"]"),
            format!("mounts `{missing_path}` from host `local`, where it does not exist"),
        ),
    ] {
        p.write_toml(&format!("{}{}", project(&p), web(&p, &v1, &extra)));
        let o = p.gantry(&["apply", "--yes"]);
        assert_eq!(code(&o), 1, "{}", explain(&o));
        assert!(stderr(&o).contains(&named), "{}", explain(&o));
        assert!(
            stderr(&o).contains("nothing was changed"),
            "{}",
            explain(&o)
        );
        assert!(p.containers(&[], "{{.Names}}").is_empty());
        assert!(
            !docker::docker(&["network", "inspect", &p.name])
                .status
                .success(),
            "no project network"
        );
    }
}

/// Drift of what can change on a living container: a replica's restart policy changed with
/// `docker update` and another taken off the project network are named by `plan --refresh`
/// (kind `settings-changed`) and by `status`, and `apply --refresh` rolls the service so that
/// every replica runs as configured again.
#[test]
fn settings_changed_behind_gantrys_back_are_drift_that_apply_repairs() {
    if !docker::require_docker("settings_changed_behind_gantrys_back_are_drift_that_apply_repairs")
    {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Project::new("setdrift", &guard);
    p.write_toml(&format!(
        "{}{}",
        project(&p),
        web(
            &p,
            &v1,
            "restart = \"always\"\nresources = { memory = \"64MiB\" }"
        )
    ));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let o = p.gantry(&["plan", "--refresh", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "no drift right after apply: {}", explain(&o));

    let replicas = running_names(&p, "web");
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    docker::docker_ok(&["update", "--restart", "no", &replicas[0]]);
    docker::docker_ok(&[
        "update",
        "--memory",
        "96m",
        "--memory-swap",
        "-1",
        &replicas[0],
    ]);
    docker::docker_ok(&["network", "disconnect", &p.name, &replicas[1]]);

    let o = p.gantry(&["plan", "--refresh", "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let drift: Vec<(String, String)> = plan["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["container"].as_str().unwrap().to_owned(),
                d["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        plan["drift"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["kind"] == "settings-changed"),
        "{drift:#?}"
    );
    let said = |container: &str, start: &str| {
        drift
            .iter()
            .any(|(c, d)| c == container && d.contains(start))
    };
    assert!(
        said(
            &replicas[0],
            "has restart policy `no`; the configuration says `always`"
        ),
        "{drift:#?}"
    );
    assert!(
        said(
            &replicas[0],
            "has memory limit 100663296 bytes; the configuration says 67108864 bytes"
        ),
        "{drift:#?}"
    );
    assert!(
        said(&replicas[1], &format!("is not on network {},", p.name)),
        "{drift:#?}"
    );
    assert_eq!(drift.len(), 3, "{drift:#?}");
    let web = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "service.web")
        .unwrap();
    assert_eq!(web["action"], "replace", "{web:#}");

    let o = p.gantry(&["status"]);
    assert!(
        stdout(&o).contains("has restart policy `no`"),
        "{}",
        explain(&o)
    );

    let o = p.gantry(&["apply", "--refresh", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let now = running_names(&p, "web");
    assert_eq!(now.len(), 2, "{now:?}");
    for c in &now {
        assert!(!replicas.contains(c), "{c} is a new replica");
        assert_eq!(restart_policy(c), "always");
        assert_eq!(docker::inspect(c, "{{.HostConfig.Memory}}"), "67108864");
        assert!(
            docker::inspect(
                c,
                "{{range $n, $v := .NetworkSettings.Networks}}{{$n}} {{end}}"
            )
            .contains(&p.name),
            "{c}"
        );
    }
    let o = p.gantry(&["plan", "--refresh", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "repaired: {}", explain(&o));
    let _ = stderr(&o);
}
