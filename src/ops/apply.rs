//! `gantry apply [PLANFILE]`: plan (or load a saved plan), show it, confirm, lock, pre-flight,
//! then run the engine against the real Docker engine(s).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::recover::{FileSink, confirm, connect, now, reporter, take_lock, watch_interrupts};
use super::{Common, Error, emit, load};
use crate::drivers::fs::hostname;
use crate::drivers::probe::HttpProber;
use crate::engine::recover::{Mode, Recovered};
use crate::engine::report::ProgressFormat;
use crate::engine::{self, ApplyInputs, ApplyOutcome, RunEnv, Target};
use crate::exit::ExitStatus;
use crate::plan::{Action, Plan, Spec};
use crate::ports::ContainerRuntime;
use crate::state::journal::Entry;
use crate::state::{Origin, State};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub plan_file: Option<PathBuf>,
    pub yes: bool,
    pub progress: ProgressFormat,
    /// After a run that did not finish: reconcile, then continue.
    pub resume: bool,
    /// After a run that did not finish: undo it.
    pub undo: bool,
    /// Read the engines first and repair drift (as `plan --refresh`).
    pub refresh: bool,
    /// Blue-green: stop the release at its preview (`--prepare`, `--hold-at-preview`).
    pub hold: crate::engine::Hold,
}

pub fn apply(
    common: &Common,
    opts: &ApplyOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, Error> {
    let loaded = load(common)?;
    let state_dir = common.state_dir();
    if let Some(journal) = super::recover::pending(&state_dir)? {
        if opts.undo {
            return Ok(
                match super::recover::undo_confirmed(
                    common,
                    &loaded.model,
                    &journal,
                    "",
                    (opts.yes, opts.progress),
                    out,
                    err,
                )? {
                    Ok(_) => ExitStatus::Success,
                    Err(status) => status,
                },
            );
        }
        if !opts.resume {
            return Err(Error::Message(super::recover::choose(&journal)));
        }
        emit(
            out,
            &format!("{}\n", super::recover::choose_header(&journal)),
        )?;
        let state = state_dir.read()?;
        let lbs = lb_drivers(&loaded.model, state.as_ref(), &common.config_dir());
        match super::recover::recover(
            common,
            &loaded.model,
            &journal,
            Mode::Resume,
            opts.progress,
            &lbs,
            out,
            err,
        )? {
            Ok(Recovered::ReadyToResume) => {}
            Ok(_) => return Ok(ExitStatus::Success),
            Err(status) => return Ok(status),
        }
    } else if opts.undo {
        emit(out, "Nothing to undo: the last run finished.\n")?;
        return Ok(ExitStatus::Success);
    }
    if let Some(journal) = super::recover::held(&state_dir)? {
        return Err(Error::Message(format!(
            "{}\n  gantry promote    continue it (switch the load balancers to the new colour)\n  gantry rollback   abandon it",
            super::recover::choose_header(&journal)
        )));
    }
    let state = state_dir.read()?;

    let plan = match &opts.plan_file {
        Some(path) => {
            let text = crate::drivers::fs::read_to_string(path)?;
            let plan = Plan::from_json(&text).map_err(|e| {
                Error::Message(format!("{} is not a gantry plan file: {e}", path.display()))
            })?;
            if let Some(why) = stale(&plan, state.as_ref(), &loaded.sha256) {
                emit(
                    err,
                    &format!(
                        "error: the plan file {} is stale: {why}. Run `gantry plan --out {}` again.\n",
                        path.display(),
                        path.display()
                    ),
                )?;
                return Ok(ExitStatus::StalePlan);
            }
            plan
        }
        None => {
            let mut plan = crate::plan::plan(&loaded.model, state.as_ref(), &loaded.sha256);
            if let (true, Some(state)) = (opts.refresh, &state) {
                let engines = super::plan::observe(&loaded.model)?;
                let drift = crate::plan::drift::detect(state, &engines);
                crate::plan::drift::apply_to_plan(&mut plan, drift, state);
            }
            plan
        }
    };
    let run = Execution {
        model: &loaded.model,
        config_sha256: &loaded.sha256,
        origin: Origin::Apply,
        pinned: BTreeMap::new(),
        confirmed: opts.yes || opts.plan_file.is_some(),
        hold: opts.hold,
        promote: None,
    };
    execute(common, &plan, &run, opts.progress, out, err)
}

/// What differs between an apply and a rollback once the plan is made.
pub struct Execution<'a> {
    /// Hosts, project and load balancers to drive.
    pub model: &'a crate::model::Model,
    pub config_sha256: &'a str,
    /// What starts the revision: an apply or a rollback (a promote keeps the held run's).
    pub origin: Origin,
    /// Image reference -> the image ID it must run (a rollback runs exactly what was
    /// recorded, never pulls); recorded as `(image ID, where it was recorded)`.
    pub pinned: BTreeMap<String, (String, String)>,
    /// No confirmation needed (`--yes`, or a saved plan file).
    pub confirmed: bool,
    /// Where a blue-green release stops (`--prepare`, `--hold-at-preview`).
    pub hold: crate::engine::Hold,
    /// `gantry promote`: the journal of the held release this continues.
    pub promote: Option<crate::state::journal::Journal>,
}

