//! The command line: clap definitions and dispatch to `ops`. No logic lives here.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::engine::report::ProgressFormat;
use crate::exit::ExitStatus;
use crate::ops::outcome::{self, Outcome, Stream};
use crate::ops::{self, Common};
use crate::render::Format;

const ABOUT: &str = "Declarative planner and deployer for container services.

Declare services, replicas, health checks, warm-up probes and load-balancer membership in
gantry.toml; gantry validates it, plans the difference from what it last applied, and prints
the plan as text, Markdown or JSON.";

#[derive(Debug, Parser)]
#[command(name = "gantry", version, about = ABOUT, propagate_version = true, after_help = "\
Exit codes (the same for every command):
  0 success    1 error before anything changed    2 plan --detailed-exitcode found changes
  3 failed, previous revision restored    4 failed, NOT restored    5 locked    6 stale plan file")]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "gantry.toml",
        value_name = "PATH"
    )]
    pub file: PathBuf,
    /// State directory (default: `.gantry/` beside the configuration file).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration; report every problem with file:line:col.
    #[command(after_help = "Examples:
  gantry validate
  gantry validate -f deploy/prod.toml

Exits 0 when the configuration is valid, 1 otherwise.")]
    Validate,

    /// Write a gantry configuration from a Compose file (version 2, 3 or the Compose
    /// specification, `deploy:` included), and list what could not be mapped.
    #[command(after_help = "Examples:
  gantry import docker-compose.yaml                       # writes gantry.toml
  gantry import docker-compose.yaml -o deploy/prod.toml
  gantry import docker-compose.yaml -o - > gantry.toml    # the configuration on stdout
  gantry import docker-compose.yaml --format json | jq '.unmapped'

Every key that has no counterpart in gantry is listed (stderr) with its line and why, and
written as a `# not mapped:` comment. Variables (${VAR}) are resolved from the environment,
then from the .env file beside the Compose file. Values of variables that look secret
(PASSWORD, SECRET, TOKEN, KEY) become `secret_env` and are never written.

Exits 0 when the configuration is written (unmapped keys or not), 1 when the Compose file
cannot be read (its file:line:col is named) or the output exists (without --force).")]
    Import {
        /// The Compose file (docker-compose.yaml, compose.yaml, a stack file).
        #[arg(value_name = "FILE")]
        compose_file: PathBuf,
        /// Where to write the configuration (default: the `-f/--file` path, `gantry.toml`);
        /// `-` writes it to stdout.
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace the output file when it exists.
        #[arg(long)]
        force: bool,
        /// The report: text lines on stderr, or one JSON object on stdout.
        #[arg(long, value_enum, default_value = "text")]
        format: ops::import::ReportFormat,
        /// The project name (default: COMPOSE_PROJECT_NAME, the file's `name:`, or its
        /// directory's name, as Compose chooses it).
        #[arg(long, value_name = "NAME")]
        project_name: Option<String>,
    },

    /// Show what apply would change, offline (no Docker engine, no network).
    #[command(after_help = "Examples:
  gantry plan
  gantry plan --detailed-exitcode              # 0 = no changes, 2 = changes, 1 = error
  gantry plan --format markdown > plan.md      # for a pull-request comment
  gantry plan --format json | jq '.summary'
  gantry plan --out release.plan               # apply exactly this later

When $GITHUB_STEP_SUMMARY is set, the Markdown view is appended to it as well.")]
    Plan {
        /// Output format. JSON is the canonical form; text and Markdown are rendered from it.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Exit 2 when there are changes, 0 when there are none, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the plan (JSON, with the state's lineage and serial) for `gantry apply PLANFILE`.
        #[arg(long, value_name = "PLANFILE")]
        out: Option<PathBuf>,
        /// Ask the engines what runs (one list call per host) and show the drift; services
        /// whose replicas drifted are rolled to repair them. Without it, plan is offline.
        #[arg(long)]
        refresh: bool,
    },

    /// Apply the changes to the Docker engine(s): rolling steps, probes, automatic rollback.
    #[command(after_help = "Examples:
  gantry apply                        # plan, show it, ask for `yes` on a terminal
  gantry apply --yes                  # no question (CI, scripts)
  gantry plan --out release.plan && gantry apply release.plan   # exactly that plan, or exit 6 if stale
  gantry apply --resume --yes    # after a run that died half way: reconcile, then continue
  gantry apply --undo --yes      # ... or put back the revision it started from
  gantry apply --yes --progress json  # one JSON event per line on stderr

