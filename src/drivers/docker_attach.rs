//! The parts of the Docker API that stream to and from a person rather than change what runs:
//! a container's output (`gantry logs`) and a command run inside it (`gantry exec`). They are
//! not `ContainerRuntime` methods: the engine never needs them, and they move bytes between
//! the engine and a terminal, which the in-memory fake has no use for.

use std::io::Write;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{LogsOptions, ResizeExecOptions};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::ports::RuntimeError;

/// What to read of a container's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogQuery {
    /// Keep the stream open for what the container writes next (until it stops).
    pub follow: bool,
    /// Only lines written at or after this Unix time, in seconds (the engine's resolution
    /// through its API); 0: from the beginning.
    pub since: i64,
    /// Only the last this many lines; `None`: all.
    pub tail: Option<u64>,
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the engine received it; `None` when the engine gave no readable timestamp.
    pub at: Option<SystemTime>,
    pub stderr: bool,
    /// Without its newline; invalid UTF-8 replaced.
    pub text: String,
}

pub type LineStream = Pin<Box<dyn Stream<Item = Result<Vec<LogLine>, RuntimeError>> + Send>>;

/// The output of container `id`, stdout and stderr, as lines with the engine's timestamps,
/// in the order the engine kept them. Ends when the container's output does (at once
/// without `follow`; when it stops with it), quietly when the container is removed.
pub fn log_lines(docker: &Docker, id: &str, query: LogQuery) -> LineStream {
    let options = LogsOptions {
        follow: query.follow,
        stdout: true,
        stderr: true,
        since: i32::try_from(query.since).unwrap_or(i32::MAX),
        timestamps: true,
        tail: query
            .tail
            .map_or_else(|| "all".to_string(), |n| n.to_string()),
        ..Default::default()
    };
    let id = id.to_string();
    let chunks = docker.logs(&id, Some(options));
    let state = (Box::pin(chunks), Lines::default(), false);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(mut chunks, mut lines, done)| {
            let id = id.clone();
            async move {
                if done {
                    return None;
                }
                match chunks.next().await {
                    Some(Ok(chunk)) => {
                        let out = lines.push(&chunk);
                        Some((Ok(out), (chunks, lines, false)))
                    }
                    Some(Err(e)) if is_not_found(&e) => {
                        Some((Ok(lines.finish()), (chunks, lines, true)))
                    }
                    Some(Err(e)) => Some((
                        Err(engine_error(&format!("read the logs of {id}"), &e)),
                        (chunks, lines, true),
                    )),
                    None => Some((Ok(lines.finish()), (chunks, lines, true))),
                }
            }
        },
    ))
}

/// Turns the engine's frames (`<RFC 3339 time> <text>`, one log entry each, an entry being
/// a line, several lines of a TTY's write, or part of a long line) into lines. A line cut
/// over several entries keeps the time of its first part.
#[derive(Debug, Default)]
pub struct Lines {
    /// The unfinished last line of stdout and of stderr, with its time.
    partial: [Option<(Option<SystemTime>, String)>; 2],
}

impl Lines {
    pub fn push(&mut self, chunk: &LogOutput) -> Vec<LogLine> {
        let stderr = matches!(chunk, LogOutput::StdErr { .. });
        let raw = String::from_utf8_lossy(chunk.as_ref());
        let (at, text) = split_timestamp(&raw);
        let slot = &mut self.partial[usize::from(stderr)];
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(nl) = rest.find('\n') {
            let (line, at) = match slot.take() {
                Some((first, mut start)) => {
                    start.push_str(&rest[..nl]);
                    (start, first)
                }
                None => (rest[..nl].to_string(), at),
            };
            out.push(LogLine {
                at,
                stderr,
                text: line.strip_suffix('\r').unwrap_or(&line).to_string(),
            });
            rest = &rest[nl + 1..];
        }
        if !rest.is_empty() {
            match slot {
                Some((_, start)) => start.push_str(rest),
                None => *slot = Some((at, rest.to_string())),
            }
        }
        out
    }

    /// What is left when the output ends: a last line without a newline.
    pub fn finish(&mut self) -> Vec<LogLine> {
        let mut out = Vec::new();
        for (i, slot) in self.partial.iter_mut().enumerate() {
            if let Some((at, text)) = slot.take() {
                out.push(LogLine {
                    at,
                    stderr: i == 1,
                    text,
                });
            }
        }
        out.sort_by_key(|l| l.at);
        out
    }
}

/// `2024-05-01T10:00:00.123456789Z rest` -> (that time, `rest`); a frame without a readable
/// time is all text.
fn split_timestamp(raw: &str) -> (Option<SystemTime>, &str) {
    if let Some((first, rest)) = raw.split_once(' ')
        && let Ok(at) = humantime::parse_rfc3339(first)
    {
        return (Some(at), rest);
    }
    (None, raw)
}

