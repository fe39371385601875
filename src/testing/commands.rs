//! A command runner with scripted programs. A program answers what its script says after
//! the time it says (tokio's clock), under the same timeout and with the same messages as
//! `drivers::command`; a program with no script cannot be run, as a missing one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::ports::{BoxFuture, CommandRunner};

/// What a scripted program does with its arguments and environment: its result, and how
/// long it takes.
pub type Script =
    Arc<dyn Fn(&[String], &[(String, String)]) -> (Result<(), String>, Duration) + Send + Sync>;

/// One call as the runner got it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandCall {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Default)]
struct Inner {
    scripts: BTreeMap<String, Script>,
    calls: Vec<CommandCall>,
}

/// Cloning shares the scripts and the record.
#[derive(Clone, Default)]
pub struct FakeCommands {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for FakeCommands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCommands")
            .field("calls", &self.lock().calls)
            .finish()
    }
}

impl FakeCommands {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `program` runs `script`.
    pub fn on(
        &self,
        program: &str,
        script: impl Fn(&[String], &[(String, String)]) -> (Result<(), String>, Duration)
        + Send
        + Sync
        + 'static,
    ) {
        self.lock()
            .scripts
            .insert(program.to_string(), Arc::new(script));
    }

    /// `program` always succeeds at once.
    pub fn succeed(&self, program: &str) {
        self.on(program, |_, _| (Ok(()), Duration::ZERO));
    }

    /// `program` always fails at once, printing `output` and exiting with `code`.
    pub fn fail(&self, program: &str, output: &str, code: i32) {
        let text = format!("{output} (exit status: {code})");
        self.on(program, move |_, _| (Err(text.clone()), Duration::ZERO));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<CommandCall> {
        self.lock().calls.clone()
    }
}

impl CommandRunner for FakeCommands {
    fn run<'a>(
        &'a self,
        argv: &'a [String],
        env: &'a [(String, String)],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(program) = argv.first() else {
                return Err("empty command".into());
            };
            let script = {
                let mut inner = self.lock();
                inner.calls.push(CommandCall {
                    argv: argv.to_vec(),
                    env: env.to_vec(),
                });
                inner.scripts.get(program).cloned()
            };
            let Some(script) = script else {
                return Err(format!(
                    "cannot run `{program}`: No such file or directory (os error 2)"
                ));
            };
            let (result, takes) = script(argv, env);
            if takes > timeout {
                tokio::time::sleep(timeout).await;
                return Err(format!("no answer within {}s", timeout.as_secs_f64()));
            }
            tokio::time::sleep(takes).await;
            result
        })
    }
}
