//! Progress events of apply, and their two plain renderings: one line per step with a
//! timestamp, or one JSON object per line for CI log parsers.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// What happened, as it happens.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    StepStarted {
        resource: String,
        host: Option<String>,
        batch: Option<String>,
        step: String,
    },
    StepFinished {
        resource: String,
        host: Option<String>,
        batch: Option<String>,
        step: String,
        elapsed_ms: u128,
        detail: Option<String>,
    },
    StepFailed {
        resource: String,
        host: Option<String>,
        batch: Option<String>,
        step: String,
        elapsed_ms: u128,
        reason: String,
    },
    Note {
        message: String,
    },
}

pub trait Reporter: Send + Sync {
    fn event(&self, e: Event);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressFormat {
    /// One line per step with a timestamp.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Writes events to a writer in the chosen format.
pub struct LineReporter<W: Write + Send> {
    out: Mutex<W>,
    format: ProgressFormat,
}

impl<W: Write + Send> LineReporter<W> {
    pub fn new(out: W, format: ProgressFormat) -> Self {
        LineReporter {
            out: Mutex::new(out),
            format,
        }
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

pub fn seconds(ms: u128) -> String {
    format!("{:.1}s", Duration::from_millis(ms as u64).as_secs_f64())
}

impl<W: Write + Send> Reporter for LineReporter<W> {
    fn event(&self, e: Event) {
        let line = match self.format {
            ProgressFormat::Json => {
                let mut v = serde_json::to_value(&e).unwrap_or_default();
                if let Some(map) = v.as_object_mut() {
                    map.insert("ts".into(), now().into());
                }
                v.to_string()
            }
            ProgressFormat::Plain => {
                let place = |r: &str, h: &Option<String>, b: &Option<String>| {
                    let mut s = r.to_string();
                    if let Some(h) = h {
                        s.push_str(&format!(" host {h}"));
                    }
                    if let Some(b) = b {
                        s.push_str(&format!(" batch {b}"));
                    }
                    s
                };
                match &e {
                    Event::StepStarted {
                        resource,
                        host,
                        batch,
                        step,
                    } => format!("{} {}: {step} ...", now(), place(resource, host, batch)),
                    Event::StepFinished {
                        resource,
                        host,
                        batch,
                        step,
                        elapsed_ms,
                        detail,
                    } => format!(
                        "{} {}: {step} done in {}{}",
                        now(),
                        place(resource, host, batch),
                        seconds(*elapsed_ms),
                        detail
                            .as_ref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    ),
                    Event::StepFailed {
                        resource,
                        host,
                        batch,
                        step,
                        elapsed_ms,
                        reason,
                    } => {
                        format!(
                            "{} {}: {step} FAILED after {}: {reason}",
                            now(),
                            place(resource, host, batch),
                            seconds(*elapsed_ms)
                        )
                    }
                    Event::Note { message } => format!("{} {message}", now()),
                }
            }
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}
