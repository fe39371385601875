//! The images of the application-stack tests: real redis, a Python web app that keeps a
//! counter in it, and a stand-in for seed 000's Datadog agent, all from one Debian base
//! ([`super::debian`]) with no registry. The programs are `testapp/stack/` (see its
//! README).
//!
//! ```ignore
//! if !debian::require_debian_images("my_test") {
//!     return;
//! }
//! let guard = DockerTestGuard::new();
//! let images = stack::stack_images(); // ~35 s the first time in a process, then cached
//! // gantry: image = images.redis, health.command = stack::REDIS_HEALTH, ...
//! ```
//!
//! | image | runs | health command |
//! |---|---|---|
//! | `redis` | `redis-server` on 6379 (`--protected-mode no` added, as the official image does; `command = ["redis-server", "--appendonly", "yes", "--dir", "/data"]` works) | [`REDIS_HEALTH`] |
//! | `web` | `app serve`: `testapp/stack/web.py` on `PORT` (8080), redis at `REDIS_HOST` (`redis`); `VERSION=v1` | [`WEB_HEALTH`] |
//! | [`web_release`]`(v)` | the same with `VERSION=v` (a distinct image ID per version) | [`WEB_HEALTH`] |
//! | `web_unhealthy` | the same with `VERSION=unhealthy NEVER_HEALTHY=1`: `/healthz` answers 503, so [`WEB_HEALTH`] fails while the app serves | [`WEB_HEALTH`] |
//! | `agent` | `testapp/stack/agent.py`: DogStatsD echo on UDP 8125, HTTP 200 on TCP 8126 reporting datagrams and `/host/proc` | [`AGENT_HEALTH`] |
//!
//! A bad release in a test is `web_unhealthy`: the health command is the service's, set in
//! gantry's configuration, so what makes it fail must be in the image, as it would be in a
//! real broken release. `NEVER_HEALTHY=1` in a service's `env` does the same to `web`.
#![allow(dead_code)]

use super::debian::{debian_image, derived_image};

/// The Debian packages of the one base image: redis-server (which brings redis-tools, i.e.
/// `redis-cli`) and python3. The web app speaks RESP over a socket itself, so no
/// python3-redis.
pub const BASE_PACKAGES: &[&str] = &["python3", "redis-server"];

/// Health command of the redis image (exit 0 when redis answers).
pub const REDIS_HEALTH: [&str; 2] = ["redis-cli", "ping"];
/// Health command of the web images: GETs `http://127.0.0.1:$PORT/healthz`, exit 0 on 2xx.
pub const WEB_HEALTH: [&str; 2] = ["app", "--healthcheck"];
/// Health command of the agent image: GETs its TCP port, exit 0 on 200.
pub const AGENT_HEALTH: [&str; 2] = ["agent", "--healthcheck"];

/// The port the web app listens on unless `PORT` (or `app serve --port N`) says otherwise.
pub const WEB_PORT: u16 = 8080;
/// The agent's DogStatsD port (UDP).
pub const AGENT_UDP_PORT: u16 = 8125;
/// The agent's APM port (TCP, HTTP).
pub const AGENT_TCP_PORT: u16 = 8126;

const WEB_PY: &[u8] = include_bytes!("../../../testapp/stack/web.py");
const AGENT_PY: &[u8] = include_bytes!("../../../testapp/stack/agent.py");
const REDIS_ENTRYPOINT: &[u8] = include_bytes!("../../../testapp/stack/redis-entrypoint");

/// Image references of one stack (all carry the run label; built once per process).
#[derive(Clone, Debug)]
pub struct StackImages {
    pub redis: String,
    /// `web_release("v1")`.
    pub web: String,
    pub web_unhealthy: String,
    pub agent: String,
}

/// Builds (or finds) the stack's images. Needs a live `DockerTestGuard`; call
/// `debian::require_debian_images` first.
pub fn stack_images() -> StackImages {
    StackImages {
        redis: redis_image(),
        web: web_release("v1"),
        web_unhealthy: web_image("VERSION=unhealthy NEVER_HEALTHY=1"),
        agent: agent_image(),
    }
}

/// The Debian base of every stack image.
pub fn base_image() -> String {
    debian_image(BASE_PACKAGES)
}

pub fn redis_image() -> String {
    derived_image(
        "redis",
        &base_image(),
        &[
            ("/usr/local/bin/redis-entrypoint", REDIS_ENTRYPOINT),
            ("/data/", b""),
        ],
        &[
            "WORKDIR /data",
            r#"ENTRYPOINT ["redis-entrypoint"]"#,
            r#"CMD ["redis-server"]"#,
        ],
    )
}

/// The web app reporting `version` (`VERSION` baked in; a distinct image ID per version).
pub fn web_release(version: &str) -> String {
    assert!(
        !version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "web version {version:?}: letters, digits, '.', '_', '-'"
    );
    web_image(&format!("VERSION={version}"))
}

pub fn web_image(env: &str) -> String {
    derived_image(
        "web",
        &base_image(),
        &[("/usr/local/bin/app", WEB_PY)],
        &[
            &format!("ENV PORT={WEB_PORT} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 {env}"),
            &format!("EXPOSE {WEB_PORT}"),
            r#"CMD ["app", "serve"]"#,
        ],
    )
}

pub fn agent_image() -> String {
    derived_image(
        "agent",
        &base_image(),
        &[("/usr/local/bin/agent", AGENT_PY)],
        &[
            "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
            &format!("EXPOSE {AGENT_UDP_PORT}/udp {AGENT_TCP_PORT}"),
            r#"CMD ["agent"]"#,
        ],
    )
}
