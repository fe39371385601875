//! `gantry prune`: removes what no kept revision needs (the disks-fill-up lesson of seed 000):
//! stopped containers beyond `keep_previous`, then the images gantry ran that no container
//! uses any more, and the project's network on a host where no container of the project is
//! left. Never a running container, never a kept revision's container or image.
//! Volumes hold data: only `--volumes` touches them, after confirmation, and only the
//! project's volumes that no service of the configuration declares and no container uses.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};

use super::outcome::{Choices, Outcome};
use super::session::{Session, confirm_with, engine};
use super::{Common, Error, emit, load};
use crate::model::Model;
use crate::ports::{ContainerRuntime, labels};

#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Also the project's volumes no service declares any more.
    pub volumes: bool,
    /// No confirmation asked (`--volumes`).
    pub yes: bool,
}

const NO_TERMINAL_HINT: &str = "Pass --yes";

pub fn prune(
    common: &Common,
    opts: &PruneOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    // Refused before anything is removed, as apply refuses before it changes anything.
    if opts.volumes && !opts.yes && !std::io::stdin().is_terminal() {
        return Err(Error::Message(format!(
            "refusing to remove volumes without confirmation: no terminal to ask on. {NO_TERMINAL_HINT}"
        )));
    }
    let session = Session::new(common)?;
    let state_dir = session.state_dir();
    let _lock = session.lock("prune", err)?;
    // An unfinished run's undo needs the containers it stopped: recover it first.
    if let Some(journal) = session.pending()? {
        return Err(Choices::error(&journal));
    }
    let Some(mut state) = state_dir.read()? else {
        emit(
            out,
            "Nothing to prune: nothing was applied with this state directory.\n",
        )?;
        if opts.volumes {
            let problems = prune_volumes(&session, &loaded.model, opts.yes, out)?;
            return finish(problems);
        }
        return Ok(Outcome::Done);
    };
    let keep = loaded.model.keep_previous;
    let (containers, images, networks, problems) = session.block_on(async {
        let mut runtimes = std::collections::BTreeMap::new();
        for h in &loaded.model.hosts {
            runtimes.insert(h.name.clone(), engine(h).await?);
        }
        let mut containers = 0;
        let mut problems = Vec::new();
        for s in state.services.values_mut() {
            let (mut kept, gone) = crate::state::retain_kept(std::mem::take(&mut s.replicas), keep);
            for r in gone {
                // Only what was really removed leaves the state (a host not in the config, or
                // a refusal, keeps its record: nothing gantry created goes untracked).
                match runtimes.get(&r.host) {
                    Some(rt) => match rt.remove(&r.container_id).await {
                        Ok(()) => containers += 1,
                        Err(e) => {
                            problems.push(format!("{}: {e}", r.name));
                            kept.push(r);
                        }
                    },
                    None => kept.push(r),
                }
            }
            kept.sort_by(|a, b| a.name.cmp(&b.name));
            s.replicas = kept;
        }
        // Images gantry ran, by ID, that no container of the state (running or kept) uses.
        let in_use: BTreeSet<&str> = state
            .services
            .values()
            .flat_map(|s| s.replicas.iter().filter_map(|r| r.image_id.as_deref()))
            .collect();
        let ran: BTreeSet<&str> = state
            .history
            .iter()
            .flat_map(|h| h.services.values().filter_map(|s| s.image_id.as_deref()))
            .collect();
        let mut images = 0;
        for id in ran.difference(&in_use) {
            for rt in runtimes.values() {
                // The engine refuses an image any container (ours or not) still uses.
                match rt.remove_image(id).await {
                    Ok(true) => images += 1,
                    Ok(false) => {}
                    Err(e) => problems.push(format!("image {id}: {e}")),
                }
            }
        }
        // The project's network, on each host where no container of the project is left
        // (the engine would let a network go from under a stopped, kept replica).
        let project = loaded.model.project.as_str();
        let mut networks = Vec::new();
        for (host, rt) in &runtimes {
            let left = match rt.list(&[(labels::PROJECT, project)]).await {
                Ok(left) => left,
                Err(e) => {
                    problems.push(format!("host `{host}`: {e}"));
                    continue;
                }
            };
            if !left.is_empty() {
                continue;
            }
            match rt
                .remove_network(project, &[(labels::PROJECT, project)])
                .await
            {
                Ok(true) => networks.push(format!("{project} on host `{host}`")),
                Ok(false) => {}
                Err(e) => problems.push(format!("network {project} on host `{host}`: {e}")),
            }
        }
        Ok::<_, Error>((containers, images, networks, problems))
    })??;
    state.serial += 1;
    state_dir.write(&state)?;
    let kept: usize = state
        .services
        .values()
        .map(|s| {
            s.replicas
                .iter()
                .filter(|r| r.status == crate::state::ReplicaStatus::Stopped)
                .count()
        })
        .sum();
    emit(
        out,
        &format!(
            "Removed {containers} container(s) and {images} image(s); kept {kept} stopped container(s) of the last {keep} revision(s) for rollback.\n"
        ),
    )?;
    if !networks.is_empty() {
        emit(
            out,
            &format!(
                "Removed the project network {} (no container of the project is left there).\n",
                networks.join(", ")
            ),
        )?;
    }
    let mut problems = problems;
    if opts.volumes {
        problems.extend(prune_volumes(&session, &loaded.model, opts.yes, out)?);
    }
    finish(problems)
}