Exit codes: 0 applied, 1 nothing changed (error before any change), 3 failed and the previous
revision was restored, 4 failed and NOT restored, 5 locked by another run, 6 stale plan file.")]
    Apply {
        /// A plan saved with `gantry plan --out`; refused when the state or config moved since.
        plan_file: Option<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Progress on stderr: live on a terminal (auto), one line per step (plain), or one
        /// JSON event per line (json).
        #[arg(long, value_enum, default_value = "auto")]
        progress: crate::engine::report::ProgressFormat,
        /// After a run that did not finish (killed, crashed, interrupted): reconcile the state
        /// with the engine, then continue to the configuration.
        #[arg(long, conflicts_with_all = ["undo", "plan_file"])]
        resume: bool,
        /// After a run that did not finish: undo what it did, back to the revision it
        /// started from.
        #[arg(long, conflicts_with = "plan_file")]
        undo: bool,
        /// Read the engines first (as `plan --refresh`): replicas that drifted are replaced.
        #[arg(long, conflicts_with = "plan_file")]
        refresh: bool,
        /// Blue-green: start, check and warm up the new colour and put it on the preview
        /// address, then stop before the preview check; `gantry promote` continues.
        #[arg(long, conflicts_with_all = ["hold_at_preview", "resume", "undo"])]
        prepare: bool,
        /// Blue-green: stop after the preview check, before any user traffic moves;
        /// `gantry promote` continues.
        #[arg(long, conflicts_with_all = ["resume", "undo"])]
        hold_at_preview: bool,
    },

    /// Take over running containers gantry did not create (a Compose project's, a stack's
    /// Swarm services, or named containers) without restarting them: they become the
    /// current revision, with the load-balancer members that point at them.
    #[command(after_help = "Examples:
  gantry adopt                                  # the Compose project named as [project] name
  gantry adopt --compose-project shop --yes     # another Compose project name
  gantry adopt --container web=api-1,api-2,api-3 --container worker=worker-1
  gantry adopt --stack shop                     # a stack's services (runtime = \"swarm\")

Nothing is changed on any engine or load balancer; only the state is written (under the lock).
Containers the configuration does not describe (service, host, image, port) are refused, each
mismatch named, with nothing recorded: exit 1. The next `gantry apply` rolls the adopted
containers like any revision; `gantry rollback` can return to them while they are kept.")]
    Adopt {
        /// The Compose project whose containers to take over (label
        /// com.docker.compose.project; default: the configuration's project name).
        #[arg(long, value_name = "NAME", conflicts_with_all = ["stack", "container"])]
        compose_project: Option<String>,
        /// The stack whose Swarm services to take over (label com.docker.stack.namespace);
        /// each must be a service with runtime = "swarm" of the same name.
        #[arg(long, value_name = "NAME", conflicts_with = "container")]
        stack: Option<String>,
        /// Containers by name or ID for a service: SERVICE=NAME[,NAME...] (repeatable).
        #[arg(long, value_name = "SERVICE=NAMES", value_parser = ops::adopt::parse_container_arg)]
        container: Vec<(String, Vec<String>)>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },

    /// Continue a blue-green release held at its preview: switch the load balancers to the
    /// new colour, one change each.
    #[command(after_help = "Examples:
  gantry apply --hold-at-preview --yes && gantry promote --yes
  gantry apply --prepare --yes     # before the release window: the next colour starts and warms up
  gantry promote --yes             # in the window: preview check, then the switch

`gantry rollback` instead abandons the held release (its new colour is removed).")]
    Promote {
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        #[arg(long, value_enum, default_value = "auto")]
        progress: crate::engine::report::ProgressFormat,
    },

    /// Scale down the old colours of blue-green services whose `scale_down_delay` is over.
    #[command(
        name = "scale-down",
        after_help = "Examples:
  gantry scale-down          # what is due now; says when the next one is
  gantry scale-down --wait   # sleep until each is due (apply starts this in the background)"
    )]
    ScaleDown {
        /// Wait until every scheduled scale-down is due and done.
        #[arg(long)]
        wait: bool,
    },

    /// Go back to an earlier revision: its recorded image IDs (no pull), the same rolling
    /// steps, probes and load-balancer membership as apply.
    #[command(after_help = "Examples:
  gantry rollback                 # to the previous successful revision, after confirmation
  gantry rollback --yes           # no question (scripts, incidents)
  gantry rollback --to 3 --yes    # to revision 3 (see `gantry history`)

