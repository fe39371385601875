//! `gantry status`: what runs, from the engines, against what the state records. One list
//! call per host; drift (a replica gone, stopped behind gantry's back, or a container with
//! gantry's labels the state does not know) is named.

use std::collections::BTreeMap;
use std::io::Write;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use super::outcome::{Choices, Outcome};
use super::session::{Session, engine, observe_engine};
use super::{Common, Error, emit, load};
use crate::drivers::probe::HttpProber;
use crate::ports::{ContainerInfo, ContainerState, HealthStatus, labels};
use crate::state::ReplicaStatus;

pub fn status(common: &Common, out: &mut dyn Write) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let session = Session::new(common)?;
    let state_dir = session.state_dir();
    let Some(state) = state_dir.read()? else {
        emit(out, "Nothing applied yet (no state).\n")?;
        return Ok(Outcome::Done);
    };
    let pending = session.pending()?;
    if let Some(lock) = state_dir.lock_holder()? {
        let gone = if pending.is_some() {
            " That process is gone: the next apply or rollback takes the lock over."
        } else {
            ""
        };
        emit(
            out,
            &format!(
                "Locked: {} (pid {} on {}) is running {} since {}.{gone}\n\n",
                lock.holder, lock.pid, lock.host, lock.operation, lock.started_at
            ),
        )?;
    }
    if let Some(journal) = &pending {
        emit(out, &format!("{}\n\n", Choices::error(journal)))?;
    }
    if let Some(journal) = session.held()? {
        emit(
            out,
            &format!(
                "{}\n`gantry promote` continues it; `gantry rollback` abandons it.\n\n",
                Choices::header_of(&journal)
            ),
        )?;
    }
    let prober = HttpProber::new();
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "service",
        "replica",
        "host",
        "revision",
        "container",
        "recorded",
        "engine",
        "health",
    ]);
    let mut drift = Vec::new();
    session.block_on(async {
        let mut live: BTreeMap<String, BTreeMap<String, ContainerInfo>> = BTreeMap::new();
        let mut engines = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for h in &loaded.model.hosts {
            addresses.insert(h.name.clone(), h.address.clone());
            let runtime = engine(h).await?;
            let found = observe_engine(&runtime, &state.project)
                .await
                .map_err(|e| Error::Message(format!("host `{}`: {e}", h.name)))?;
            live.insert(
                h.name.clone(),
                found
                    .iter()
                    .filter(|c| {
                        c.labels.get(labels::PROJECT) == Some(&state.project)
                            // Adopted containers carry no label of gantry's.
                            || state
                                .services
                                .values()
                                .any(|s| s.replicas.iter().any(|r| r.container_id == c.id))
                    })
                    .map(|c| (c.id.clone(), c.clone()))
                    .collect(),
            );
            engines.insert(h.name.clone(), found);
        }
        for (name, s) in &state.services {
            for r in &s.replicas {
                let engine = live.get(&r.host).and_then(|m| m.get(&r.container_id));
                let engine_state = match engine.map(|c| c.state) {
                    Some(ContainerState::Running) => "running".to_string(),
                    Some(ContainerState::Exited(code)) => format!("exited ({code})"),
                    Some(other) => format!("{other:?}").to_lowercase(),
                    None => "MISSING".to_string(),
                };
                let recorded = match r.status {
                    ReplicaStatus::Running => "running",
                    ReplicaStatus::Stopped if r.revision != s.revision => "kept for rollback",
                    ReplicaStatus::Stopped => "stopped",
                };
                let health = match (&s.spec.health, engine.map(|c| (c.state, c.host_port))) {
                    (Some(h), Some((ContainerState::Running, Some(port)))) if h.http.is_some() => {
                        let address = format!(
                            "{}:{port}",
                            addresses.get(&r.host).cloned().unwrap_or_default()
                        );
                        let probe = prober
                            .get(&address, h.http.as_deref().unwrap_or("/"), h.timeout.0)
                            .await;
                        if probe.is_2xx() {
                            "healthy".to_string()
                        } else {
                            format!("UNHEALTHY ({:?})", probe.outcome)
                        }
                    }
                    // A health command the engine runs: what the engine says.
                    (_, Some((ContainerState::Running, _))) => {
                        match engine.and_then(|c| c.health.as_ref()).map(|h| h.status) {
                            Some(HealthStatus::Healthy) => "healthy".to_string(),
                            Some(HealthStatus::Starting) => "starting".to_string(),
                            Some(HealthStatus::Unhealthy) => "UNHEALTHY".to_string(),
                            None => "-".to_string(),
                        }
                    }
                    _ => String::new(),
                };
                table.add_row([
                    name.clone(),
                    format!("#{}", r.index),
                    r.host.clone(),
                    r.revision.to_string(),
                    r.name.clone(),
                    recorded.to_string(),
                    engine_state,
                    health,
                ]);
            }
        }
        drift = crate::plan::drift::detect(&state, &engines)
            .into_iter()
            .map(|d| format!("{} {} on {}: {}", d.resource, d.container, d.host, d.detail))
            .collect();
        Ok::<(), Error>(())
    })??;
    emit(
        out,
        &format!(
            "Project {} at revision {} (state serial {}).\n{table}\n",
            state.project, state.revision, state.serial
        ),
    )?;
    if drift.is_empty() {
        emit(out, "No drift: the engines run what the state records.\n")?;
    } else {
        emit(out, &format!("Drift ({}):\n", drift.len()))?;
        for d in &drift {
            emit(out, &format!("  - {d}\n"))?;
        }
    }
    Ok(Outcome::Done)
}
