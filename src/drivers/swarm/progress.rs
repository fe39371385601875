//! Reading where a Swarm update stands from what the manager reports: its update status
//! and its tasks.

use bollard::models::{Service, ServiceUpdateStatusStateEnum as UpdateState, Task, TaskState};

use super::spec::task_template;

/// Identifies one update of a service (`UpdateStatus.StartedAt`), whatever the date type.
pub fn update_started(service: &Service) -> Option<String> {
    service
        .update_status
        .as_ref()
        .and_then(|s| s.started_at.as_ref())
        .map(|t| format!("{t:?}"))
}

/// Where an update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not there yet; what is happening, in words.
    Waiting(String),
    /// Every replica runs the spec gantry set.
    Converged(String),
    /// Swarm rolled the update back (`failure_action = rollback`): the previous spec runs.
    RolledBack(String),
    /// Swarm paused the update (or the rollback): a human must look.
    Paused(String),
}

fn state_word(s: &UpdateState) -> &'static str {
    match s {
        UpdateState::EMPTY => "",
        UpdateState::UPDATING => "updating",
        UpdateState::PAUSED => "paused",
        UpdateState::COMPLETED => "completed",
        UpdateState::ROLLBACK_STARTED => "rollback_started",
        UpdateState::ROLLBACK_PAUSED => "rollback_paused",
        UpdateState::ROLLBACK_COMPLETED => "rollback_completed",
    }
}

/// The update status word of a service (`completed`, `rollback_completed`, ...), if any.
pub fn update_state(service: &Service) -> Option<&'static str> {
    service
        .update_status
        .as_ref()
        .and_then(|s| s.state.as_ref())
        .map(state_word)
}

/// Reads where the update of `service` to the template `template` stands. `before` is the
/// update status the service had before gantry's call ([`update_started`]).
pub fn progress(
    service: &Service,
    before: Option<&str>,
    tasks: &[Task],
    replicas: u32,
    template: &str,
) -> Progress {
    let status = service.update_status.as_ref();
    let new_update =
        update_started(service).is_some() && update_started(service).as_deref() != before;
    let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
    if new_update {
        match status.and_then(|s| s.state.as_ref()) {
            Some(UpdateState::ROLLBACK_COMPLETED) => return Progress::RolledBack(message),
            Some(UpdateState::PAUSED) => {
                return Progress::Paused(format!("update paused: {message}"));
            }
            Some(UpdateState::ROLLBACK_PAUSED) => {
                return Progress::Paused(format!("rollback paused: {message}"));
            }
            Some(UpdateState::ROLLBACK_STARTED) => {
                return Progress::Waiting(format!("Swarm is rolling back: {message}"));
            }
            _ => {}
        }
    }
    let meant: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .collect();
    let ours_running = meant
        .iter()
        .filter(|t| {
            task_template(t) == Some(template)
                && t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
        })
        .count();
    let updating = new_update
        && matches!(
            status.and_then(|s| s.state.as_ref()),
            Some(UpdateState::UPDATING)
        );
    if !updating && ours_running == replicas as usize && meant.len() == replicas as usize {
        return Progress::Converged(format!(
            "{ours_running}/{replicas} replica(s) running the new spec{}",
            if new_update {
                format!(" (update {})", message.trim_start_matches("update "))
            } else {
                String::new()
            }
        ));
    }
    Progress::Waiting(format!(
        "{ours_running}/{replicas} replica(s) running the new spec{}",
        if message.is_empty() || !new_update {
            String::new()
        } else {
            format!("; Swarm: {message}")
        }
    ))
}

