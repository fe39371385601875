//! Pre-flight: everything checked before the first change (images present or pulled, one
//! image per tag across hosts, secrets and env files readable, host ports free), and whether
//! a saved plan still applies. A failure here leaves the engines untouched.

use std::collections::BTreeMap;

use super::Error;
use crate::drivers::credentials::{self, Found};
use crate::engine::Target;
use crate::plan::{Action, Plan, Spec};
use crate::ports::{ContainerRuntime, labels};
use crate::state::State;

/// The environment resolved per service (`KEY=value`, secrets included), the image ID per
/// image reference, and the registry digest (`repo@sha256:...`) of those pulled.
pub type Resolved = (
    BTreeMap<String, Vec<String>>,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
);

/// Enough ports of a fixed range are free for every replica the plan starts: ports of the
/// service's own containers (running, or kept stopped for rollback) are never reused, and the
/// rest must be bindable now.
fn host_ports_free<R: ContainerRuntime>(
    c: &crate::plan::ResourceChange,
    spec: &crate::model::ServiceSpec,
    range: crate::model::PortRange,
    state: &State,
    hosts: &BTreeMap<String, Target<R>>,
) -> Result<(), Error> {
    let used: Vec<u16> = state
        .services
        .get(&c.address.name)
        .map(|s| s.replicas.iter().filter_map(|r| r.host_port).collect())
        .unwrap_or_default();
    for host in &spec.hosts {
        let needed: usize = c
            .steps
            .iter()
            .filter(|s| s.host.as_deref() == Some(host.as_str()))
            .map(|s| match &s.op {
                crate::plan::StepOp::Start { replicas } => replicas.len(),
                _ => 0,
            })
            .sum();
        let Some(address) = hosts.get(host).map(|t| t.address.clone()) else {
            continue;
        };
        let free = (range.start..=range.end)
            .filter(|p| {
                !used.contains(p)
                    && (!local(&address)
                        || std::net::TcpListener::bind((address.as_str(), *p)).is_ok())
            })
            .count();
        if free < needed {
            return Err(Error::Message(format!(
                "pre-flight: {} needs {needed} free host port(s) in {range} on host `{host}` ({address}), but only {free} are free (ports of its own containers, running or kept for rollback, are not reused); nothing was changed",
                c.address
            )));
        }
    }
    Ok(())
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Whether a host address is this machine's, where a port can be tried by binding it.
fn local(address: &str) -> bool {
    address == "localhost"
        || address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// Why a saved plan no longer applies, if it does not.
pub fn stale(plan: &Plan, state: Option<&State>, config_sha256: &str) -> Option<String> {
    let (lineage, serial) = (
        state.map(|s| s.lineage.clone()),
        state.map_or(0, |s| s.serial),
    );
    if plan.prior.lineage != lineage {
        return Some(format!(
            "it was made against state lineage {:?}, the state now has {:?}",
            plan.prior.lineage, lineage
        ));
    }
    if plan.prior.serial != serial {
        return Some(format!(
            "it was made against state serial {}, the state is now at serial {serial}",
            plan.prior.serial
        ));
    }
    if plan.config_sha256 != config_sha256 {
        return Some("the configuration (or an env file it names) changed since".into());
    }
    None
}

/// Checks images, secrets and ports before anything is touched; returns the resolved
/// environment per service and the image IDs.
pub async fn preflight<R: ContainerRuntime>(
    plan: &Plan,
    state: &State,
    hosts: &BTreeMap<String, Target<R>>,
    config_dir: &std::path::Path,
    pinned: &BTreeMap<String, (String, String)>,
    registries: &BTreeMap<String, crate::model::registry::Registry>,
) -> Result<Resolved, Error> {
    let mut credentials: BTreeMap<String, Option<Found>> = BTreeMap::new();
    // Image reference -> `repo@sha256:...`, from the first host that pulled it.
    let mut digests: BTreeMap<String, String> = BTreeMap::new();
    let mut env = BTreeMap::new();
    let mut image_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut checked: std::collections::BTreeSet<(String, String)> = Default::default();
    for c in &plan.changes {
        let Some(Spec::Service(spec)) = &c.after else {
            continue;
        };
        if let Some(range) = spec.host_ports {
            host_ports_free(c, spec, range, state, hosts)?;
        }
        let lines = service_env(config_dir, &c.address.to_string(), spec)?;
        env.insert(c.address.name.clone(), lines);
        // A task that runs needs its service's image even when the service is unchanged.
        if c.action == Action::NoOp && !runs_task(plan, &c.address.name) {
            continue;
        }
        // Hosts without the image, pulled below.
        let mut missing: Vec<(&String, &Target<R>)> = Vec::new();
        for host in &spec.hosts {
            if !checked.insert((host.clone(), spec.image.clone())) {
                continue;
            }
            let Some(t) = hosts.get(host) else {
                return Err(Error::Message(format!(
                    "pre-flight: {} runs on host `{host}`, which is not connected",
                    c.address
                )));
            };
            if spec.runtime == crate::model::Runtime::Swarm
                && let Some(swarm) = &t.swarm
            {
                // The nodes pull, with what the manager is given (`--with-registry-auth`).
                let registry = credentials::registry_host(&spec.image);
                if let Some(found) = resolve(
                    &mut credentials,
                    &registry,
                    registries,
                    &c.address,
                    &spec.image,
                )
                .await?
                {
                    swarm.use_registry_auth(&registry, &found.auth);
                }
            }
            if let Some((id, recorded)) = pinned.get(&spec.image) {
                // A rollback runs exactly the recorded image and never pulls.
                match t
                    .runtime
                    .image_id(id)
                    .await
                    .map_err(|e| Error::Message(format!("pre-flight: {e}")))?
                {
                    Some(_) => {
                        image_ids.insert(spec.image.clone(), id.clone());
                        continue;
                    }
                    None => {
                        return Err(Error::Message(format!(
                            "pre-flight: image {id} (`{}`, recorded in {recorded}) is not on host `{host}` any more; a rollback does not pull. Load it there (`docker load`) or roll back to another revision; nothing was changed",
                            spec.image
                        )));
                    }
                }
            }
            match t
                .runtime
                .image_id(&spec.image)
                .await
                .map_err(|e| Error::Message(format!("pre-flight: {e}")))?
            {
                Some(id) => one_image(&mut image_ids, &spec.image, host, id)?,
                None => missing.push((host, t)),
            }
        }
        let Some((first, rest)) = missing.split_first() else {
            continue;
        };
        let registry = credentials::registry_host(&spec.image);
        let found = resolve(
            &mut credentials,
            &registry,
            registries,
            &c.address,
            &spec.image,
        )
        .await?;
        let how = match &found {
            Some(f) if f.auth.username.is_empty() => {
                format!("with an identity token from {}", f.source)
            }
            Some(f) => format!("as `{}` (credentials from {})", f.auth.username, f.source),
            None => "without credentials".to_string(),
        };
        let auth = found.as_ref().map(|f| &f.auth);
        let failed = |host: &str, e: crate::ports::RuntimeError| {
            Error::Message(format!(
                "pre-flight: {} on host `{host}`: pull from registry `{registry}` {how} failed: {e}; nothing was changed",
                c.address
            ))
        };
        // The first host resolves the tag; the others pull that digest, all at once, so
        // that every host runs the same image even if the tag moves meanwhile.
        let rest = if digests.contains_key(&spec.image) {
            &missing[..]
        } else {
            let pulled = first
                .1
                .runtime
                .pull(&spec.image, auth)
                .await
                .map_err(|e| failed(first.0, e))?;
            if let Some(d) = pulled.repo_digest {
                digests.insert(spec.image.clone(), d);
            }
            one_image(&mut image_ids, &spec.image, first.0, pulled.id)?;
            rest
        };
        let reference = match digests.get(&spec.image) {
            Some(d) if credentials::split_reference(&spec.image).2.is_none() => {
                let digest = d.split_once('@').map_or(d.as_str(), |(_, d)| d);
                format!("{}@{digest}", spec.image)
            }
            _ => spec.image.clone(),
        };
        let pulls = rest.iter().map(|(host, t)| {
            let reference = reference.as_str();
            async move { (*host, t.runtime.pull(reference, auth).await) }
        });
        for (host, result) in futures_util::future::join_all(pulls).await {
            let pulled = result.map_err(|e| failed(host, e))?;
            one_image(&mut image_ids, &spec.image, host, pulled.id)?;
        }
    }
    for c in &plan.changes {
        let Some(Spec::Service(spec)) = &c.after else {
            continue;
        };
        if c.action == Action::NoOp {
            continue;
        }
        container_options_hold(c, spec, state, hosts, &image_ids, &plan.project).await?;
    }
    Ok((env, image_ids, digests))
}

/// Records that `image` is image `id` on `host`. One release runs one image everywhere: a tag
/// that names different images on different hosts is refused rather than mixed.
fn one_image(
    image_ids: &mut BTreeMap<String, String>,
    image: &str,
    host: &str,
    id: String,
) -> Result<(), Error> {
    match image_ids.get(image) {
        Some(other) if *other != id => Err(Error::Message(format!(
            "pre-flight: `{image}` is image {} on host `{host}` but {} on another host; push the same image to every host (or pin it by digest); nothing was changed",
            short_id(&id),
            short_id(other)
        ))),
        _ => {
            image_ids.insert(image.to_string(), id);
            Ok(())
        }
    }
}

/// The credentials for pulls from `registry`, looked up once per run (see
/// [`credentials::lookup`]); `what` needs `image`.
async fn resolve(
    cache: &mut BTreeMap<String, Option<Found>>,
    registry: &str,
    registries: &BTreeMap<String, crate::model::registry::Registry>,
    what: &impl std::fmt::Display,
    image: &str,
) -> Result<Option<Found>, Error> {
    if let Some(found) = cache.get(registry) {
        return Ok(found.clone());
    }
    let env = |k: &str| std::env::var(k).ok();
    let found = credentials::lookup(registry, registries.get(registry), &env)
        .await
        .map_err(|e| {
            Error::Message(format!(
                "pre-flight: {what} needs `{image}`: {e}; nothing was changed"
            ))
        })?;
    cache.insert(registry.to_string(), found.clone());
    Ok(found)
}

/// What the engines of a service's hosts must offer for its container options: the
/// networks of `networks` (for a Swarm service: swarm-scoped ones, see
/// [`swarm_networks_hold`]), the host paths it bind-mounts, and the host ports of `publish`
/// (free, or held by the service's own replicas, which a stop-first roll stops first).
async fn container_options_hold<R: ContainerRuntime>(
    c: &crate::plan::ResourceChange,
    spec: &crate::model::ServiceSpec,
    state: &State,
    hosts: &BTreeMap<String, Target<R>>,
    image_ids: &BTreeMap<String, String>,
    project: &str,
) -> Result<(), Error> {
    let fail = |e: crate::ports::RuntimeError| Error::Message(format!("pre-flight: {e}"));
    for host in &spec.hosts {
        let Some(t) = hosts.get(host) else {
            continue;
        };
        if spec.runtime == crate::model::Runtime::Swarm {
            if let Some(swarm) = &t.swarm {
                swarm_networks_hold(c, spec, host, swarm.as_ref(), project).await?;
            }
            continue;
        }
        for network in &spec.networks {
            if !t.runtime.network_exists(network).await.map_err(fail)? {
                return Err(Error::Message(format!(
                    "pre-flight: {} joins network `{network}`, which does not exist on host `{host}`; create it there (`docker network create {network}`) or take it out of `networks`; nothing was changed",
                    c.address
                )));
            }
        }
        let binds: Vec<String> = spec
            .volumes
            .iter()
            .filter_map(|m| match &m.source {
                crate::model::MountSource::Bind(path) => Some(path.clone()),
                crate::model::MountSource::Volume(_) => None,
            })
            .collect();
        if !binds.is_empty() {
            let image = image_ids
                .get(&spec.image)
                .cloned()
                .unwrap_or_else(|| spec.image.clone());
            let missing = t
                .runtime
                .missing_paths(&image, &binds)
                .await
                .map_err(fail)?;
            if let Some(path) = missing.first() {
                return Err(Error::Message(format!(
                    "pre-flight: {} mounts `{path}` from host `{host}`, where it does not exist; create it there or change `volumes` (bind mounts take existing absolute host paths); nothing was changed",
                    c.address
                )));
            }
        }
        let starts = c.steps.iter().any(|s| {
            s.host.as_deref() == Some(host.as_str())
                && matches!(s.op, crate::plan::StepOp::Start { .. })
        });
        if spec.publish.is_empty() || !starts {
            continue;
        }
        let containers = t.runtime.list(&[]).await.map_err(fail)?;
        // The service's own: gantry's labels, or a replica the state records by ID (one
        // `gantry adopt` took over carries no label of gantry's).
        let recorded = state.services.get(&c.address.name);
        let own = |info: &crate::ports::ContainerInfo| {
            (info.labels.get(labels::PROJECT) == Some(&state.project)
                && info.labels.get(labels::SERVICE) == Some(&c.address.name))
                || recorded.is_some_and(|s| {
                    s.replicas
                        .iter()
                        .any(|r| r.host == *host && r.container_id == info.id)
                })
        };
        let own_running = containers
            .iter()
            .any(|i| own(i) && i.state == crate::ports::ContainerState::Running);
        for p in &spec.publish {
            if let Some(other) = containers.iter().find(|i| {
                !own(i)
                    && i.state == crate::ports::ContainerState::Running
                    && i.host_port == Some(p.host_port)
            }) {
                return Err(Error::Message(format!(
                    "pre-flight: {} publishes host port {} (`{p}`) on host `{host}`, but container `{}` publishes it already; stop it or choose another port; nothing was changed",
                    c.address,
                    p.host_port,
                    other.name.trim_start_matches('/')
                )));
            }
            // On this machine the port itself can be tried: another process may hold it.
            if local(&t.address) && !own_running && !bindable(p) {
                return Err(Error::Message(format!(
                    "pre-flight: {} publishes host port {}/{} (`{p}`) on host `{host}`, but it is in use there; free it or choose another port; nothing was changed",
                    c.address,
                    p.host_port,
                    p.protocol.word()
                )));
            }
        }
    }
    Ok(())
}

/// Whether the host port of `p` can be bound on this machine now.
fn bindable(p: &crate::model::Publish) -> bool {
    let ip = p.host_ip.as_deref().unwrap_or("0.0.0.0");
    match p.protocol {
        crate::model::Protocol::Tcp => std::net::TcpListener::bind((ip, p.host_port)).is_ok(),
        crate::model::Protocol::Udp => std::net::UdpSocket::bind((ip, p.host_port)).is_ok(),
    }
}

/// The networks a Swarm service joins on its manager `host`: its `networks` must exist and be
/// swarm-scoped, and the project's overlay network must not be a local network of that name.
async fn swarm_networks_hold(
    c: &crate::plan::ResourceChange,
    spec: &crate::model::ServiceSpec,
    host: &str,
    swarm: &dyn crate::ports::SwarmApi,
    project: &str,
) -> Result<(), Error> {
    if spec.network_mode != crate::model::NetworkMode::Project {
        return Ok(());
    }
    let project_net = crate::drivers::swarm::network_name(project);
    if let Some(scope) = swarm.network_scope(&project_net).await.ok().flatten()
        && scope != "swarm"
    {
        return Err(Error::Message(format!(
            "pre-flight: {} joins the project's overlay network {project_net} on host `{host}`, but a network of that name has scope `{scope}`; remove it (`docker network rm {project_net}`); nothing was changed",
            c.address
        )));
    }
    for net in &spec.networks {
        if let Err(e) = crate::drivers::swarm::check_network(swarm, host, net).await {
            return Err(Error::Message(format!(
                "pre-flight: {}: {e}; nothing was changed",
                c.address
            )));
        }
    }
    Ok(())
}

/// Whether a task of `service` runs in `plan`.
fn runs_task(plan: &Plan, service: &str) -> bool {
    plan.changes.iter().any(|c| {
        c.action == Action::Run && matches!(&c.after, Some(Spec::Task(t)) if t.service == service)
    })
}

/// The environment of `spec`'s containers, `KEY=value`: `env`, then the `env_file` read from
/// beside the configuration, then each `secret_env` from gantry's environment (which must
/// set it). `what` names the resource in errors.
pub(super) fn service_env(
    config_dir: &std::path::Path,
    what: &str,
    spec: &crate::model::ServiceSpec,
) -> Result<Vec<String>, Error> {
    let mut lines: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(f) = &spec.env_file {
        let path = config_dir.join(&f.path);
        for item in dotenvy::from_path_iter(&path).map_err(|_| {
            Error::Message(format!(
                "pre-flight: cannot read env_file {}",
                path.display()
            ))
        })? {
            let (k, v) = item.map_err(|_| {
                Error::Message(format!(
                    "pre-flight: env_file {} is malformed",
                    path.display()
                ))
            })?;
            lines.push(format!("{k}={v}"));
        }
    }
    for name in &spec.secret_env {
        match std::env::var(name) {
            Ok(v) => lines.push(format!("{name}={v}")),
            Err(_) => {
                return Err(Error::Message(format!(
                    "pre-flight: {what} needs secret `{name}` from gantry's environment, and it is not set; nothing was changed"
                )));
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ContainerSpec;
    use crate::testing::FakeRuntime;

    const TOML: &str = r#"[project]
name = "p"

[service.agent]
image = "agent:1"
volumes = ["/var/run/docker.sock:/var/run/docker.sock:ro", "/srv/agent:/data"]
networks = ["shared"]
publish = ["8125:8125/udp", "10.0.0.1:8126:8126"]
rollout = { order = "stop-first" }
"#;

    fn hosts(rt: &FakeRuntime) -> BTreeMap<String, Target<FakeRuntime>> {
        BTreeMap::from([(
            "local".to_string(),
            Target {
                runtime: rt.clone(),
                address: "10.0.0.1".to_string(),
                swarm: None,
            },
        )])
    }

    /// A world where everything the agent needs is there: its image and its network.
    async fn world() -> (FakeRuntime, Plan, State) {
        let rt = FakeRuntime::new();
        rt.add_image("agent:1");
        rt.ensure_network("shared", &BTreeMap::new()).await.unwrap();
        let model = crate::testing::model(TOML);
        let state = State::empty("p", "lineage".into());
        let plan = crate::plan::plan(&model, Some(&state), "sha");
        (rt, plan, state)
    }

    async fn check(rt: &FakeRuntime, plan: &Plan, state: &State) -> Result<Resolved, Error> {
        preflight(
            plan,
            state,
            &hosts(rt),
            std::path::Path::new("."),
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .await
    }

    fn message(r: Result<Resolved, Error>) -> String {
        match r {
            Err(Error::Message(m)) => m,
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => panic!("pre-flight passed"),
        }
    }

    /// A running container publishing `port`, with `labels`.
    async fn squatter(rt: &FakeRuntime, name: &str, port: u16, labels: &[(&str, &str)]) {
        let spec = ContainerSpec {
            name: name.into(),
            image: "agent:1".into(),
            command: None,
            env: Vec::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            port: Some(port),
            host_port: Some(port),
            host_ip: "10.0.0.1".into(),
            memory_bytes: None,
            cpus: None,
            log_max_size: None,
            log_max_files: None,
            stop_grace: std::time::Duration::from_secs(1),
            image_ref: None,
            options: Default::default(),
        };
        let id = rt.create(&spec).await.unwrap();
        rt.start(&id).await.unwrap();
    }

    #[tokio::test]
    async fn passes_when_networks_paths_and_ports_are_there() {
        let (rt, plan, state) = world().await;
        check(&rt, &plan, &state).await.unwrap();
        // Checking changed nothing.
        assert!(rt.containers().is_empty());
    }

    #[tokio::test]
    async fn a_missing_external_network_is_named_with_its_host() {
        let (_, plan, state) = world().await;
        let rt = FakeRuntime::new();
        rt.add_image("agent:1");
        let m = message(check(&rt, &plan, &state).await);
        assert!(
            m.contains(
                "service.agent joins network `shared`, which does not exist on host `local`"
            ),
            "{m}"
        );
        assert!(m.contains("nothing was changed"), "{m}");
        assert!(rt.networks().is_empty());
    }

    #[tokio::test]
    async fn a_missing_bind_source_is_named_with_its_host() {
        let (rt, plan, state) = world().await;
        rt.remove_host_path("/srv/agent");
        let m = message(check(&rt, &plan, &state).await);
        assert!(
            m.contains(
                "service.agent mounts `/srv/agent` from host `local`, where it does not exist"
            ),
            "{m}"
        );
        assert!(rt.containers().is_empty());
    }

    #[tokio::test]
    async fn a_publish_port_held_by_another_container_is_refused() {
        let (rt, plan, state) = world().await;
        squatter(&rt, "other-app", 8126, &[]).await;
        let m = message(check(&rt, &plan, &state).await);
        assert!(
            m.contains("publishes host port 8126 (`10.0.0.1:8126:8126`) on host `local`, but container `other-app` publishes it already"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn a_publish_port_held_by_the_service_itself_is_fine() {
        let (rt, plan, state) = world().await;
        squatter(
            &rt,
            "p-agent-1-1",
            8126,
            &[("dev.gantry.project", "p"), ("dev.gantry.service", "agent")],
        )
        .await;
        check(&rt, &plan, &state).await.unwrap();
    }

    /// An adopted replica (`gantry adopt`: no gantry label, recorded by ID) holds the port
    /// as the service's own: a stop-first roll stops it first, so pre-flight lets it be.
    #[tokio::test]
    async fn a_publish_port_held_by_an_adopted_replica_is_fine() {
        let (rt, plan, mut state) = world().await;
        squatter(&rt, "compose-agent-1", 8126, &[]).await;
        let id = rt.by_name("compose-agent-1").unwrap().id;
        let model = crate::testing::model(TOML);
        state.services.insert(
            "agent".into(),
            crate::state::ServiceState {
                spec: model.services["agent"].clone(),
                revision: 1,
                replicas: vec![crate::state::Replica {
                    index: 1,
                    host: "local".into(),
                    name: "compose-agent-1".into(),
                    container_id: id,
                    image_id: None,
                    revision: 1,
                    host_port: None,
                    status: crate::state::ReplicaStatus::Running,
                }],
                old_colour: None,
            },
        );
        check(&rt, &plan, &state).await.unwrap();
        // A container of the same name on no record is still a stranger.
        state.services.clear();
        let m = message(check(&rt, &plan, &state).await);
        assert!(
            m.contains("container `compose-agent-1` publishes it already"),
            "{m}"
        );
    }

    /// A world with `registry.example/app:1` in the fake registry, which wants a login, and
    /// a config whose `[registry]` section reads its password from `variable`.
    async fn private(variable: &str) -> (FakeRuntime, Plan, State, crate::model::Model) {
        let rt = FakeRuntime::new();
        rt.add_to_registry("registry.example/app:1");
        let model = crate::testing::model(&format!(
            "[project]\nname = \"p\"\n\n[service.app]\nimage = \"registry.example/app:1\"\n\n[registry.\"registry.example\"]\nusername = \"ci\"\npassword_env = \"{variable}\"\n"
        ));
        let state = State::empty("p", "lineage".into());
        let plan = crate::plan::plan(&model, Some(&state), "sha");
        (rt, plan, state, model)
    }

    async fn check_with(
        rt: &FakeRuntime,
        plan: &Plan,
        state: &State,
        model: &crate::model::Model,
    ) -> Result<Resolved, Error> {
        preflight(
            plan,
            state,
            &hosts(rt),
            std::path::Path::new("."),
            &BTreeMap::new(),
            &model.registries,
        )
        .await
    }

    // The tests cannot set a variable (that is unsafe, and the tests share one process):
    // `PATH` is set wherever they run, and serves as the password.
    #[tokio::test]
    async fn a_pull_presents_the_config_sections_credentials() {
        let (rt, plan, state, model) = private("PATH").await;
        rt.require_login("ci", &std::env::var("PATH").unwrap());
        check_with(&rt, &plan, &state, &model).await.unwrap();
        assert_eq!(
            rt.pulls(),
            vec![("registry.example/app:1".to_string(), Some("ci".to_string()))]
        );
    }

    #[tokio::test]
    async fn a_refused_login_names_the_registry_and_not_the_password() {
        let (rt, plan, state, model) = private("PATH").await;
        rt.require_login("ci", "another-password");
        let m = message(check_with(&rt, &plan, &state, &model).await);
        assert!(
            m.contains("pull from registry `registry.example` as `ci`"),
            "{m}"
        );
        assert!(
            m.contains("unauthorized") && m.contains("nothing was changed"),
            "{m}"
        );
        assert!(!m.contains(&std::env::var("PATH").unwrap()), "{m}");
        assert!(rt.containers().is_empty());
    }

    #[tokio::test]
    async fn an_unset_password_variable_is_a_pre_flight_error_naming_the_registry() {
        let (rt, plan, state, model) = private("GANTRY_UNIT_SURELY_UNSET_PASSWORD").await;
        let m = message(check_with(&rt, &plan, &state, &model).await);
        assert!(
            m.contains("registry `registry.example`")
                && m.contains("$GANTRY_UNIT_SURELY_UNSET_PASSWORD, which is not set"),
            "{m}"
        );
        assert!(rt.pulls().is_empty(), "nothing was pulled");
    }

    /// Pulls on several hosts (issue 14): the first host resolves the tag, the others pull
    /// that digest, so that a tag moved in between does not split the release.
    #[tokio::test]
    async fn the_other_hosts_pull_the_digest_the_first_resolved() {
        let (a, b) = (FakeRuntime::new(), FakeRuntime::new());
        let id = a.add_to_registry("registry.example/app:1");
        b.add_to_registry("registry.example/app:1");
        let moved = b.move_tag_in_registry("registry.example/app:1");
        assert_ne!(moved, id);
        let model = crate::testing::model(
            "[project]\nname = \"p\"\n\n[[host]]\nname = \"a\"\ndocker = \"unix:///run/a.sock\"\naddress = \"10.0.0.1\"\n\n[[host]]\nname = \"b\"\ndocker = \"unix:///run/b.sock\"\naddress = \"10.0.0.2\"\n\n[service.app]\nimage = \"registry.example/app:1\"\nhosts = [\"a\", \"b\"]\n",
        );
        let state = State::empty("p", "lineage".into());
        let plan = crate::plan::plan(&model, Some(&state), "sha");
        let target = |rt: &FakeRuntime, address: &str| Target {
            runtime: rt.clone(),
            address: address.to_string(),
            swarm: None,
        };
        let hosts = BTreeMap::from([
            ("a".to_string(), target(&a, "10.0.0.1")),
            ("b".to_string(), target(&b, "10.0.0.2")),
        ]);
        let (_, ids, digests) = preflight(
            &plan,
            &state,
            &hosts,
            std::path::Path::new("."),
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        assert_eq!(ids.get("registry.example/app:1"), Some(&id));
        assert!(
            digests["registry.example/app:1"].starts_with("registry.example/app@sha256:"),
            "{digests:?}"
        );
        assert_eq!(
            b.image_id("registry.example/app:1").await.unwrap(),
            Some(id)
        );
        let pulled: Vec<String> = b.pulls().into_iter().map(|(r, _)| r).collect();
        assert_eq!(pulled.len(), 1);
        assert!(
            pulled[0].starts_with("registry.example/app:1@sha256:"),
            "{pulled:?}"
        );
    }

    /// A Swarm service's nodes pull: the manager gets the credentials of its registry
    /// (`--with-registry-auth`), even when the manager holds the image already.
    #[tokio::test]
    async fn a_swarm_manager_gets_the_credentials_of_the_services_registry() {
        let rt = FakeRuntime::new();
        rt.add_image("registry.example/app:1");
        let swarm = crate::testing::FakeSwarm::new();
        let model = crate::testing::model(
            "[project]\nname = \"p\"\n\n[service.app]\nimage = \"registry.example/app:1\"\nruntime = \"swarm\"\n\n[registry.\"registry.example\"]\nusername = \"ci\"\npassword_env = \"PATH\"\n",
        );
        let state = State::empty("p", "lineage".into());
        let plan = crate::plan::plan(&model, Some(&state), "sha");
        let hosts = BTreeMap::from([(
            "local".to_string(),
            Target {
                runtime: rt.clone(),
                address: "10.0.0.1".to_string(),
                swarm: Some(Box::new(swarm.clone()) as Box<dyn crate::ports::SwarmApi>),
            },
        )]);
        preflight(
            &plan,
            &state,
            &hosts,
            std::path::Path::new("."),
            &BTreeMap::new(),
            &model.registries,
        )
        .await
        .unwrap();
        assert_eq!(
            swarm.registry_auths(),
            BTreeMap::from([("registry.example".to_string(), "ci".to_string())])
        );
        assert!(rt.pulls().is_empty(), "the manager had the image");
    }
}
