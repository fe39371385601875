//! `gantry adopt`: takes over running containers gantry did not create, without touching
//! them. It finds them (a Compose project's, a stack's Swarm services, or containers named on
//! the command line), asks each load balancer of their services whom it sends to, lets the
//! pure core ([`crate::state::adopt`]) match all of it against the configuration, shows what
//! it will record, asks, and under the lock writes the state once: the adopted containers
//! become the current revision (origin `adopt`), so that the next `gantry apply` rolls them
//! like any revision and `gantry rollback` can come back to them.

use std::collections::BTreeMap;
use std::io::Write;

use super::outcome::{Choices, Outcome};
use super::session::{Session, confirm_with, connect, now};
use super::{Common, Error, emit, load};
use crate::ports::{ContainerInfo, ContainerRuntime, ContainerState};
use crate::state::adopt::{Candidate, Inputs, LbMembers, SwarmCandidate};

/// Compose's labels on the containers of a project.
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";
const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";

/// Which running containers to take over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The containers of a Compose project (default: the configuration's project name).
    Compose(Option<String>),
    /// The Swarm services of a stack (`docker stack deploy`).
    Stack(String),
    /// Containers by name or ID, per service: `web=api-1,api-2`.
    Containers(Vec<(String, Vec<String>)>),
}

#[derive(Debug, Clone)]
pub struct AdoptOptions {
    pub selection: Selection,
    /// Do not ask for confirmation.
    pub yes: bool,
}

/// Parses `SERVICE=NAME[,NAME...]` (`--container`).
pub fn parse_container_arg(arg: &str) -> Result<(String, Vec<String>), String> {
    let (service, names) = arg
        .split_once('=')
        .ok_or_else(|| format!("`{arg}`: expected SERVICE=CONTAINER[,CONTAINER...]"))?;
    let names: Vec<String> = names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if service.trim().is_empty() || names.is_empty() {
        return Err(format!(
            "`{arg}`: expected SERVICE=CONTAINER[,CONTAINER...]"
        ));
    }
    Ok((service.trim().to_string(), names))
}

