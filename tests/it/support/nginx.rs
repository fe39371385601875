//! A real nginx on loopback, in its own directory, for tests: started with a config that
//! includes the upstream file gantry manages, stopped on drop.
//!
//! It runs in the foreground (`daemon off;`) as a child of the test, in a process group of
//! its own, and the drop stops that group by its id. Daemonized and stopped with
//! `nginx -s stop`, it outlived the tests: that command reads the config to find the pid
//! file, and the fixtures' temporary directory (a struct field declared before the nginx)
//! was already deleted when the nginx dropped.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long nginx may take to listen after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct NginxUnderTest {
    pub dir: PathBuf,
    pub port: u16,
    pub upstream_file: PathBuf,
    master: Child,
}

pub fn nginx_available() -> bool {
    Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `true` when nginx is installed. Otherwise prints `SKIPPED: ...` and returns `false`,
/// except under `CI=true`, where it panics (CI installs nginx).
pub fn require_nginx(test: &str) -> bool {
    if nginx_available() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: nginx not installed, and CI=true: nginx tests must run in CI");
    }
    println!("SKIPPED: {test}: nginx not installed");
    false
}

impl NginxUnderTest {
    /// Starts nginx listening on a free loopback port, proxying to `upstream`.
    pub fn start(dir: &Path, upstream: &str) -> NginxUnderTest {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = super::docker::free_port();
        let upstream_file = dir.join("upstream.conf");
        std::fs::write(
            &upstream_file,
            format!("upstream {upstream} {{ server 127.0.0.1:9 down; }}\n"),
        )
        .unwrap();
        let d = dir.display();
        let conf = format!(
            r#"worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/upstream.conf;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut master = Command::new("nginx")
            .args(args(dir))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("run nginx");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(&addr).is_err() {
            let exited = master.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                super::process::stop_group(&mut master, Duration::ZERO);
                panic!(
                    "nginx did not start ({exited:?}): {}{}",
                    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default(),
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        NginxUnderTest {
            dir: dir.to_path_buf(),
            port,
            upstream_file,
            master,
        }
    }

    /// `-c CONF -p DIR -e ERRORLOG`: every nginx command of this instance starts with these.
    pub fn args(&self) -> Vec<String> {
        args(&self.dir)
    }

    /// The `check` and `reload` commands for gantry's `[lb.X]`, as TOML arrays.
    pub fn toml_commands(&self) -> (String, String) {
        let quoted = |extra: &[&str]| {
            let mut a: Vec<String> = vec!["nginx".into()];
            a.extend(self.args());
            a.extend(extra.iter().map(|s| s.to_string()));
            format!(
                "[{}]",
                a.iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        (quoted(&["-t", "-q"]), quoted(&["-s", "reload"]))
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for NginxUnderTest {
    fn drop(&mut self) {
        super::process::stop_group(&mut self.master, Duration::from_secs(5));
    }
}

fn args(dir: &Path) -> Vec<String> {
    let d = dir.display();
    vec![
        "-c".into(),
        format!("{d}/nginx.conf"),
        "-p".into(),
        format!("{d}"),
        "-e".into(),
        format!("{d}/error.log"),
    ]
}
