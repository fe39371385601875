//! `gantry scale-down [--wait]`: the scheduled end of a blue-green old colour. After a
//! switch, apply records when the old colour (kept running for an instant switch-back) is
//! to be scaled down to `keep_old_replicas`, and starts `gantry scale-down --wait` in the
//! background to do it on time; run it from cron or a timer too if the machine may reboot.

use std::io::Write;
use std::time::{Duration, SystemTime};

use super::outcome::Outcome;
use super::session::{Session, connect};
use super::{Common, Error, emit, load};
use crate::ports::ContainerRuntime;
use crate::state::{ReplicaStatus, State};

/// `(service, when)` of every scale-down recorded in `state`, earliest first.
fn scheduled(state: &State) -> Vec<(String, SystemTime)> {
    let mut out: Vec<(String, SystemTime)> = state
        .services
        .iter()
        .filter_map(|(name, s)| {
            let at = s.old_colour.as_ref()?.scale_down_at.as_ref()?;
            Some((name.clone(), humantime::parse_rfc3339(at).ok()?))
        })
        .collect();
    out.sort_by_key(|(_, at)| *at);
    out
}

pub fn scale_down(
    common: &Common,
    wait: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let session = Session::new(common)?;
    let state_dir = session.state_dir();
    loop {
        let Some(state) = state_dir.read()? else {
            emit(out, "Nothing to scale down: nothing was applied.\n")?;
            return Ok(Outcome::Done);
        };
        let due = scheduled(&state);
        let Some((_, earliest)) = due.first() else {
            emit(out, "Nothing to scale down.\n")?;
            return Ok(Outcome::Done);
        };
        let now = SystemTime::now();
        if *earliest > now {
            let at = humantime::format_rfc3339_seconds(*earliest);
            if !wait {
                emit(
                    out,
                    &format!("Next scale-down at {at} (service.{}).\n", due[0].0),
                )?;
                return Ok(Outcome::Done);
            }
            // Sleep in short steps: a switch-back meanwhile cancels the schedule.
            let left = earliest.duration_since(now).unwrap_or_default();
            std::thread::sleep(left.min(Duration::from_secs(5)));
            continue;
        }
        let _lock = match session.lock("scale-down", err) {
            // Waiting: said in the log, and tried again shortly.
            Err(Error::Locked(held)) if wait => {
                emit(err, &format!("error: {held}\n"))?;
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
            lock => lock?,
        };
        let Some(mut state) = state_dir.read()? else {
            return Ok(Outcome::Done);
        };
        let due: Vec<String> = scheduled(&state)
            .into_iter()
            .filter(|(_, at)| *at <= SystemTime::now())
            .map(|(s, _)| s)
            .collect();
        let done = session.block_on(async {
            let hosts = connect(&loaded.model).await?;
            let mut done = Vec::new();
            for name in due {
                let Some(s) = state.services.get_mut(&name) else {
                    continue;
                };
                let Some(colour) = s.old_colour.clone() else {
                    continue;
                };
                let grace = s.spec.stop_grace_period.0;
                for r in s.replicas.iter_mut().filter(|r| {
                    r.revision == colour.revision
                        && r.status == ReplicaStatus::Running
                        && r.index > colour.keep
                }) {
                    let target = hosts.get(&r.host).ok_or_else(|| {
                        Error::Message(format!("host `{}` is not configured", r.host))
                    })?;
                    // Kept for rollback: stopped across an engine restart too.
                    target
                        .runtime
                        .set_restart(&r.container_id, crate::ports::Restart::No)
                        .await
                        .map_err(|e| Error::Message(format!("stopping {}: {e}", r.name)))?;
                    target
                        .runtime
                        .stop(&r.container_id, grace)
                        .await
                        .map_err(|e| Error::Message(format!("stopping {}: {e}", r.name)))?;
                    r.status = ReplicaStatus::Stopped;
                }
                s.old_colour = (colour.keep > 0).then_some(crate::state::OldColour {
                    scale_down_at: None,
                    ..colour.clone()
                });
                done.push(format!(
                    "service.{name}: old colour (revision {}) scaled down to {} running; its stopped replicas are kept for rollback",
                    colour.revision, colour.keep
                ));
            }
            Ok::<_, Error>(done)
        })??;
        state.serial += 1;
        state_dir.write(&state)?;
        for line in done {
            emit(out, &format!("{line}\n"))?;
        }
        if !wait || scheduled(&state).is_empty() {
            return Ok(Outcome::Done);
        }
    }
}

/// Starts `gantry scale-down --wait` in the background (its own process group, output to
/// `scale-down.log` in the state directory) when `state` has a scale-down scheduled.
pub fn start_timer(common: &Common, state: &State) -> Option<String> {
    let (service, at) = scheduled(state).into_iter().next()?;
    let dir = common.state_dir().dir;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("scale-down.log"))
        .ok()?;
    let exe = std::env::current_exe().ok()?;
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(exe)
        .arg("-f")
        .arg(absolute(&common.config))
        .arg("--state-dir")
        .arg(absolute(&dir))
        .args(["scale-down", "--wait"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().ok()?)
        .stderr(log)
        .env("NO_COLOR", "1")
        .process_group(0)
        .spawn()
        .ok()?;
    Some(format!(
        "The old colour of service.{service} keeps running for switch-back until {}; `gantry scale-down --wait` (pid {}, log {}) scales it down then.",
        humantime::format_rfc3339_seconds(at),
        child.id(),
        dir.join("scale-down.log").display()
    ))
}