pub fn adopt(
    common: &Common,
    opts: &AdoptOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let model = &loaded.model;
    let session = Session::new(common)?;
    if let Some(journal) = session.pending()? {
        return Err(Choices::error(&journal));
    }
    if let Some(journal) = session.held()? {
        return Err(Choices::error(&journal));
    }
    let state_dir = session.state_dir();
    let prior = state_dir.read()?;
    let lbs = crate::drivers::lb::drivers(model, prior.as_ref(), &common.config_dir());

    let inputs = session.block_on(async {
        let hosts = connect(model).await?;
        let mut problems = Vec::new();
        let mut candidates = Vec::new();
        let mut swarm = Vec::new();
        let mut image_ids = BTreeMap::new();
        match &opts.selection {
            Selection::Compose(project) => {
                let project = project.as_deref().unwrap_or(&model.project);
                for (host, target) in &hosts {
                    let rt = &target.runtime;
                    let found = rt
                        .list(&[(COMPOSE_PROJECT, project)])
                        .await
                        .map_err(|e| Error::Message(format!("host `{host}`: {e}")))?;
                    for c in found {
                        if c.labels.get(COMPOSE_ONEOFF).is_some_and(|v| v == "True") {
                            continue;
                        }
                        let service = c.labels.get(COMPOSE_SERVICE).cloned().unwrap_or_default();
                        let number = c.labels.get(COMPOSE_NUMBER).and_then(|n| n.parse().ok());
                        let via = format!("Compose service {service}");
                        candidates.push(candidate(rt, host, c, service, via, number).await?);
                    }
                }
                if candidates.is_empty() {
                    problems.push(format!(
                        "no container of the Compose project `{project}` (label {COMPOSE_PROJECT}) on {}",
                        hosts_list(&hosts)
                    ));
                }
            }
            Selection::Containers(wanted) => {
                let mut listed = BTreeMap::new();
                for (host, target) in &hosts {
                    let all = target
                        .runtime
                        .list(&[])
                        .await
                        .map_err(|e| Error::Message(format!("host `{host}`: {e}")))?;
                    listed.insert(host.clone(), all);
                }
                for (service, names) in wanted {
                    let service_hosts = model
                        .services
                        .get(service)
                        .map(|s| s.hosts.clone())
                        .unwrap_or_default();
                    for name in names {
                        match find_named(&listed, name, &service_hosts) {
                            Err(e) => problems.push(format!("--container {service}={name}: {e}")),
                            Ok(Some((host, c))) => {
                                let rt = &hosts[host].runtime;
                                candidates.push(
                                    candidate(
                                        rt,
                                        host,
                                        c.clone(),
                                        service.clone(),
                                        "--container".into(),
                                        None,
                                    )
                                    .await?,
                                );
                            }
                            Ok(None) => problems.push(format!(
                                "--container {service}={name}: no container named `{name}` on {}",
                                hosts_list(&hosts)
                            )),
                        }
                    }
                }
            }
            Selection::Stack(namespace) => {
                let mut not_managers = Vec::new();
                for (host, target) in &hosts {
                    let manager =
                        crate::drivers::swarm::SwarmManager::new(target.runtime.client().clone());
                    if let Err(e) = manager.check_manager().await {
                        not_managers.push(format!("host `{host}`: {e}"));
                        continue;
                    }
                    for svc in manager.stack_services(namespace).await.map_err(Error::Message)? {
                        swarm.push(swarm_candidate(&target.runtime, host, namespace, svc).await?);
                    }
                }
                if swarm.is_empty() {
                    problems.push(format!(
                        "no Swarm service of the stack `{namespace}` (label com.docker.stack.namespace) through {}{}",
                        hosts_list(&hosts),
                        if not_managers.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", not_managers.join("; "))
                        }
                    ));
                }
            }
        }
        // The image ID of every configured image on every host it is claimed on.
        let claims: Vec<(String, String)> = candidates
            .iter()
            .map(|c| (c.host.clone(), c.service.clone()))
            .chain(swarm.iter().map(|c| (c.host.clone(), c.service.clone())))
            .collect();
        for (host, service) in claims {
            let Some(spec) = model.services.get(&service) else {
                continue;
            };
            let key = (host.clone(), spec.image.clone());
            if image_ids.contains_key(&key) {
                continue;
            }
            let id = hosts[&host]
                .runtime
                .image_id(&spec.image)
                .await
                .map_err(|e| Error::Message(format!("host `{host}`: {e}")))?;
            image_ids.insert(key, id);
        }
        // Who each load balancer of the claimed services sends to.
        let mut members = BTreeMap::new();
        let claimed: Vec<&String> = candidates
            .iter()
            .map(|c| &c.service)
            .chain(swarm.iter().map(|c| &c.service))
            .collect();
        for (name, driver) in &lbs {
            let used = claimed.iter().any(|s| {
                model
                    .services
                    .get(*s)
                    .is_some_and(|spec| spec.lb.contains(name))
            });
            if !used || !model.lbs.contains_key(name) {
                continue;
            }
            let read = match driver.preflight().await {
                Err(e) => LbMembers::Failed(e),
                Ok(()) => driver.current_members().await,
            };
            members.insert(name.clone(), read);
        }
        Ok::<_, Error>((problems, candidates, swarm, image_ids, members))
    })??;
    let (problems, candidates, swarm, image_ids, members) = inputs;
    let decided = crate::state::adopt::adopt(Inputs {
        model,
        candidates,
        swarm,
        image_ids,
        lbs: members,
        prior: prior.as_ref(),
        lineage: uuid::Uuid::new_v4().to_string(),
        now: now(),
    });
    let adopted = match (decided, problems.is_empty()) {
        (Ok(a), true) => a,
        (decided, _) => {
            let mut all = problems;
            if let Err(refused) = decided {
                all.extend(refused.mismatches);
            }
            return Err(Error::Message(format!(
                "adopt refused: the configuration does not describe what runs ({}). Nothing was recorded, no container was changed:\n{}",
                match all.len() {
                    1 => "1 mismatch".to_string(),
                    n => format!("{n} mismatches"),
                },
                all.iter()
                    .map(|m| format!("  - {m}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )));
        }
    };

    let mut shown = String::from("gantry adopt will record, changing no container:\n");
    for line in &adopted.lines {
        shown.push_str(&format!("  {line}\n"));
    }
    for note in &adopted.notes {
        shown.push_str(&format!("  note: {note}\n"));
    }
    emit(out, &shown)?;
    confirm_with(
        "record these as the running revision",
        opts.yes,
        "Pass --yes",
        out,
    )?;

    let _lock = session.lock("adopt", err)?;
    // Under the lock: a run may have finished since it was read.
    let current = state_dir.read()?;
    let moved = |s: Option<&crate::state::State>| s.map(|s| (s.lineage.clone(), s.serial));
    if moved(current.as_ref()) != moved(prior.as_ref()) || session.pending()?.is_some() {
        return Err(Error::Message(
            "the state changed while adopt was looking (another run?); nothing was recorded: run `gantry adopt` again".into(),
        ));
    }
    state_dir.write(&adopted.state)?;
    emit(
        out,
        &format!(
            "\nAdopted: revision {} recorded (origin adopt). The next `gantry apply` rolls these containers like any revision; `gantry rollback --to {}` comes back to them while they are kept.\n",
            adopted.revision, adopted.revision
        ),
    )?;
    Ok(Outcome::Done)
}

/// The container `--container` names, by name or by an ID prefix of 12 or more hex digits
/// (`sha256:` allowed), on any listed host, through a host of its service first (two hosts
/// may be one engine). An ID prefix that fits two containers is an error, as for `docker`.
fn find_named<'a>(
    listed: &'a BTreeMap<String, Vec<ContainerInfo>>,
    name: &str,
    service_hosts: &[String],
) -> Result<Option<(&'a String, &'a ContainerInfo)>, String> {
    let prefix = name.strip_prefix("sha256:").unwrap_or(name);
    let matches = |c: &ContainerInfo| {
        c.name == name
            || (prefix.len() >= 12
                && prefix.chars().all(|ch| ch.is_ascii_hexdigit())
                && c.id.starts_with(prefix))
    };
    let mut found: Vec<(&String, &ContainerInfo)> = listed
        .iter()
        .flat_map(|(h, all)| all.iter().filter(|c| matches(c)).map(move |c| (h, c)))
        .collect();
    // A name is exact: it wins over an ID prefix that happens to fit another container.
    if found.iter().any(|(_, c)| c.name == name) {
        found.retain(|(_, c)| c.name == name);
    }
    let mut ids: Vec<&str> = found.iter().map(|(_, c)| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > 1 {
        return Err(format!(
            "`{name}` fits {} containers ({}): give more of the ID, or the name",
            ids.len(),
            ids.iter()
                .map(|id| id.chars().take(12).collect::<String>())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    found.sort_by_key(|(h, _)| !service_hosts.contains(h));
    Ok(found.first().copied())
}

fn hosts_list(hosts: &super::session::Hosts) -> String {
    let names: Vec<String> = hosts.keys().map(|h| format!("`{h}`")).collect();
    match names.len() {
        1 => format!("host {}", names[0]),
        _ => format!("hosts {}", names.join(", ")),
    }
}

async fn candidate(
    rt: &crate::drivers::docker::DockerRuntime,
    host: &str,
    c: crate::ports::ContainerInfo,
    service: String,
    via: String,
    number: Option<u32>,
) -> Result<Candidate, Error> {
    let running = c.state == ContainerState::Running;
    let (image, ports) = rt
        .adoption_facts(&c.id)
        .await
        .map_err(|e| Error::Message(format!("host `{host}`: {e}")))?;
    let image = image.unwrap_or_else(|| c.image_id.clone());
    Ok(Candidate {
        host: host.to_string(),
        id: c.id,
        name: c.name,
        service,
        via,
        image_id: c.image_id,
        image,
        running,
        ports,
        number,
    })
}

async fn swarm_candidate(
    rt: &crate::drivers::docker::DockerRuntime,
    host: &str,
    namespace: &str,
    svc: crate::drivers::swarm::StackService,
) -> Result<SwarmCandidate, Error> {
    // `repo:tag@sha256:...` as `docker stack deploy` pins it; a local image has no digest.
    let mut image_id = rt.image_id(&svc.image).await.ok().flatten();
    if image_id.is_none()
        && let Some((tagged, _)) = svc.image.split_once('@')
    {
        image_id = rt.image_id(tagged).await.ok().flatten();
    }
    let service = svc
        .name
        .strip_prefix(&format!("{namespace}_"))
        .unwrap_or(&svc.name)
        .to_string();
    Ok(SwarmCandidate {
        host: host.to_string(),
        id: svc.id,
        name: svc.name,
        service,
        image_id,
        image: svc.image,
        ports: svc.ports,
        replicas: svc.replicas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, name: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: name.into(),
            labels: BTreeMap::new(),
            state: ContainerState::Running,
            host_port: None,
            image_id: "sha256:aaaa".into(),
            health: None,
            settings: None,
        }
    }

    #[test]
    fn containers_are_named_by_name_or_an_unambiguous_id_prefix() {
        let listed = BTreeMap::from([
            (
                "a".to_string(),
                vec![
                    info("0123456789abcdef01", "api-1"),
                    info("0123456789abffff02", "api-2"),
                ],
            ),
            // The same engine behind a second host.
            ("b".to_string(), vec![info("0123456789abcdef01", "api-1")]),
        ]);
        let b = vec!["b".to_string()];
        let (host, c) = find_named(&listed, "api-1", &b).unwrap().unwrap();
        assert_eq!((host.as_str(), c.name.as_str()), ("b", "api-1"));
        let (_, c) = find_named(&listed, "sha256:0123456789abcd", &b)
            .unwrap()
            .unwrap();
        assert_eq!(c.name, "api-1");
        // 12 digits that fit both: refused, not the first one taken.
        let e = find_named(&listed, "0123456789ab", &b).unwrap_err();
        assert!(e.contains("fits 2 containers"), "{e}");
        // `sha256:` and a few digits is no ID prefix.
        assert!(find_named(&listed, "sha256:01234", &b).unwrap().is_none());
        assert!(find_named(&listed, "api-3", &b).unwrap().is_none());
    }
}