/// How a command run with [`exec`] is connected.
pub struct ExecIo<'a> {
    /// Run it on a TTY (its output is then one stream, written to `out`).
    pub tty: bool,
    /// What to send to its stdin (`None`: stdin not attached). The command sees the end of
    /// its input when the channel closes.
    pub stdin: Option<mpsc::Receiver<Vec<u8>>>,
    /// The TTY's size at start, then each change (width, height).
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// Runs `cmd` in the running container `id` through the engine's exec API, its output
/// written to `io.out` and `io.err` as it comes, byte for byte; returns its exit code.
pub async fn exec(
    docker: &Docker,
    id: &str,
    cmd: &[String],
    env: &[String],
    io: ExecIo<'_>,
) -> Result<i64, RuntimeError> {
    let ExecIo {
        tty,
        mut stdin,
        mut resize,
        out,
        err,
    } = io;
    let created = docker
        .create_exec(
            id,
            CreateExecOptions {
                attach_stdin: Some(stdin.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(tty),
                env: (!env.is_empty()).then(|| env.to_vec()),
                cmd: Some(cmd.to_vec()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| engine_error(&format!("exec in {id}"), &e))?;
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| engine_error(&format!("start the exec in {id}"), &e))?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(RuntimeError::Engine {
            op: format!("attach to the exec in {id}"),
            message: "the engine started it detached".into(),
        });
    };
    let write_failed = |e: std::io::Error| RuntimeError::Engine {
        op: "write the command's output".into(),
        message: e.to_string(),
    };
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(LogOutput::StdErr { message })) => {
                    err.write_all(&message).and_then(|()| err.flush()).map_err(write_failed)?;
                }
                Some(Ok(chunk)) => {
                    out.write_all(chunk.as_ref()).and_then(|()| out.flush()).map_err(write_failed)?;
                }
                Some(Err(e)) => return Err(engine_error(&format!("read the exec's output in {id}"), &e)),
                None => break,
            },
            bytes = recv(&mut stdin) => match bytes {
                Some(bytes) => {
                    // The command may be gone already (it did not read all of it): its exit
                    // code says what happened, not this write.
                    if input.write_all(&bytes).await.is_err() {
                        stdin = None;
                    }
                }
                None => {
                    stdin = None;
                    let _ = input.shutdown().await;
                }
            },
            size = recv(&mut resize) => match size {
                Some((width, height)) => {
                    let _ = docker
                        .resize_exec(&created.id, ResizeExecOptions { w: width.into(), h: height.into() })
                        .await;
                }
                None => resize = None,
            },
        }
    }
    // The output ends as the process does; the engine records the exit code just after.
    for _ in 0..100 {
        let inspected = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| engine_error(&format!("inspect the exec in {id}"), &e))?;
        if inspected.running != Some(true)
            && let Some(code) = inspected.exit_code
        {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(RuntimeError::Engine {
        op: format!("read the exit code of the exec in {id}"),
        message: "the engine still reports it running after its output ended".into(),
    })
}

/// The next item of an optional channel; pending for ever without one (a `select!` arm
/// that never fires).
async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn engine_error(op: &str, e: &bollard::errors::Error) -> RuntimeError {
    let message = match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text.push_str(": ");
                    text.push_str(&s_text);
                }
                source = s.source();
            }
            text
        }
    };
    RuntimeError::Engine {
        op: op.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(s: &str) -> LogOutput {
        LogOutput::StdOut {
            message: s.to_string().into_bytes().into(),
        }
    }

    fn err(s: &str) -> LogOutput {
        LogOutput::StdErr {
            message: s.to_string().into_bytes().into(),
        }
    }

    fn at(s: &str) -> Option<SystemTime> {
        Some(humantime::parse_rfc3339(s).unwrap())
    }

    #[test]
    fn each_frame_is_split_into_lines_with_its_time() {
        let mut lines = Lines::default();
        let got = lines.push(&out("2024-05-01T10:00:00.000000001Z hello\n"));
        assert_eq!(
            got,
            vec![LogLine {
                at: at("2024-05-01T10:00:00.000000001Z"),
                stderr: false,
                text: "hello".into()
            }]
        );
        // A TTY's write: several lines in one entry, CRLF endings.
        let got = lines.push(&out("2024-05-01T10:00:01Z a\r\nb\r\n"));
        assert_eq!(
            got.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(got.iter().all(|l| l.at == at("2024-05-01T10:00:01Z")));
        assert!(lines.finish().is_empty());
    }

    #[test]
    fn a_line_cut_over_entries_is_one_line_with_the_first_time() {
        let mut lines = Lines::default();
        assert!(
            lines
                .push(&out("2024-05-01T10:00:00Z first half, "))
                .is_empty()
        );
        // stderr's own partial line does not mix with stdout's.
        assert!(lines.push(&err("2024-05-01T10:00:01Z oops")).is_empty());
        let got = lines.push(&out("2024-05-01T10:00:02Z second half\nnext\n"));
        assert_eq!(got[0].text, "first half, second half");
        assert_eq!(got[0].at, at("2024-05-01T10:00:00Z"));
        assert_eq!(got[1].text, "next");
        assert_eq!(got[1].at, at("2024-05-01T10:00:02Z"));
        let rest = lines.finish();
        assert_eq!(rest.len(), 1);
        assert!(rest[0].stderr);
        assert_eq!(rest[0].text, "oops");
    }

    #[test]
    fn a_frame_without_a_time_is_all_text() {
        let mut lines = Lines::default();
        let got = lines.push(&out("no time here\n"));
        assert_eq!(got[0].at, None);
        assert_eq!(got[0].text, "no time here");
    }
}
