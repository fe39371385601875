//! A second, real Docker engine on this machine, for multi-host tests: an
//! [`extra_engine`](super::extra_engine) (own `dockerd`, data root, exec root, containerd,
//! pid file and bridge `gtb<pid>x<n>` on a free `10.123.X.1/24`), reachable on a unix socket
//! (for the test's own `docker -H` checks) and on `tcp://127.0.0.1:PORT` with TLS and client
//! certificates (`--tlsverify`), which is what gantry is given, so that TLS is proven for real.
//!
//! ```ignore
//! use crate::support;
//! use support::second_engine;
//!
//! #[test]
//! fn my_test() {
//!     let Some(b) = second_engine::require_second_engine("my_test") else {
//!         return; // skipped locally; panics instead when CI=true
//!     };
//!     let guard = DockerTestGuard::new();
//!     let image = docker::build_testapp_image_once(&docker::run_tag("v1"));
//!     b.load_images(&[&image]);          // docker save | docker -H <b> load
//!     let toml = b.host_toml("b");        // [[host]] with the TLS endpoint and certificates
//!     b.docker_ok(&["ps", "-q"]);          // the engine, through its unix socket
//! }
//! ```
//!
//! One engine per test process, shared by the tests that run at the same time, stopped and
//! removed with the last user; engines of killed test processes are reaped (see
//! `extra_engine`, which also says how it stays out of the main engine's way). What this one
//! adds:
//! - Published ports: without iptables rules, a published port is served by the userland
//!   proxy (`docker-proxy`, on by default, stated explicitly) listening on `127.0.0.1:PORT`
//!   and forwarding over the bridge, which the host reaches directly. Both engines hand out
//!   ephemeral host ports from the same kernel range; when one picks a port the other's proxy
//!   holds, the bind fails and Docker retries with the next port (up to 10 times), so they
//!   coexist.
//! - TLS: a throw-away CA, a server certificate for `127.0.0.1`/`localhost` and a client
//!   certificate, EC P-256, made with the `openssl` CLI (no crate needed for a test helper).
#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};

use super::docker::{self, free_port, run_with_timeout};
use super::extra_engine::{self, ExtraEngine, Kind};

static KIND: Kind = Kind {
    what: "second",
    dir_prefix: "gantry-e2-",
    bridge_prefix: "gtb",
    more_bridges: &[],
    subnet_prefix: "10.123",
    tools: &[("openssl", "version")],
    needs_root: "a second dockerd needs root",
    tests: "the multi-host tests",
};

/// The client side of the engine's TLS, for gantry's `[host] tls` and `docker --tlsverify`.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running second `dockerd`; [`ExtraEngine`]'s methods and fields (`socket`, `bridge`,
/// `docker_ok`, `load_images`, ...) through `Deref`. Stopped, with its bridge and directory
/// removed, on drop.
pub struct SecondEngine {
    engine: ExtraEngine,
    /// `tcp://127.0.0.1:<port>`, TLS with client certificates required.
    pub tls_endpoint: String,
    pub client_tls: ClientTls,
}

impl Deref for SecondEngine {
    type Target = ExtraEngine;

    fn deref(&self) -> &ExtraEngine {
        &self.engine
    }
}

/// The engine currently shared by this process's tests (dead once the last user dropped it).
static CURRENT: Mutex<Weak<SecondEngine>> = Mutex::new(Weak::new());

/// Why a second engine cannot run here, or `None` when it can: Docker answers, we are root
/// (`dockerd` needs it), and `dockerd`, `openssl` and `ip` are installed.
pub fn unavailable_reason() -> Option<String> {
    extra_engine::unavailable_reason(&KIND)
}

/// The second engine, started if this process has none running. When one cannot run here,
/// prints `SKIPPED: <test>: <why>` and returns `None`, except under `CI=true`, where it
/// panics: CI must fail, not skip. When it could run but does not start, panics with what
/// failed (the command, its output, the tail of the engine's log).
pub fn require_second_engine(test: &str) -> Option<Arc<SecondEngine>> {
    extra_engine::shared(&KIND, test, &CURRENT, SecondEngine::start)
}

