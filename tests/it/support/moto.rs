//! A real S3-compatible server for the shared-state tests: moto in server mode (PyPI
//! `moto[server]`, installed by .ci/run), which implements S3's conditional writes
//! (If-None-Match: * and If-Match on PutObject answer 412 when they do not hold) and, when
//! asked, checks IAM credentials and policies.
//!
//! It runs in the foreground on a free loopback port, in a process group of its own, and
//! the drop stops that group. moto keeps its data in memory, so an outage is played by a
//! TCP relay in front of it ([`Relay`]) that the test stops and starts again on the same
//! port: gantry sees connections refused, and then the same bucket again.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct MotoServer {
    pub port: u16,
    pub dir: PathBuf,
    process: Child,
}

fn moto_available() -> bool {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    works("python3", &["-c", "import moto.server, boto3"]) && works("moto_server", &["--help"])
}

/// `true` when moto's server can run. Otherwise prints `SKIPPED: ...` and returns `false`,
/// except under `CI=true`, where it panics (.ci/run installs it).
pub fn require_moto(test: &str) -> bool {
    if moto_available() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: moto (pip install 'moto[server]') missing, and CI=true: S3 tests must run in CI"
        );
    }
    println!("SKIPPED: {test}: moto's S3 server is not installed (pip install 'moto[server]')");
    false
}