Exit codes as apply: 0 rolled back, 1 nothing changed, 3 failed and restored, 4 failed and NOT
restored, 5 locked.")]
    Rollback {
        /// The revision to go back to (default: the previous successful one).
        #[arg(long, value_name = "REVISION")]
        to: Option<u64>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        #[arg(long, value_enum, default_value = "auto")]
        progress: crate::engine::report::ProgressFormat,
        /// Create new containers from the recorded images even where the revision's stopped
        /// containers are kept (the fast path starts those again).
        #[arg(long)]
        recreate: bool,
    },

    /// What runs now, from the engines, against what the state records (drift included).
    #[command(after_help = "Examples:
  gantry status
  gantry -f deploy/prod.toml status")]
    Status,

    /// The output of every replica of the services (all when none named) on every host,
    /// merged in time order, each line prefixed `service#index@host | `.
    #[command(after_help = "Examples:
  gantry logs                          # every running replica of every service
  gantry logs web worker --tail 50     # the last 50 lines of each replica of web and worker
  gantry logs web --since 10m          # or --since 2024-05-01T10:00:00Z
  gantry logs --follow                 # keep streaming; replicas a rollout starts join in
  gantry logs --stopped web            # also the replicas kept for a rollback

stdout and stderr of the containers are both shown. The prefixes are coloured on a terminal
only (never with NO_COLOR). Takes no lock: works while an apply runs.")]
    Logs {
        /// Services to show (default: all).
        #[arg(value_name = "SERVICE")]
        services: Vec<String>,
        /// Keep streaming, picking up replicas that start (a rollout's new ones); stop with
        /// Ctrl-C. (No `-f`: that is `--file`.)
        #[arg(long)]
        follow: bool,
        /// Only lines since this long ago (30s, 10m, 1h) or this RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only the last N lines of each replica.
        #[arg(long, short = 'n', value_name = "N")]
        tail: Option<u64>,
        /// Also the stopped replicas (kept for a rollback).
        #[arg(long)]
        stopped: bool,
        /// Show the engine's time of each line.
        #[arg(long, short = 't')]
        timestamps: bool,
    },

    /// Run a command in a running replica of a service (by default the first healthy one),
    /// on a TTY when stdin is a terminal; exits with the command's exit code.
    #[command(after_help = "Examples:
  gantry exec web -- sh                        # a shell in the first healthy replica of web
  gantry exec web --replica 2 -- cat /etc/hosts
  gantry exec web --replica 1 --host node-b -- env
  gantry exec db -- pg_dump app > dump.sql     # no terminal: output streamed as it is

