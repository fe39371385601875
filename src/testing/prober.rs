//! A prober with scripted answers per address. An answer takes the time it says on tokio's
//! clock (so a test with a paused clock runs at once), and one slower than the request's
//! timeout is a timeout, as for real. An address with no script refuses the connection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::ports::{BoxFuture, ProbeResult, Prober};

/// What one request to an address gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeAnswer {
    /// This HTTP status at once.
    Status(u16),
    /// This HTTP status after this long.
    Slow(u16, Duration),
    /// Nothing listens there.
    Refused,
}

#[derive(Debug, Default)]
struct Inner {
    /// Answers still to give per address; the last one repeats.
    scripts: BTreeMap<String, Vec<FakeAnswer>>,
    /// Requests per address, with their path.
    requests: Vec<(String, String)>,
}

/// Cloning shares the script and the record.
#[derive(Debug, Clone, Default)]
pub struct FakeProber {
    inner: Arc<Mutex<Inner>>,
}

impl FakeProber {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request to `address` gets `answer`.
    pub fn always(&self, address: &str, answer: FakeAnswer) {
        self.script(address, &[answer]);
    }

    /// Requests to `address` get `answers` in turn; the last one repeats.
    pub fn script(&self, address: &str, answers: &[FakeAnswer]) {
        self.lock()
            .scripts
            .insert(address.to_string(), answers.to_vec());
    }

    /// Every address of the form `host:port` on `host` answers `answer` unless scripted:
    /// for replicas whose engine-chosen ports a test does not know in advance.
    pub fn healthy_host(&self, host: &str) {
        self.always(&format!("{host}:*"), FakeAnswer::Status(200));
    }

    /// How many requests `address` got.
    pub fn requests_to(&self, address: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|(a, _)| a == address)
            .count()
    }

    /// Every request, `(address, path)`, in order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.lock().requests.clone()
    }

    fn next(&self, address: &str, path: &str) -> FakeAnswer {
        let mut inner = self.lock();
        inner.requests.push((address.to_string(), path.to_string()));
        let wildcard = address
            .rsplit_once(':')
            .map(|(host, _)| format!("{host}:*"))
            .unwrap_or_default();
        let key = if inner.scripts.contains_key(address) {
            address.to_string()
        } else {
            wildcard
        };
        match inner.scripts.get_mut(&key) {
            Some(answers) if answers.len() > 1 => answers.remove(0),
            Some(answers) => answers.first().copied().unwrap_or(FakeAnswer::Refused),
            None => FakeAnswer::Refused,
        }
    }
}

impl Prober for FakeProber {
    fn get<'a>(
        &'a self,
        address: &'a str,
        path: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, ProbeResult> {
        Box::pin(async move {
            let (outcome, takes) = match self.next(address, path) {
                FakeAnswer::Status(s) => (Ok(s), Duration::ZERO),
                FakeAnswer::Slow(s, d) => (Ok(s), d),
                FakeAnswer::Refused => (Err("connection refused".to_string()), Duration::ZERO),
            };
            if takes > timeout {
                tokio::time::sleep(timeout).await;
                return ProbeResult {
                    outcome: Err(format!("no answer within {} ms", timeout.as_millis())),
                    latency: timeout,
                };
            }
            tokio::time::sleep(takes).await;
            ProbeResult {
                outcome,
                latency: takes,
            }
        })
    }
}
