//! After a successful apply: strays stopped, what no kept revision needs removed
//! (`keep_previous`), destroyed services' containers removed, and containers that a create in
//! flight at a kill left behind.

use std::time::Duration;

use super::report::Event;
use super::run::Run;
use crate::graph::ResourceKind;
use crate::plan::{Action, Plan};
use crate::ports::{ContainerRuntime, Restart, labels};
use crate::state::{Outcome, Replica, ReplicaStatus};

impl<R: ContainerRuntime> Run<'_, R> {
    /// After success: remove what no revision kept for rollback needs (stopped replicas older
    /// than the previous revision, and the replicas of destroyed services).
    pub(super) async fn cleanup(&self, plan: &Plan) {
        let destroyed: Vec<String> = plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Destroy && c.address.kind == ResourceKind::Service)
            .map(|c| c.address.name.clone())
            .collect();
        // Converge: one running replica per (host, index) of the spec, the newest; strays
        // left running by an interrupted run are stopped (and then fall under retention).
        let mut strays: Vec<(String, String, String, Duration)> = Vec::new();
        for (name, s) in &self.st().services {
            if destroyed.contains(name) {
                continue;
            }
            let running: Vec<&Replica> = s
                .replicas
                .iter()
                .filter(|r| r.status == ReplicaStatus::Running)
                .collect();
            for r in &running {
                let newer = running
                    .iter()
                    .any(|o| o.host == r.host && o.index == r.index && o.revision > r.revision);
                let outside = r.index > s.spec.replicas || !s.spec.hosts.contains(&r.host);
                // Blue-green: the old colour runs on beside the live one until scaled down.
                let old_colour = s.old_colour.as_ref().is_some_and(|o| {
                    o.revision == r.revision && (o.scale_down_at.is_some() || r.index <= o.keep)
                });
                if (newer || outside) && !old_colour {
                    strays.push((
                        name.clone(),
                        r.host.clone(),
                        r.container_id.clone(),
                        s.spec.stop_grace_period.0,
                    ));
                }
            }
        }
        for (service, host, id, grace) in strays {
            if let Ok(t) = self.target(&Some(host)) {
                // Kept for a rollback maybe: stopped across an engine restart too.
                let _ = t.runtime.set_restart(&id, Restart::No).await;
                let _ = t.runtime.stop(&id, grace).await;
            }
            self.set_status(&service, &id, ReplicaStatus::Stopped);
        }
        let mut to_remove: Vec<(String, String)> = Vec::new();
        for (name, s) in self.st().services.iter_mut() {
            if destroyed.contains(name) {
                to_remove.extend(
                    s.replicas
                        .iter()
                        .map(|r| (r.host.clone(), r.container_id.clone())),
                );
                s.replicas.clear();
                continue;
            }
            // Keep the stopped replicas of the newest `keep_previous` older revisions: they
            // are what a fast rollback starts again.
            let (stay, go) =
                crate::state::retain_kept(std::mem::take(&mut s.replicas), self.env.keep_previous);
            to_remove.extend(go.into_iter().map(|r| (r.host, r.container_id)));
            s.replicas = stay;
        }
        for name in destroyed {
            self.st().services.remove(&name);
        }
        for (host, id) in to_remove {
            if let Ok(t) = self.target(&Some(host)) {
                let _ = t.runtime.remove(&id).await;
            }
        }
        self.remove_late_leftovers().await;
        let _ = self.save();
    }

    /// Removes the containers of interrupted revisions that the state does not record. A
    /// create in flight when gantry was killed completes on the engine's side, possibly after
    /// the recovery looked: nothing refers to such a container.
    pub(super) async fn remove_late_leftovers(&self) {
        let dead: Vec<String> = self
            .st()
            .history
            .iter()
            .filter(|r| r.outcome == Outcome::Interrupted)
            .map(|r| r.revision.to_string())
            .collect();
        if dead.is_empty() {
            return;
        }
        for (host, target) in self.env.hosts {
            let Ok(found) = target
                .runtime
                .list(&[(labels::PROJECT, self.env.project)])
                .await
            else {
                continue;
            };
            for c in found {
                let of_dead_run = c
                    .labels
                    .get(labels::REVISION)
                    .is_some_and(|r| dead.contains(r));
                let here = c.labels.get(labels::HOST).is_none_or(|h| h == host);
                let recorded = self
                    .st()
                    .services
                    .values()
                    .any(|s| s.replicas.iter().any(|r| r.container_id == c.id));
                if of_dead_run && here && !recorded {
                    let _ = target.runtime.remove(&c.id).await;
                    self.env.reporter.event(Event::Note {
                        message: format!(
                            "removed {}: created for an interrupted run after it was recovered",
                            c.name
                        ),
                    });
                }
            }
        }
    }
}
