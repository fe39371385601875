//! `gantry apply [PLANFILE]`: plan (or load a saved plan), show it, confirm, lock, pre-flight,
//! then run the engine against the real Docker engine(s).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use super::{Common, Error, emit, load};
use crate::drivers::docker::DockerRuntime;
use crate::drivers::fs::{LockError, StateDir};
use crate::drivers::probe::HttpProber;
use crate::engine::report::{LineReporter, ProgressFormat, TtyReporter};
use crate::engine::{self, ApplyContext, ApplyOutcome, StateSink, Target};
use crate::exit::ExitStatus;
use crate::plan::{Action, Plan, Spec};
use crate::ports::ContainerRuntime;
use crate::state::State;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub plan_file: Option<PathBuf>,
    pub yes: bool,
    pub progress: ProgressFormat,
}

struct FileSink<'a>(&'a StateDir);

impl StateSink for FileSink<'_> {
    fn save(&self, state: &State) -> Result<(), String> {
        self.0.write(state).map_err(|e| e.to_string())
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

pub fn apply(
    common: &Common,
    opts: &ApplyOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, Error> {
    let loaded = load(common)?;
    let state_dir = common.state_dir();
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
        None => crate::plan::plan(&loaded.model, state.as_ref(), &loaded.sha256),
    };
    let run = Execution {
        model: &loaded.model,
        config_sha256: &loaded.sha256,
        origin: "apply".into(),
        pinned: BTreeMap::new(),
        confirmed: opts.yes || opts.plan_file.is_some(),
    };
    execute(common, &plan, &run, opts.progress, out, err)
}

/// What differs between an apply and a rollback once the plan is made.
pub struct Execution<'a> {
    /// Hosts, project and load balancers to drive.
    pub model: &'a crate::model::Model,
    pub config_sha256: &'a str,
    /// `apply`, or `rollback of revision N`.
    pub origin: String,
    /// Image reference -> the image ID it must run (a rollback runs exactly what was
    /// recorded, never pulls); recorded as `(image ID, where it was recorded)`.
    pub pinned: BTreeMap<String, (String, String)>,
    /// No confirmation needed (`--yes`, or a saved plan file).
    pub confirmed: bool,
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
    let verb = if run.origin == "apply" {
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
    if !run.confirmed {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Message(format!(
                "refusing to {verb} without confirmation: no terminal to ask on. Pass --yes, or apply a saved plan file"
            )));
        }
        emit(
            out,
            &format!("\nDo you want to {verb}? Only `yes` is accepted: "),
        )?;
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            emit(out, "Cancelled; nothing was changed.\n")?;
            return Ok(ExitStatus::Error);
        }
    }

    let _lock = match state_dir.lock(if verb == "apply" { "apply" } else { "rollback" }, &now()) {
        Ok(l) => l,
        Err(LockError::Held(info, stale)) => {
            emit(err, &format!("error: {}\n", LockError::Held(info, stale)))?;
            return Ok(ExitStatus::Locked);
        }
        Err(LockError::Fs(e)) => return Err(e.into()),
    };
    // Re-read under the lock: another run may have finished in between.
    let state = state_dir.read()?;
    if let Some(why) = stale(plan, state.as_ref(), run.config_sha256) {
        emit(
            err,
            &format!("error: the state moved while waiting: {why}\n"),
        )?;
        return Ok(ExitStatus::StalePlan);
    }
    let state =
        state.unwrap_or_else(|| State::empty(&run.model.project, uuid::Uuid::new_v4().to_string()));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Message(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        // Pre-flight: nothing is touched until every check passes.
        let mut hosts = BTreeMap::new();
        for h in &run.model.hosts {
            let rt = DockerRuntime::connect(&h.docker).await.map_err(|e| Error::Message(format!("pre-flight: host `{}`: {e}; nothing was changed", h.name)))?;
            rt.ping().await.map_err(|e| Error::Message(format!("pre-flight: host `{}`: {e}; nothing was changed", h.name)))?;
            hosts.insert(h.name.clone(), Target { runtime: rt, address: h.address.clone() });
        }
        let (env, image_ids) = preflight(plan, &state, &hosts, &common.config_dir(), &run.pinned).await?;

        let reporter: Box<dyn crate::engine::report::Reporter> = match progress {
            ProgressFormat::Auto if std::io::stderr().is_terminal() => Box::new(TtyReporter::new()),
            format => Box::new(LineReporter::new(std::io::stderr(), format)),
        };
        let sink = FileSink(&state_dir);
        let ctx = ApplyContext {
            project: &run.model.project,
            hosts: &hosts,
            prober: HttpProber::new(),
            reporter: reporter.as_ref(),
            sink: &sink,
            env: &env,
            image_ids: &image_ids,
            origin: run.origin.clone(),
            lbs: &lbs,
            keep_previous: run.model.keep_previous,
        };
        let (outcome, _state) = engine::apply(plan, state, &ctx).await;
        match outcome {
            ApplyOutcome::Succeeded { revision } => {
                let done = if verb == "apply" { "Apply complete".to_string() } else { format!("Rollback complete ({})", run.origin) };
                emit(out, &format!("\n{done}: revision {revision}. {}\n", plan.summary.line()))?;
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
fn lb_drivers(
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
    out
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
    let mut image_ids = BTreeMap::new();
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
        if c.action == Action::NoOp || image_ids.contains_key(&spec.image) {
            continue;
        }
        for host in &spec.hosts {
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
            image_ids.insert(spec.image.clone(), id);
        }
    }
    Ok((env, image_ids))
}