/// Shows the plan, confirms, locks, runs pre-flight and the engine; maps the outcome to the
/// exit status.
pub fn execute(
    common: &Common,
    plan: &Plan,
    run: &Execution<'_>,
    progress: ProgressFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, Error> {
    let state_dir = common.state_dir();
    let state = state_dir.read()?;
    let verb = if run.promote.is_some() {
        "promote"
    } else if run.origin == Origin::Apply {
        "apply"
    } else {
        "roll back"
    };
    emit(out, &crate::render::text(plan, common.color))?;
    if !plan.has_changes() {
        return Ok(ExitStatus::Success);
    }
    let lbs = lb_drivers(run.model, state.as_ref(), &common.config_dir());
    let driven: Vec<String> = lbs.keys().cloned().collect();
    if let Some((resource, why)) = engine::unsupported_step(plan, &driven) {
        return Err(Error::Message(format!(
            "cannot {verb} {resource}: {why}; nothing was changed"
        )));
    }
    if !confirm(verb, run.confirmed, out)? {
        return Ok(ExitStatus::Error);
    }

    let Some(lock) = take_lock(
        &state_dir,
        if verb == "roll back" {
            "rollback"
        } else {
            verb
        },
        err,
    )?
    else {
        return Ok(ExitStatus::Locked);
    };
    // Re-read under the lock: another run may have finished in between. (A promote continues
    // a run that moved the state itself.)
    let state = state_dir.read()?;
    if let (Some(why), None) = (stale(plan, state.as_ref(), run.config_sha256), &run.promote) {
        emit(
            err,
            &format!("error: the state moved while waiting: {why}\n"),
        )?;
        return Ok(ExitStatus::StalePlan);
    }
    if let Some(journal) = super::recover::pending(&state_dir)? {
        return Err(Error::Message(super::recover::choose(&journal)));
    }
    let state =
        state.unwrap_or_else(|| State::empty(&run.model.project, uuid::Uuid::new_v4().to_string()));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Message(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        // Pre-flight: nothing is touched until every check passes.
        let hosts = connect(run.model).await?;
        let (env, image_ids) = preflight(plan, &state, &hosts, &common.config_dir(), &run.pinned).await?;

        // The journal announces the run (and the state it starts from) before any change; a
        // promote appends to the held run's.
        let journal = Arc::new(match &run.promote {
            Some(_) => state_dir.reopen_journal()?,
            None => state_dir.begin_journal(&Entry::Begin {
                revision: state.next_revision(),
                origin: run.origin.clone(),
                pid: std::process::id(),
                host: hostname(),
                at: now(),
                prior: Box::new(state.clone()),
            })?,
        });
        let interrupt = Arc::new(AtomicBool::new(false));
        watch_interrupts(interrupt.clone(), journal.clone(), lock.path().to_path_buf());
        let reporter = reporter(progress);
        let sink = FileSink { dir: &state_dir, journal };
        let run_env = RunEnv {
            project: &run.model.project,
            hosts: &hosts,
            prober: &HttpProber::new(),
            commands: &crate::drivers::command::LocalCommands,
            clock: &crate::drivers::clock::SystemClock,
            reporter: reporter.as_ref(),
            sink: &sink,
            lbs: &lbs,
            keep_previous: run.model.keep_previous,
            interrupt: &interrupt,
        };
        let inputs = ApplyInputs {
            env: &env,
            image_ids: &image_ids,
            origin: run.origin.clone(),
            hold: run.hold,
        };
        let (outcome, state) = match &run.promote {
            Some(held) => engine::promote(held, state, &run_env, &inputs)
                .await
                .ok_or_else(|| Error::Message("no release is held at its preview".into()))?,
            None => engine::apply(plan, state, &run_env, &inputs).await,
        };
        drop(lock);
        match outcome {
            ApplyOutcome::Succeeded { revision } => {
                let done = if verb == "apply" { "Apply complete".to_string() } else { format!("Rollback complete ({})", run.origin) };
                emit(out, &format!("\n{done}: revision {revision}. {}\n", plan.summary.line()))?;
                if let Some(timer) = super::scale_down::start_timer(common, &state) {
                    emit(out, &format!("{timer}\n"))?;
                }
                Ok(ExitStatus::Success)
            }
            ApplyOutcome::RolledBack { failure } => {
                emit(err, &format!("\nerror: {verb} failed and the previous revision was restored.\n{failure}\n"))?;
                Ok(ExitStatus::FailedRestored)
            }
            ApplyOutcome::Halted { failure, restore_error } => {
                let how = match restore_error {
                    Some(e) => format!("restoring the previous revision failed too: {e}. A human must look: `gantry status` shows what runs."),
                    None => "stopped where it failed (on_failure = \"pause\"). Fix the cause and run `gantry apply` to continue.".to_string(),
                };
                emit(err, &format!("\nerror: {verb} failed and was NOT restored.\n{failure}\n{how}\n"))?;
                Ok(ExitStatus::FailedHalted)
            }
            ApplyOutcome::Held { revision } => {
                emit(out, &format!(
                    "\nHeld at the preview: revision {revision}'s new colour runs beside the live one, which still takes all the traffic.\n  gantry promote    switch to it (one change per load balancer)\n  gantry rollback   abandon it (the new colour is removed)\n"
                ))?;
                Ok(ExitStatus::Success)
            }
            ApplyOutcome::Interrupted { after } => {
                let after = after.map_or("before any step finished".to_string(), |a| format!("after {a}"));
                emit(err, &format!(
                    "\nStopped safely {after}: revision {} is unfinished.\n  gantry apply --resume   continue it\n  gantry apply --undo     put revision {} back\n",
                    state.history.last().map_or(0, |r| r.revision),
                    state.revision,
                ))?;
                Ok(ExitStatus::FailedHalted)
            }
        }
    })
}

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