Exits with the command's exit code; 1 when gantry itself fails (unknown service, no such
replica: the replicas there are are listed). Takes no lock: works while an apply runs.")]
    Exec {
        /// The service to run in.
        service: String,
        /// The replica's index (web#2 is 2; see `gantry status`).
        #[arg(long, value_name = "N")]
        replica: Option<u32>,
        /// The host of the replica (a `[[host]]` name).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },

    /// Run a one-off container from what a service runs now (its network, volumes, env and
    /// secrets, the image ID its replicas run) and return the command's exit code.
    #[command(after_help = "Examples:
  gantry run web -- python3 manage.py shell -c 'print(1)'
  gantry run web --host node-b -- ./bin/rake cache:clear

The container is removed when the command ends (and on Ctrl-C). Nothing is pulled: it runs
the image the service's replicas run. Exits with the command's exit code; 1 when gantry
itself fails (the service was never applied, or has no running replica). Takes no lock.")]
    Run {
        /// The service whose spec the container is made from.
        service: String,
        /// The host to run on (a `[[host]]` with a running replica; default: the first).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },

    /// Run a `[task.NAME]` by hand, from what its service runs now.
    #[command(
        name = "run-task",
        after_help = "Examples:
  gantry run-task migrate

Runs the task's command with its timeout in a one-off container made from what its service
runs now (not from the configuration's new spec, as an apply does), streams its output with
the service's secrets masked, and removes it. Exits with the command's exit code. Records
nothing: the next apply still decides by itself whether the task runs."
    )]
    RunTask {
        /// The task's name (`[task.NAME]`).
        name: String,
    },

    /// Remove stopped containers beyond `keep_previous` and images no container uses; with
    /// --volumes, also the project's volumes no service declares any more.
    #[command(after_help = "Examples:
  gantry prune                    # after lowering [project] keep_previous, or now and then
  gantry prune --volumes          # also volumes no service declares: lists them, asks for `yes`
  gantry prune --volumes --yes    # no question (scripts)

Running containers and the kept revisions' containers and images are never removed. Volumes
are removed only with --volumes, only those carrying the project's label that no service of
the configuration declares, and never one a container (running or kept) still uses.")]
    Prune {
        /// Also remove the project's volumes that no service declares any more (their data
        /// with them), after confirmation.
        #[arg(long)]
        volumes: bool,
        /// Do not ask for confirmation (--volumes).
        #[arg(long, short = 'y')]
        yes: bool,
    },

    /// Show every apply attempt recorded in the state: revision, when, images, outcome.
    #[command(after_help = "Examples:
  gantry history
  gantry history --state-dir /srv/deploy/.gantry")]
    History,

    /// Remove the state lock left by a run that died (check that none is running first).
    #[command(
        name = "force-unlock",
        after_help = "Examples:
  gantry force-unlock     # after `gantry apply` says the lock is stale"
    )]
    ForceUnlock,

    /// Read, replace, move or repair the state (see `gantry state --help`).
    #[command(after_help = "Examples:
  gantry state pull > state.json       # the current state, wherever [state] keeps it
  gantry state push state.json         # replace it (lineage and serial checked)
  gantry state migrate --to s3         # copy .gantry/ into the bucket [state] names
  gantry state restore-backup          # after a command said the state file cannot be read")]
    State {
        #[command(subcommand)]
        command: StateCommand,
    },

    /// Print the dependency graph as Graphviz DOT.
    #[command(after_help = "Examples:
  gantry graph
  gantry graph | dot -Tsvg > graph.svg")]
    Graph,

    /// Print a shell completion script.
    #[command(after_help = "Examples:
  gantry completions bash > /etc/bash_completion.d/gantry
  gantry completions zsh > \"${fpath[1]}/_gantry\"
  gantry completions fish > ~/.config/fish/completions/gantry.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print the current state (JSON, exactly as stored) to stdout. Reads only: no lock,
    /// read-only credentials are enough.
    #[command(after_help = "Examples:
  gantry state pull > state.json
  gantry state pull | jq .serial")]
    Pull,
    /// Replace the state with FILE. Refused (exit 1, nothing changed) when FILE is of
    /// another lineage or project, or not newer (serial) than the current state, unless
    /// --force; takes the lock (exit 5 when a run holds it).
    #[command(after_help = "Examples:
  gantry state pull > state.json && $EDITOR state.json && gantry state push state.json
  gantry state push old-state.json --force     # a different lineage or an older serial")]
    Push {
        /// The state file to install.
        #[arg(value_name = "FILE")]
        state_file: PathBuf,
        /// Skip the lineage and serial checks (the serial is still moved forward, so that
        /// saved plans made against the replaced state are refused).
        #[arg(long)]
        force: bool,
    },
    /// Copy the state, its backup (with the history it holds) and the journal between the
    /// local directory and the S3 bucket `[state]` names (`backend = "s3"` in the
    /// configuration). The source is kept as it is. Refused while a run is unfinished, and
    /// when the destination already holds a state.
    #[command(after_help = "Examples:
  # from .gantry/ to the bucket: first set [state] backend = \"s3\", bucket, key, ...
  gantry state migrate --to s3
  # back: copy the bucket's state into .gantry/, then set backend = \"local\"
  gantry state migrate --to local")]
    Migrate {
        /// Where to copy the state to.
        #[arg(long, value_enum)]
        to: MigrateTarget,
    },
    /// Put `state.json.backup` back when `state.json` cannot be read (truncated, corrupt, or
    /// from a newer gantry). The current file is moved to `state.json.broken-<UTC time>`,
    /// never deleted; no engine is contacted.
    #[command(
        name = "restore-backup",
        after_help = "Examples:
  gantry state restore-backup                    # shows what it restores, asks for `yes`
  gantry state restore-backup --yes              # no question (scripts)
  gantry state restore-backup --state-dir /srv/deploy/.gantry --yes
  gantry status                                  # afterwards: the backup is one write behind