impl SecondEngine {
    fn start() -> SecondEngine {
        let (engine, (tls_endpoint, client_tls)) = ExtraEngine::start(&KIND, |dir| {
            let tls = dir.join("tls");
            std::fs::create_dir_all(&tls).expect("create the second engine's tls directory");
            let client_tls = make_certificates(&tls);
            let tls_endpoint = format!("tcp://127.0.0.1:{}", free_port());
            let t = |p: &str| tls.join(p).display().to_string();
            let args = vec![
                format!("--host={tls_endpoint}"),
                "--tlsverify".into(),
                format!("--tlscacert={}", t("ca.pem")),
                format!("--tlscert={}", t("server-cert.pem")),
                format!("--tlskey={}", t("server-key.pem")),
                "--userland-proxy=true".into(),
            ];
            (args, (tls_endpoint, client_tls))
        });
        let engine = SecondEngine {
            engine,
            tls_endpoint,
            client_tls,
        };
        // The socket answers (`start` waited for it); the TLS endpoint must too.
        let o = engine.docker_tls(&["version", "--format", "{{.Server.Version}}"]);
        assert!(
            o.status.success(),
            "the second dockerd answers on its socket but not with TLS on {}: {}\n{}",
            engine.tls_endpoint,
            String::from_utf8_lossy(&o.stderr).trim(),
            engine.log_tail(20)
        );
        eprintln!("second engine answers with TLS on {}", engine.tls_endpoint);
        engine
    }

    /// `docker --tlsverify ... -H tcp://127.0.0.1:PORT ARGS`: the way gantry reaches it.
    pub fn docker_tls(&self, args: &[&str]) -> Output {
        let t = &self.client_tls;
        let mut cmd = Command::new("docker");
        cmd.arg("--tlsverify")
            .arg(format!("--tlscacert={}", t.ca.display()))
            .arg(format!("--tlscert={}", t.cert.display()))
            .arg(format!("--tlskey={}", t.key.display()))
            .args(["-H", &self.tls_endpoint])
            .args(args);
        run_with_timeout(cmd, docker::DOCKER_TIMEOUT)
            .unwrap_or_else(|e| panic!("docker -H {} {}: {e}", self.tls_endpoint, args.join(" ")))
    }

    /// A `[[host]]` table for gantry: this engine over TLS, its replicas on 127.0.0.1.
    pub fn host_toml(&self, name: &str) -> String {
        let t = &self.client_tls;
        format!(
            "[[host]]\nname = \"{name}\"\ndocker = \"{}\"\naddress = \"127.0.0.1\"\ntls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
            self.tls_endpoint,
            t.ca.display(),
            t.cert.display(),
            t.key.display()
        )
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate (EC P-256, two days),
/// with the `openssl` CLI, in `dir`.
fn make_certificates(dir: &Path) -> ClientTls {
    // Our own config: extensions do not depend on the system's openssl.cnf or its version.
    std::fs::write(
        dir.join("openssl.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = gantry-test\n\
         [ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [server]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n\
         [client]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            o.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let cnf = ["-config", "openssl.cnf"];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=gantry-test-ca"];
    ca.extend(ec);
    ca.extend(cnf);
    ca.extend([
        "-extensions",
        "ca",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    openssl(&ca);
    for (who, cn, key) in [
        ("server", "127.0.0.1", "server-key.pem"),
        ("client", "gantry-test-client", "key.pem"),
    ] {
        let subj = format!("/CN={cn}");
        let csr = format!("{who}.csr");
        let mut req = vec!["req", "-new", "-subj", &subj];
        req.extend(ec);
        req.extend(cnf);
        req.extend(["-keyout", key, "-out", &csr]);
        openssl(&req);
        let out = if who == "server" {
            "server-cert.pem"
        } else {
            "cert.pem"
        };
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            who,
            "-out",
            out,
        ]);
    }
    ClientTls {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}