/// Drivers for the load balancers (nginx, HAProxy, commands), from the config and from the
/// state (a load balancer being removed is still left by its members).
pub(super) fn lb_drivers(
    model: &crate::model::Model,
    state: Option<&State>,
    config_dir: &std::path::Path,
) -> BTreeMap<String, Box<dyn crate::ports::LoadBalancer>> {
    let mut specs: BTreeMap<String, crate::model::LbSpec> = state
        .map(|s| {
            s.lbs
                .iter()
                .map(|(n, l)| (n.clone(), l.spec.clone()))
                .collect()
        })
        .unwrap_or_default();
    specs.extend(model.lbs.iter().map(|(n, l)| (n.clone(), l.clone())));
    let mut out: BTreeMap<String, Box<dyn crate::ports::LoadBalancer>> = BTreeMap::new();
    for (name, spec) in specs {
        if let crate::model::LbSpec::Nginx {
            upstream,
            upstream_file,
            check,
            reload,
            max_fails,
            fail_timeout,
            keepalive,
            backup,
            weights,
        } = spec
        {
            let driver = crate::drivers::nginx::Nginx {
                name: name.clone(),
                project: model.project.clone(),
                upstream,
                upstream_file: config_dir.join(upstream_file),
                check,
                reload,
                max_fails,
                fail_timeout: fail_timeout.map(|d| d.0),
                keepalive,
                backup,
                weights,
            };
            out.insert(name, Box::new(driver));
        } else if let crate::model::LbSpec::Command {
            join,
            leave,
            drain_check,
            timeout,
        } = spec
        {
            let driver = crate::drivers::command::CommandLb {
                join,
                leave,
                drain_check,
                timeout: timeout.0,
            };
            out.insert(name, Box::new(driver));
        } else if let crate::model::LbSpec::Haproxy { socket, backend } = spec {
            let driver = crate::drivers::haproxy::Haproxy {
                socket: config_dir.join(socket),
                backend,
            };
            out.insert(name, Box::new(driver));
        }
    }
    // Load balancers in front of some hosts only see those hosts' members.
    for (name, hosts) in &model.lb_hosts {
        if let Some(inner) = out.remove(name) {
            let scoped = crate::drivers::scoped::HostScoped {
                inner,
                hosts: hosts.clone(),
            };
            out.insert(name.clone(), Box::new(scoped));
        }
    }
    out
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
fn stale(plan: &Plan, state: Option<&State>, config_sha256: &str) -> Option<String> {
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
async fn preflight<R: ContainerRuntime>(
    plan: &Plan,
    state: &State,
    hosts: &BTreeMap<String, Target<R>>,
    config_dir: &std::path::Path,
    pinned: &BTreeMap<String, (String, String)>,
) -> Result<(BTreeMap<String, Vec<String>>, BTreeMap<String, String>), Error> {
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
                        "pre-flight: {} needs secret `{name}` from gantry's environment, and it is not set; nothing was changed",
                        c.address
                    )));
                }
            }
        }
        env.insert(c.address.name.clone(), lines);
        if c.action == Action::NoOp {
            continue;
        }
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
            let id = match t
                .runtime
                .image_id(&spec.image)
                .await
                .map_err(|e| Error::Message(format!("pre-flight: {e}")))?
            {
                Some(id) => id,
                None => t.runtime.pull(&spec.image).await.map_err(|e| {
                    Error::Message(format!(
                        "pre-flight: {} on host `{host}`: {e}; nothing was changed",
                        c.address
                    ))
                })?,
            };
            // One release runs one image everywhere: a tag that names different images on
            // different hosts is refused rather than mixed.
            match image_ids.get(&spec.image) {
                Some(other) if *other != id => {
                    return Err(Error::Message(format!(
                        "pre-flight: `{}` is image {} on host `{host}` but {} on another host; push the same image to every host (or pin it by digest); nothing was changed",
                        spec.image,
                        short_id(&id),
                        short_id(other)
                    )));
                }
                _ => {
                    image_ids.insert(spec.image.clone(), id);
                }
            }
        }
    }
    Ok((env, image_ids))
}
