//! `gantry apply` against the real Docker engine, with the test application image
//! (tests/it/support, testapp/). Order is checked from the engine's own container
//! timestamps, not from gantry's log. Skipped (with a message) without Docker locally; fails
//! under CI.

mod failures;
mod operations;
mod rollout;
mod stack;

use std::ops::Deref;

use crate::support::docker::{self, DockerTestGuard};
use crate::support::project::Project;

/// A project of three replicas of the test app (see [`Web::write`]).
struct Web(Project);

impl Deref for Web {
    type Target = Project;
    fn deref(&self) -> &Project {
        &self.0
    }
}

impl Web {
    fn new(guard: &DockerTestGuard, tag: &str) -> Web {
        let p = Web(Project::new("t", guard));
        p.write(tag, "", "");
        p
    }

    /// Three replicas of the test app, start-first, batch 1, with a health check.
    fn write(&self, tag: &str, extra_env: &str, extra: &str) {
        self.write_toml(&format!(
            r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 3
port = 8080
env = {{ VERSION = "{tag}"{extra_env} }}
labels = {labels}
stop_grace_period = "5s"
health = {{ http = "/healthz", interval = "200ms", timeout = "1s", retries = 5 }}
rollout = {{ batch = 1, order = "start-first", soak = "300ms" }}
{extra}
"#,
            name = self.name,
            labels = self.labels
        ));
    }

    /// The names of the project's containers (and `extra_filter`'s, unless empty), sorted.
    fn containers(&self, extra_filter: &str) -> Vec<String> {
        self.0.containers(&[extra_filter], "{{.Names}}")
    }
}

fn timestamp(container: &str, field: &str) -> String {
    docker::inspect(container, &format!("{{{{.State.{field}}}}}"))
}

fn images() -> (String, String) {
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    (tags[0].clone(), tags[1].clone())
}