/// Tasks of the template `template` that stopped or never started, in words, newest first:
/// what a failed update names.
pub fn failed_tasks(tasks: &[Task], template: &str) -> Vec<(String, Option<String>)> {
    let mut failed: Vec<&Task> = tasks
        .iter()
        .filter(|t| task_template(t) == Some(template))
        .filter(|t| {
            let status = t.status.as_ref();
            match status.and_then(|s| s.state) {
                Some(
                    TaskState::FAILED
                    | TaskState::REJECTED
                    | TaskState::COMPLETE
                    | TaskState::ORPHANED,
                ) => true,
                // Shut down by Swarm (a rollback replacing it) is not a failure of its own.
                Some(TaskState::SHUTDOWN) => status
                    .and_then(|s| s.err.as_ref())
                    .is_some_and(|e| !e.is_empty()),
                _ => false,
            }
        })
        .collect();
    failed.sort_by_key(|t| std::cmp::Reverse(format!("{:?}", t.updated_at)));
    failed
        .into_iter()
        .map(|t| {
            let s = t.status.clone().unwrap_or_default();
            let mut words = format!(
                "task {} (slot {}): {}",
                t.id.as_deref().map_or("?", |i| &i[..12.min(i.len())]),
                t.slot.unwrap_or_default(),
                s.state
                    .map_or("?".to_string(), |st| format!("{st:?}").to_lowercase()),
            );
            if let Some(m) = s.message.filter(|m| !m.is_empty()) {
                words.push_str(&format!(", {m}"));
            }
            if let Some(e) = s.err.filter(|e| !e.is_empty()) {
                words.push_str(&format!(", {e}"));
            }
            if let Some(code) = s.container_status.as_ref().and_then(|c| c.exit_code) {
                words.push_str(&format!(", exit code {code}"));
            }
            let container = s
                .container_status
                .and_then(|c| c.container_id)
                .filter(|c| !c.is_empty());
            (words, container)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::swarm::TEMPLATE_LABEL;
    use bollard::models::{
        ObjectVersion, ServiceUpdateStatus, TaskSpec, TaskSpecContainerSpec, TaskStatus,
    };
    use std::collections::HashMap;

    fn service(state: Option<UpdateState>, started: &str, message: &str) -> Service {
        Service {
            id: Some("svc".into()),
            version: Some(ObjectVersion { index: Some(10) }),
            update_status: state.map(|s| ServiceUpdateStatus {
                state: Some(s),
                started_at: Some(started.into()),
                completed_at: None,
                message: Some(message.into()),
            }),
            ..Default::default()
        }
    }

    fn task(template: &str, desired: TaskState, state: TaskState) -> Task {
        let mut labels = HashMap::new();
        labels.insert(TEMPLATE_LABEL.to_string(), template.to_string());
        Task {
            id: Some("task0123456789".into()),
            slot: Some(1),
            desired_state: Some(desired),
            status: Some(TaskStatus {
                state: Some(state),
                message: Some("finished".into()),
                ..Default::default()
            }),
            spec: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    labels: Some(labels),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_previous_update_status_does_not_count() {
        let s = service(
            Some(UpdateState::ROLLBACK_COMPLETED),
            "t1",
            "rollback completed",
        );
        let before = update_started(&s);
        let tasks = vec![task("old", TaskState::RUNNING, TaskState::RUNNING)];
        assert!(matches!(
            progress(&s, before.as_deref(), &tasks, 1, "new"),
            Progress::Waiting(_)
        ));
        // The same status, seen as new: the rollback is the answer.
        assert!(matches!(
            progress(&s, None, &tasks, 1, "new"),
            Progress::RolledBack(_)
        ));
    }

    #[test]
    fn converged_when_every_meant_task_runs_the_new_template() {
        let s = service(Some(UpdateState::COMPLETED), "t2", "update completed");
        let mut tasks = vec![
            task("new", TaskState::RUNNING, TaskState::RUNNING),
            task("new", TaskState::RUNNING, TaskState::STARTING),
            task("old", TaskState::SHUTDOWN, TaskState::SHUTDOWN),
        ];
        assert!(matches!(
            progress(&s, Some("t1"), &tasks, 2, "new"),
            Progress::Waiting(_)
        ));
        tasks[1] = task("new", TaskState::RUNNING, TaskState::RUNNING);
        assert!(matches!(
            progress(&s, Some("t1"), &tasks, 2, "new"),
            Progress::Converged(_)
        ));
        // Still updating: not done even if the counts match for a moment.
        let u = service(Some(UpdateState::UPDATING), "t2", "update in progress");
        assert!(matches!(
            progress(&u, Some("t1"), &tasks, 2, "new"),
            Progress::Waiting(_)
        ));
        // A service created (no update status at all) converges on its tasks alone.
        let created = service(None, "", "");
        assert!(matches!(
            progress(&created, None, &tasks, 2, "new"),
            Progress::Converged(_)
        ));
    }

    #[test]
    fn paused_updates_and_rollbacks_are_reported() {
        let p = service(
            Some(UpdateState::PAUSED),
            "t3",
            "update paused due to failure",
        );
        assert!(matches!(
            progress(&p, None, &[], 1, "x"),
            Progress::Paused(_)
        ));
        let r = service(Some(UpdateState::ROLLBACK_PAUSED), "t3", "rollback paused");
        assert!(matches!(
            progress(&r, None, &[], 1, "x"),
            Progress::Paused(_)
        ));
    }

    #[test]
    fn failed_tasks_are_named() {
        let tasks = vec![
            task("new", TaskState::SHUTDOWN, TaskState::COMPLETE),
            task("old", TaskState::RUNNING, TaskState::RUNNING),
        ];
        let failed = failed_tasks(&tasks, "new");
        assert_eq!(failed.len(), 1);
        assert_eq!(
            failed[0].0,
            "task task01234567 (slot 1): complete, finished"
        );
    }
}