fn finish(problems: Vec<String>) -> Result<Outcome, Error> {
    if problems.is_empty() {
        Ok(Outcome::Done)
    } else {
        Err(Error::Message(format!(
            "some containers, images or volumes could not be removed (containers stay in the state): {}",
            problems.join("; ")
        )))
    }
}

/// Removes, after confirmation (or `yes`), the volumes carrying the project's label that no
/// service of `model` declares; one a container still uses is kept, and said so. Returns
/// what failed.
fn prune_volumes(
    session: &Session<'_>,
    model: &Model,
    yes: bool,
    out: &mut dyn Write,
) -> Result<Vec<String>, Error> {
    let project = model.project.as_str();
    let declared = crate::engine::declared_volumes(project, model.services.values());
    let (runtimes, unused) = session.block_on(async {
        let mut runtimes = BTreeMap::new();
        let mut unused: Vec<(String, String)> = Vec::new();
        for h in &model.hosts {
            let rt = engine(h).await?;
            let found = rt
                .list_volumes(&[(labels::PROJECT, project)])
                .await
                .map_err(|e| Error::Message(format!("host `{}`: {e}", h.name)))?;
            unused.extend(
                found
                    .into_iter()
                    .filter(|v| !declared.contains(v))
                    .map(|v| (h.name.clone(), v)),
            );
            runtimes.insert(h.name.clone(), rt);
        }
        Ok::<_, Error>((runtimes, unused))
    })??;
    if unused.is_empty() {
        emit(
            out,
            "No volume to remove: every volume of the project is declared by a service.\n",
        )?;
        return Ok(Vec::new());
    }
    let mut listing = String::from("Volumes of the project that no service declares any more:\n");
    for (host, v) in &unused {
        listing.push_str(&format!("  {v} on host `{host}`\n"));
    }
    emit(out, &listing)?;
    confirm_with(
        &format!("remove {} volume(s) and the data in them", unused.len()),
        yes,
        NO_TERMINAL_HINT,
        out,
    )?;
    let mut problems = Vec::new();
    let (mut removed, mut kept) = (0, 0);
    session.block_on(async {
        for (host, v) in &unused {
            let Some(rt) = runtimes.get(host) else {
                continue;
            };
            match rt.remove_volume(v).await {
                Ok(true) => {
                    removed += 1;
                    emit(out, &format!("Removed volume {v} on host `{host}`.\n"))?;
                }
                Ok(false) => {
                    kept += 1;
                    emit(
                        out,
                        &format!(
                            "Kept volume {v} on host `{host}`: a container still uses it (a replica kept for rollback counts).\n"
                        ),
                    )?;
                }
                Err(e) => problems.push(format!("volume {v} on host `{host}`: {e}")),
            }
        }
        Ok::<_, Error>(())
    })??;
    emit(
        out,
        &format!("Removed {removed} volume(s); kept {kept} in use.\n"),
    )?;
    Ok(problems)
}
