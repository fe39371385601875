//! Every process a test starts has an end: a command run to completion gets a deadline
//! ([`run_with_timeout`]), one left running in the background is a [`Background`] that is
//! killed when it drops, so also when the test panics. A hung gantry then fails its test
//! with what it printed so far instead of hanging CI, and nothing outlives the test run
//! (`.ci/run` checks that after `cargo test`).
#![allow(dead_code)]

use std::borrow::BorrowMut;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Runs a command with a time limit, capturing stdout and stderr. On timeout it is killed
/// and the error carries what it had printed.
pub fn run_with_timeout(
    mut cmd: impl BorrowMut<Command>,
    timeout: Duration,
) -> Result<Output, String> {
    let cmd = cmd.borrow_mut();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{:?}", cmd.get_program());
    let mut bg = Background::try_spawn(cmd, &what)?;
    bg.wait_within(timeout)
}

/// A process running beside the test: its piped stdout and stderr are read as it goes (a
/// full pipe would block it); killed with `SIGKILL` and reaped on drop unless it has been
/// waited for.
pub struct Background {
    what: String,
    child: Option<Child>,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
}

impl Background {
    /// Starts `cmd` as configured (stdio included; what is piped is collected); panics when
    /// it cannot start.
    pub fn spawn(cmd: impl BorrowMut<Command>, what: &str) -> Background {
        Self::try_spawn(cmd, what).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_spawn(mut cmd: impl BorrowMut<Command>, what: &str) -> Result<Background, String> {
        let mut child = cmd
            .borrow_mut()
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        let reader = |pipe: Option<Box<dyn Read + Send>>| {
            pipe.map(|mut p| {
                thread::spawn(move || {
                    let mut v = Vec::new();
                    let _ = p.read_to_end(&mut v);
                    v
                })
            })
        };
        let out = reader(child.stdout.take().map(|p| Box::new(p) as _));
        let err = reader(child.stderr.take().map(|p| Box::new(p) as _));
        Ok(Background {
            what: what.to_owned(),
            child: Some(child),
            out,
            err,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the exit; panics with its output when it takes longer than `timeout`
    /// (after killing it).
    pub fn wait(mut self, timeout: Duration) -> Output {
        self.wait_within(timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The exit status only (for processes whose output goes to a file).
    pub fn wait_status(self, timeout: Duration) -> ExitStatus {
        self.wait(timeout).status
    }

    fn wait_within(&mut self, timeout: Duration) -> Result<Output, String> {
        let mut child = self.child.take().expect("waited for once");
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("{} did not finish within {timeout:?}", self.what));
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => break Err(format!("waiting for {}: {e}", self.what)),
            }
        };
        let out = self.collect();
        match status {
            Ok(status) => Ok(Output {
                status,
                stdout: out.0,
                stderr: out.1,
            }),
            Err(e) => Err(format!(
                "{e}; killed. What it printed:\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.0),
                String::from_utf8_lossy(&out.1)
            )),
        }
    }

    /// `SIGKILL` now (what the crash tests do to gantry), and reaps it.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.collect();
    }

    fn collect(&mut self) -> (Vec<u8>, Vec<u8>) {
        let join =
            |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        (join(self.out.take()), join(self.err.take()))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `signal` (`TERM`, `KILL`, `INT`...) to one process, or to a process group when `pid`
/// is negative; best effort.
pub fn signal(signal: &str, pid: i64) {
    assert!(pid.abs() > 1, "never signal pid {pid}");
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops a server the tests started in its own process group (`process_group(0)`): `SIGTERM`
/// to the group, then `SIGKILL` to what is left of it after `grace`. A group, because nginx's
/// workers must go with their master.
pub fn stop_group(child: &mut Child, grace: Duration) {
    let pgid = i64::from(child.id());
    if matches!(child.try_wait(), Ok(None)) {
        signal("TERM", -pgid);
        let deadline = Instant::now() + grace;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
    // Also when the leader is gone: workers it left in the group die with it.
    signal("KILL", -pgid);
    let _ = child.wait();
}
