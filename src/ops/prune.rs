//! `gantry prune`: removes what no kept revision needs (the disks-fill-up lesson of seed 000):
//! stopped containers beyond `keep_previous`, then the images gantry ran that no container
//! uses any more. Never a running container, never a kept revision's container or image.

use std::collections::BTreeSet;
use std::io::Write;

use super::outcome::{Choices, Outcome};
use super::session::{Session, engine};
use super::{Common, Error, emit, load};
use crate::ports::ContainerRuntime;

pub fn prune(common: &Common, out: &mut dyn Write, err: &mut dyn Write) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let session = Session::new(common);
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
        return Ok(Outcome::Done);
    };
    let keep = loaded.model.keep_previous;
    let (containers, images, problems) = session.block_on(async {
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
        Ok::<_, Error>((containers, images, problems))
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
    if problems.is_empty() {
        Ok(Outcome::Done)
    } else {
        Err(Error::Message(format!(
            "some containers could not be removed (kept in the state): {}",
            problems.join("; ")
        )))
    }
}