Exits 1 without changing anything when there is no usable backup, or when state.json is
readable or from a newer gantry (pass --force to replace it anyway); 5 when another run holds
the lock."
    )]
    RestoreBackup {
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Replace state.json even when it is readable or from a newer gantry (the newest
        /// serial, or what the newer gantry recorded, is then lost; the file is kept aside).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MigrateTarget {
    Local,
    S3,
}

/// Parses `args` and runs the command, writing to `out` and `err`. Returns the exit status;
/// a usage error is 1 (clap's own default of 2 would read as "changes present").
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    color: bool,
) -> ExitStatus {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let rendered = if color {
                e.render().ansi().to_string()
            } else {
                e.render().to_string()
            };
            let result = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    let _ = crate::render::write_out(out, &rendered);
                    Ok(Outcome::Done)
                }
                _ => Err(ops::Error::Usage(rendered)),
            };
            return finish(&result, None, out, err);
        }
    };
    let common = Common {
        config: cli.file,
        state_dir: cli.state_dir,
        color,
    };
    // The commands that run the engine end their `--progress json` stream with the outcome.
    let progress = match &cli.command {
        Command::Apply { progress, .. }
        | Command::Promote { progress, .. }
        | Command::Rollback { progress, .. } => Some(*progress),
        _ => None,
    };
    let result = match cli.command {
        Command::Validate => ops::validate::validate(&common, out).map(|_| Outcome::Done),
        Command::Import {
            compose_file,
            output,
            force,
            format,
            project_name,
        } => ops::import::import(
            &ops::import::ImportOptions {
                file: compose_file,
                output: output.unwrap_or_else(|| common.config.clone()),
                force,
                format,
                project_name,
            },
            out,
            err,
        )
        .map(|_| Outcome::Done),
        Command::Plan {
            format,
            detailed_exitcode,
            out: plan_out,
            refresh,
        } => {
            let opts = ops::plan::PlanOptions {
                format,
                detailed_exitcode,
                out: plan_out,
                refresh,
                step_summary: std::env::var_os("GITHUB_STEP_SUMMARY")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
            };
            ops::plan::plan(&common, &opts, out, err)
        }
        Command::Graph => ops::graph::graph(&common, out).map(|_| Outcome::Done),
        Command::Apply {
            plan_file,
            yes,
            progress,
            resume,
            undo,
            refresh,
            prepare,
            hold_at_preview,
        } => ops::apply::apply(
            &common,
            &ops::apply::ApplyOptions {
                plan_file,
                yes,
                progress,
                resume,
                undo,
                refresh,
                hold: if prepare {
                    crate::engine::Hold::BeforePreview
                } else if hold_at_preview {
                    crate::engine::Hold::AfterPreview
                } else {
                    crate::engine::Hold::No
                },
            },
            out,
            err,
        ),
        Command::Status => ops::status::status(&common, out),
        Command::Logs {
            services,
            follow,
            since,
            tail,
            stopped,
            timestamps,
        } => ops::logs::logs(
            &common,
            &ops::logs::LogsOptions {
                services,
                follow,
                since,
                tail,
                stopped,
                timestamps,
            },
            out,
            err,
        ),
        // The command's output goes to the process's own streams, byte for byte: `out` and
        // `err` strip ANSI sequences when not on a terminal, which would corrupt a dump.
        Command::Exec {
            service,
            replica,
            host,
            command,
        } => ops::exec::exec(
            &common,
            &ops::exec::ExecOptions {
                service,
                replica,
                host,
                command,
            },
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        Command::Run {
            service,
            host,
            command,
        } => ops::run::run(
            &common,
            &ops::run::RunOptions {
                service,
                host,
                command,
            },
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        Command::RunTask { name } => ops::run::run_task(
            &common,
            &name,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        Command::Prune { volumes, yes } => ops::prune::prune(
            &common,
            &ops::prune::PruneOptions { volumes, yes },
            out,
            err,
        ),
        Command::Adopt {
            compose_project,
            stack,
            container,
            yes,
        } => {
            let selection = match (stack, container.is_empty()) {
                (Some(stack), _) => ops::adopt::Selection::Stack(stack),
                (None, false) => ops::adopt::Selection::Containers(container),
                (None, true) => ops::adopt::Selection::Compose(compose_project),
            };
            ops::adopt::adopt(
                &common,
                &ops::adopt::AdoptOptions { selection, yes },
                out,
                err,
            )
        }
        Command::Promote { yes, progress } => {
            ops::promote::promote(&common, yes, progress, out, err)
        }
        Command::ScaleDown { wait } => ops::scale_down::scale_down(&common, wait, out, err),
        Command::Rollback {
            to,
            yes,
            progress,
            recreate,
        } => ops::rollback::rollback(
            &common,
            &ops::rollback::RollbackOptions {
                to,
                yes,
                progress,
                recreate,
            },
            out,
            err,
        ),
        Command::History => ops::history::history(&common, out).map(|_| Outcome::Done),
        Command::State {
            command: StateCommand::RestoreBackup { yes, force },
        } => ops::state_cmd::restore_backup(
            &common,
            &ops::state_cmd::RestoreOptions { yes, force },
            out,
        ),
        Command::State {
            command: StateCommand::Pull,
        } => ops::state_cmd::pull(&common, out),
        Command::State {
            command: StateCommand::Push { state_file, force },
        } => ops::state_cmd::push(&common, &state_file, force, out, err),
        Command::State {
            command: StateCommand::Migrate { to },
        } => ops::state_cmd::migrate(&common, matches!(to, MigrateTarget::S3), out),
        Command::ForceUnlock => ops::history::force_unlock(&common, out).map(|_| Outcome::Done),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "gantry", &mut buf);
            ops::emit(out, &String::from_utf8_lossy(&buf)).map(|_| Outcome::Done)
        }
    };
    finish(&result, progress, out, err)
}

