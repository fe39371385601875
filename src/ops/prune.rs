//! `gantry prune`: removes what no kept revision needs (the disks-fill-up lesson of seed 000):
//! stopped containers beyond `keep_previous`, then the images gantry ran that no container
//! uses any more. Never a running container, never a kept revision's container or image.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::SystemTime;

use super::{Common, Error, emit, load};
use crate::drivers::docker::DockerRuntime;
use crate::drivers::fs::LockError;
use crate::exit::ExitStatus;
use crate::ports::ContainerRuntime;

pub fn prune(
    common: &Common,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, Error> {
    let loaded = load(common)?;
    let state_dir = common.state_dir();
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let _lock = match state_dir.lock("prune", &now) {
        Ok(l) => l,
        Err(LockError::Held(info, stale)) => {
            emit(err, &format!("error: {}\n", LockError::Held(info, stale)))?;
            return Ok(ExitStatus::Locked);
        }
        Err(LockError::Fs(e)) => return Err(e.into()),
    };
    let Some(mut state) = state_dir.read()? else {
        emit(
            out,
            "Nothing to prune: nothing was applied with this state directory.\n",
        )?;
        return Ok(ExitStatus::Success);
    };
    let keep = loaded.model.keep_previous;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Message(e.to_string()))?;
    let (containers, images) = rt.block_on(async {
        let mut runtimes = std::collections::BTreeMap::new();
        for h in &loaded.model.hosts {
            let r = DockerRuntime::connect(&h.docker)
                .await
                .map_err(|e| Error::Message(format!("host `{}`: {e}", h.name)))?;
            runtimes.insert(h.name.clone(), r);
        }
        let mut containers = 0;
        for s in state.services.values_mut() {
            let (kept, gone) = crate::state::retain_kept(std::mem::take(&mut s.replicas), keep);
            s.replicas = kept;
            for r in gone {
                if let Some(rt) = runtimes.get(&r.host) {
                    rt.remove(&r.container_id)
                        .await
                        .map_err(|e| Error::Message(e.to_string()))?;
                    containers += 1;
                }
            }
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
                if rt
                    .remove_image(id)
                    .await
                    .map_err(|e| Error::Message(e.to_string()))?
                {
                    images += 1;
                }
            }
        }
        Ok::<_, Error>((containers, images))
    })?;
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
    Ok(ExitStatus::Success)
}