impl MotoServer {
    /// Starts moto on a free loopback port. With `auth_after = Some(n)`, the first `n`
    /// requests are not authenticated (the test's set-up), every later one is checked
    /// against moto's IAM.
    pub fn start(dir: &Path, auth_after: Option<u32>) -> MotoServer {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("moto.log");
        // `moto_server` (not `python3 -m moto.server`): the process is then named
        // moto_server, which .ci/run's check for leftover servers recognises.
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0);
        if let Some(n) = auth_after {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let mut process = cmd.spawn().expect("start moto");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = text
                .split("Running on http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse::<u16>().ok())
            {
                break port;
            }
            let exited = process.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                super::process::stop_group(&mut process, Duration::ZERO);
                panic!("moto did not start ({exited:?}): {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        MotoServer {
            port,
            dir: dir.to_path_buf(),
            process,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a Python snippet with boto3 against this server (`ENDPOINT` and `boto3` are
    /// defined for it); its stdout.
    pub fn python(&self, script: &str, env: &[(&str, &str)]) -> String {
        python(&self.endpoint(), script, env)
    }

    /// Creates `bucket` (an unauthenticated request while moto does not check yet).
    pub fn create_bucket(&self, bucket: &str) {
        self.python(
            &format!("s3().create_bucket(Bucket={bucket:?})"),
            &[
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ],
        );
    }

    /// Keys of the objects under `prefix`, sorted.
    pub fn list(&self, bucket: &str, prefix: &str, creds: &Credentials) -> Vec<String> {
        let out = self.python(
            &format!(
                "r = s3().list_objects_v2(Bucket={bucket:?}, Prefix={prefix:?})\nfor o in r.get('Contents', []): print(o['Key'])"
            ),
            &creds.env(),
        );
        let mut keys: Vec<String> = out.lines().map(str::to_string).collect();
        keys.sort();
        keys
    }

    /// An object's text, `None` when it does not exist.
    pub fn get(&self, bucket: &str, key: &str, creds: &Credentials) -> Option<String> {
        let out = self.python(
            &format!(
                "import sys\ntry:\n    sys.stdout.write(s3().get_object(Bucket={bucket:?}, Key={key:?})['Body'].read().decode())\nexcept s3().exceptions.NoSuchKey:\n    sys.stdout.write('\\0missing')"
            ),
            &creds.env(),
        );
        (out != "\0missing").then_some(out)
    }

    pub fn put(&self, bucket: &str, key: &str, body: &str, creds: &Credentials) {
        self.python(
            &format!("s3().put_object(Bucket={bucket:?}, Key={key:?}, Body={body:?}.encode())"),
            &creds.env(),
        );
    }

    /// Creates a bucket and two IAM users in moto (7 requests, to be given as `auth_after`):
    /// `admin` with every S3 action, `reader` with `s3:GetObject` and `s3:ListBucket` only
    /// (the policy docs/shared-state.md gives for pull-request plans).
    pub fn iam_users(&self, bucket: &str) -> (Credentials, Credentials) {
        let out = self.python(
            &format!(
                r#"import json
s3().create_bucket(Bucket={bucket:?})
iam = boto3.client("iam", endpoint_url=ENDPOINT, region_name="us-east-1")
def user(name, actions):
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="state", PolicyDocument=json.dumps({{
        "Version": "2012-10-17",
        "Statement": [{{"Effect": "Allow", "Action": actions,
            "Resource": ["arn:aws:s3:::{bucket}", "arn:aws:s3:::{bucket}/*"]}}]}}))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return [k["AccessKeyId"], k["SecretAccessKey"]]
print(json.dumps([user("admin", ["s3:*"]), user("reader", ["s3:GetObject", "s3:ListBucket"])]))
"#
            ),
            &[
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ],
        );
        let keys: Vec<(String, String)> =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        (
            Credentials {
                key_id: keys[0].0.clone(),
                secret: keys[0].1.clone(),
            },
            Credentials {
                key_id: keys[1].0.clone(),
                secret: keys[1].1.clone(),
            },
        )
    }
}

/// Runs boto3 code against `endpoint`.
pub fn python(endpoint: &str, script: &str, env: &[(&str, &str)]) -> String {
    let prelude = format!(
        "import boto3\nENDPOINT = {endpoint:?}\ndef s3():\n    return boto3.client('s3', endpoint_url=ENDPOINT, region_name='us-east-1')\n"
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(format!("{prelude}{script}"))
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = super::process::run_with_timeout(cmd, Duration::from_secs(60)).expect("python3");
    assert!(
        out.status.success(),
        "boto3 script failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        super::process::stop_group(&mut self.process, Duration::from_secs(5));
    }
}

/// An access key (moto accepts any for an unauthenticated server).
#[derive(Clone, Debug)]
pub struct Credentials {
    pub key_id: String,
    pub secret: String,
}

impl Credentials {
    pub fn any() -> Credentials {
        Credentials {
            key_id: "AKIDTEST".into(),
            secret: "secret-test".into(),
        }
    }

    fn env(&self) -> [(&str, &str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", self.key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.as_str()),
        ]
    }

    /// Writes them as the `default` profile of a shared credentials file (how a developer's
    /// machine has them), returning its path.
    pub fn write_profile(&self, dir: &Path) -> PathBuf {
        let path = dir.join("aws-credentials");
        std::fs::write(
            &path,
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                self.key_id, self.secret
            ),
        )
        .unwrap();
        path
    }
}

/// A TCP relay on a fixed loopback port to moto: stopping it is an outage of the backend
/// (connections refused, connections in flight cut), starting it again ends the outage.
pub struct Relay {
    pub port: u16,
    upstream: u16,
    running: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(upstream: u16) -> Relay {
        let port = super::docker::free_port();
        let mut relay = Relay {
            port,
            upstream,
            running: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            thread: None,
        };
        relay.resume();
        relay
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The outage: no new connection is accepted, those open are cut.
    pub fn stop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag and closes the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// The backend is back, on the same port.
    pub fn resume(&mut self) {
        let listener = {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match TcpListener::bind(("127.0.0.1", self.port)) {
                    Ok(l) => break l,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!("relay cannot bind its port again: {e}"),
                }
            }
        };
        self.running.store(true, Ordering::SeqCst);
        let (running, conns, upstream) = (self.running.clone(), self.conns.clone(), self.upstream);
        self.thread = Some(std::thread::spawn(move || {
            for client in listener.incoming() {
                if !running.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                {
                    let mut c = conns.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the lines of moto's log (for failure messages).
pub fn log_tail(dir: &Path) -> String {
    let Ok(f) = std::fs::File::open(dir.join("moto.log")) else {
        return String::new();
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