/// Tells how the command ended (the human view, and the JSON line that ends a
/// `--progress json` stream) and returns its exit status.
fn finish(
    result: &Result<Outcome, ops::Error>,
    progress: Option<ProgressFormat>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitStatus {
    let (stream, text) = outcome::human(result);
    if !text.is_empty() {
        let _ = crate::render::write_out(
            match stream {
                Stream::Out => out,
                Stream::Err => &mut *err,
            },
            &text,
        );
    }
    if progress == Some(ProgressFormat::Json) {
        let _ = crate::render::write_out(err, &format!("{}\n", outcome::json(result)));
    }
    outcome::exit_status(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gantry(dir: &std::path::Path, args: &[&str]) -> (ExitStatus, String, String) {
        let config = dir.join("gantry.toml");
        let mut argv: Vec<OsString> = vec!["gantry".into(), "-f".into(), config.into()];
        argv.extend(args.iter().map(OsString::from));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run(argv, &mut out, &mut err, false);
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (status, text(out), text(err))
    }

    /// A saved plan made stale by editing the config after it was saved.
    fn stale_plan() -> tempfile::TempDir {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(fixtures.join("gantry.toml"), dir.path().join("gantry.toml")).unwrap();
        std::fs::create_dir(dir.path().join(".gantry")).unwrap();
        std::fs::copy(
            fixtures.join("state.json"),
            dir.path().join(".gantry/state.json"),
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let private = |p: &std::path::Path, mode| {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
            };
            private(&dir.path().join(".gantry"), 0o700);
            private(&dir.path().join(".gantry/state.json"), 0o600);
        }
        let plan = dir.path().join("release.plan");
        let (status, _, err) = gantry(dir.path(), &["plan", "--out", plan.to_str().unwrap()]);
        assert_eq!(status, ExitStatus::Success, "{err}");
        let mut toml = std::fs::read_to_string(dir.path().join("gantry.toml")).unwrap();
        toml.push_str("\n# edited after planning\n");
        std::fs::write(dir.path().join("gantry.toml"), toml).unwrap();
        dir
    }

    #[test]
    fn progress_json_ends_with_the_outcome_as_one_json_line() {
        let dir = stale_plan();
        let plan = dir.path().join("release.plan");
        let plan = plan.to_str().unwrap();
        let (status, _, err) = gantry(dir.path(), &["apply", plan, "--progress", "json"]);
        assert_eq!(status, ExitStatus::StalePlan);
        let (human, last) = err.trim_end().rsplit_once('\n').unwrap();
        assert!(human.starts_with("error: the plan file "), "{err}");
        let v: serde_json::Value = serde_json::from_str(last).unwrap();
        assert_eq!(v["event"], "outcome");
        assert_eq!(v["format_version"], ops::outcome::OUTCOME_FORMAT_VERSION);
        assert_eq!(v["outcome"], "stale_plan");
        assert_eq!(v["exit_code"], 6);
        assert_eq!(v["plan_file"], plan);
        assert_eq!(v["message"], human);

        // Without `--progress json`, the human text alone, as always.
        let (status, _, err) = gantry(dir.path(), &["apply", plan, "--progress", "plain"]);
        assert_eq!(status, ExitStatus::StalePlan);
        assert_eq!(format!("{human}\n"), err);
    }
}
