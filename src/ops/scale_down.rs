//! `gantry scale-down [--wait]`: the scheduled end of a blue-green old colour. After a
//! switch, apply records when the old colour (kept running for an instant switch-back) is
//! to be scaled down to `keep_old_replicas`, and starts `gantry scale-down --wait` in the
//! background to do it on time; run it from cron or a timer too if the machine may reboot.

use std::io::Write;
use std::time::{Duration, SystemTime};

use super::{Common, Error, emit, load};
use crate::exit::ExitStatus;
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
) -> Result<ExitStatus, Error> {
    let loaded = load(common)?;
    let state_dir = common.state_dir();
    loop {
        let Some(state) = state_dir.read()? else {
            emit(out, "Nothing to scale down: nothing was applied.\n")?;
            return Ok(ExitStatus::Success);
        };
        let due = scheduled(&state);
        let Some((_, earliest)) = due.first() else {
            emit(out, "Nothing to scale down.\n")?;
            return Ok(ExitStatus::Success);
        };
        let now = SystemTime::now();
        if *earliest > now {
            let at = humantime::format_rfc3339_seconds(*earliest);
            if !wait {
                emit(
                    out,
                    &format!("Next scale-down at {at} (service.{}).\n", due[0].0),
                )?;
                return Ok(ExitStatus::Success);
            }
            // Sleep in short steps: a switch-back meanwhile cancels the schedule.
            let left = earliest.duration_since(now).unwrap_or_default();
            std::thread::sleep(left.min(Duration::from_secs(5)));
            continue;
        }
        let Some(_lock) = super::recover::take_lock(&state_dir, "scale-down", err)? else {
            if !wait {
                return Ok(ExitStatus::Locked);
            }
            std::thread::sleep(Duration::from_secs(2));
            continue;
        };
        let Some(mut state) = state_dir.read()? else {
            return Ok(ExitStatus::Success);
        };
        let due: Vec<String> = scheduled(&state)
            .into_iter()
            .filter(|(_, at)| *at <= SystemTime::now())
            .map(|(s, _)| s)
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Message(e.to_string()))?;
        let done = rt.block_on(async {
            let hosts = super::recover::connect(&loaded.model).await?;
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
        })?;
        state.serial += 1;
        state_dir.write(&state)?;
        for line in done {
            emit(out, &format!("{line}\n"))?;
        }
        if !wait || scheduled(&state).is_empty() {
            return Ok(ExitStatus::Success);
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
