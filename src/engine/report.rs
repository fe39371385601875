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
    /// Live spinners per resource on a terminal, plain lines otherwise.
    Auto,
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
            ProgressFormat::Plain | ProgressFormat::Auto => {
                let place = |r: &str, h: &Option<String>, b: &Option<String>| {
                    format!("{r} {}", place(h, b)).trim_end().to_string()
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

/// Live progress on a terminal (indicatif): one spinner per resource showing its current
/// step, and a line per finished step above them.
pub struct TtyReporter {
    multi: indicatif::MultiProgress,
    bars: Mutex<std::collections::BTreeMap<String, indicatif::ProgressBar>>,
}

impl Default for TtyReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl TtyReporter {
    pub fn new() -> Self {
        TtyReporter {
            multi: indicatif::MultiProgress::new(),
            bars: Mutex::new(Default::default()),
        }
    }

    fn bar(&self, resource: &str) -> indicatif::ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(resource.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{spinner} {prefix:.bold} {wide_msg} {elapsed:.dim}",
                ) {
                    bar.set_style(style);
                }
                bar.set_prefix(resource.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .clone()
    }
}

/// `host local batch 1/3 ` (with a trailing space), or nothing.
fn place(host: &Option<String>, batch: &Option<String>) -> String {
    let mut s = String::new();
    if let Some(h) = host {
        s.push_str(&format!("host {h} "));
    }
    if let Some(b) = batch {
        s.push_str(&format!("batch {b} "));
    }
    s
}

impl Reporter for TtyReporter {
    fn event(&self, e: Event) {
        match e {
            Event::StepStarted {
                resource,
                host,
                batch,
                step,
            } => {
                self.bar(&resource)
                    .set_message(format!("{}{step}", place(&host, &batch)));
            }
            Event::StepFinished {
                resource,
                host,
                batch,
                step,
                elapsed_ms,
                detail,
            } => {
                let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
                let _ = self.multi.println(format!(
                    "  ok {resource} {}{step} in {}{detail}",
                    place(&host, &batch),
                    seconds(elapsed_ms)
                ));
            }
            Event::StepFailed {
                resource,
                host,
                batch,
                step,
                elapsed_ms,
                reason,
            } => {
                self.bar(&resource).abandon_with_message(format!(
                    "FAILED {}{step} after {}: {reason}",
                    place(&host, &batch),
                    seconds(elapsed_ms)
                ));
            }
            Event::Note { message } => {
                let _ = self.multi.println(message);
            }
        }
    }
}

impl Drop for TtyReporter {
    fn drop(&mut self) {
        for bar in self.bars.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}
