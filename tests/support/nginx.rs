//! A real nginx on loopback, in its own directory, for tests: started with a config that
//! includes the upstream file gantry manages, stopped on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct NginxUnderTest {
    pub dir: PathBuf,
    pub port: u16,
    pub upstream_file: PathBuf,
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
        let n = NginxUnderTest {
            dir: dir.to_path_buf(),
            port,
            upstream_file,
        };
        let o = Command::new("nginx").args(n.args()).output().unwrap();
        assert!(
            o.status.success(),
            "nginx did not start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        n
    }

    /// `-c CONF -p DIR -e ERRORLOG`: every nginx command of this instance starts with these.
    pub fn args(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            "-c".into(),
            format!("{d}/nginx.conf"),
            "-p".into(),
            format!("{d}"),
            "-e".into(),
            format!("{d}/error.log"),
        ]
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
        let mut args = self.args();
        args.extend(["-s".into(), "stop".into()]);
        let _ = Command::new("nginx").args(args).output();
    }
}
