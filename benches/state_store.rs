//! Median round trip of a state write to the backend (issue 15), against a real
//! S3-compatible server (moto, started here on a free loopback port and stopped at the end)
//! and, for comparison, the local state directory. A state write to S3 is two PUTs (the
//! previous state as the backup, then the new one conditional on the ETag read); a journal
//! entry is one PUT created only if absent.
//!
//!   cargo bench --bench state_store            # needs `moto_server` and python3 with boto3
//!   WRITES=500 cargo bench --bench state_store

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gantry::drivers::fs::StateDir;
use gantry::drivers::s3::S3Store;
use gantry::drivers::store::StateStore;
use gantry::model::state_backend::S3Backend;
use gantry::state::State;
use gantry::state::journal::Entry;

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn start_moto(dir: &std::path::Path) -> (Moto, u16) {
    let log = dir.join("moto.log");
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .process_group(0)
        .spawn()
        .expect("moto_server (pip install 'moto[server]')");
    let moto = Moto(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut text = String::new();
        let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
        if let Some(port) = text
            .split("Running on http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
        {
            return (moto, port);
        }
        assert!(Instant::now() < deadline, "moto did not start: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The plan scenario's state (`tests/fixtures/plan/state.json`).
fn sample() -> State {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/plan/state.json"
    ))
    .unwrap();
    State::from_json(&text).unwrap()
}

fn stats(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<28} median {:6.2} ms   p90 {:6.2} ms   min {:6.2} ms   ({} samples)",
        at(0.5),
        at(0.9),
        ms[0],
        ms.len()
    );
}

fn time(n: usize, mut f: impl FnMut(usize)) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

fn main() {
    let writes: usize = std::env::var("WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let (_moto, port) = start_moto(tmp.path());
    let endpoint = format!("http://127.0.0.1:{port}");
    let made = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import boto3; boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b').create_bucket(Bucket='gantry-bench')"
        ))
        .status()
        .unwrap();
    assert!(made.success(), "bucket");
    let cfg = S3Backend {
        bucket: "gantry-bench".into(),
        key: "bench".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint),
        stale_lock_after: gantry::model::Duration::from_secs(120),
    };
    let s3 = S3Store::open_with(
        &cfg,
        tmp.path().join("local"),
        Some(("a".into(), "b".into())),
    )
    .unwrap();
    let local = StateDir {
        dir: tmp.path().join("dir"),
    };
    let mut state = sample();
    println!(
        "state of {} bytes; {writes} writes each",
        state.to_json().len()
    );
    s3.read().unwrap();
    let s3_writes = time(writes, |i| {
        state.serial = i as u64 + 1;
        s3.write(&state).unwrap();
    });
    let local_writes = time(writes, |i| {
        state.serial = i as u64 + 1;
        local.write(&state).unwrap();
    });
    let begin = Entry::Begin {
        revision: 1,
        origin: gantry::state::Origin::Apply,
        pid: 1,
        host: "bench".into(),
        at: "2026-01-01T00:00:00Z".into(),
        prior: Box::new(state.clone()),
    };
    let journal = s3.begin_journal(&begin).unwrap();
    let entry = Entry::Restoring {
        at: "2026-01-01T00:00:00Z".into(),
    };
    let s3_entries = time(writes, |_| journal.append(&entry).unwrap());
    let s3_reads = time(writes / 4, |_| {
        s3.read().unwrap();
    });
    stats("S3 state write (2 PUTs)", s3_writes);
    stats("S3 journal entry (1 PUT)", s3_entries);
    stats("S3 state read (1 GET)", s3_reads);
    stats("local state write (fsync)", local_writes);
}
