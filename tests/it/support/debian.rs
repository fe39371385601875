//! Real test images from Debian packages, with no registry: the base is made by
//! `mmdebstrap` from the Debian mirror and `docker import`ed; images of real programs are
//! `docker build`s `FROM` it that add files (what [`super::stack`] builds).
//!
//! ```ignore
//! use crate::support;
//! use support::{debian, docker::DockerTestGuard};
//!
//! #[test]
//! fn my_test() {
//!     if !debian::require_debian_images("my_test") {
//!         return; // skipped locally without docker or mmdebstrap; panics when CI=true
//!     }
//!     let guard = DockerTestGuard::new(); // before building: its cleanup removes the images
//!     let base = debian::debian_image(&["redis-server"]);
//!     let id = guard.run(&[], &base); // ...
//! }
//! ```
//!
//! [`debian_image`] runs `mmdebstrap --variant=apt --include=PKGS bookworm - | docker import
//! --change 'LABEL gantry.test-run=<run id>' - gantry-test-debian:<run id>-<hash>`: the
//! essential packages, apt and the given packages with their dependencies (no recommends),
//! without documentation, manual pages, info pages and translations (`--dpkgopt
//! path-exclude`), from bookworm, bookworm-updates and bookworm-security.
//! [`derived_image`] is a `docker build` of a Dockerfile and files from a temporary context.
//! Both are cached within the test process by a hash of what they are made of (the sorted
//! package list; the Dockerfile and files): concurrent callers for the same image wait for one
//! build, and a caller finding the cached image removed (the last live guard removes every
//! image with the run label, see [`super::docker`]) builds it again.
//!
//! `GANTRY_TEST_DEBIAN_MIRROR` replaces mmdebstrap's default mirror (`deb.debian.org`) with
//! another one, e.g. a local apt cache.
#![allow(dead_code)]

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::docker::{self, image_exists, run_label, run_tag, run_with_timeout};
use super::process::Background;

/// The Debian release the images are made from.
pub const SUITE: &str = "bookworm";
/// Time limit of one `mmdebstrap | docker import` (about 35 s on the 2-core test machine).
pub const BASE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Time limit of one `docker build` of a derived image (seconds in practice).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Whether `mmdebstrap` runs (checked once per process).
pub fn mmdebstrap_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let mut cmd = Command::new("mmdebstrap");
        cmd.arg("--version");
        matches!(run_with_timeout(cmd, Duration::from_secs(20)), Ok(o) if o.status.success())
    })
}

/// `true` when Docker and `mmdebstrap` are usable. Otherwise prints `SKIPPED: <test>: ...`
/// and returns `false`, except under `CI=true`, where it panics: CI must fail, not skip.
pub fn require_debian_images(test: &str) -> bool {
    if !docker::require_docker(test) {
        return false;
    }
    if mmdebstrap_available() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: mmdebstrap not available, and CI=true: the stack tests' images must be \
             built in CI (.ci/run installs mmdebstrap)"
        );
    }
    // Straight to stdout: the test harness captures `println!` of passing tests.
    let _ = writeln!(
        io::stdout(),
        "SKIPPED: {test}: mmdebstrap not available (apt-get install mmdebstrap)"
    );
    false
}

/// The image (`gantry-test-debian:<run id>-<hash>`) of Debian [`SUITE`] with `packages`
/// installed, built unless this process built it and it still exists. The order of
/// `packages` and repeats do not matter. Needs a live [`docker::DockerTestGuard`], and
/// panics when the build fails (call [`require_debian_images`] first).
pub fn debian_image(packages: &[&str]) -> String {
    let mut list: Vec<&str> = packages.to_vec();
    list.sort_unstable();
    list.dedup();
    for p in &list {
        let valid = p.len() >= 2
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        assert!(valid, "not a Debian package name: {p:?}");
    }
    let hash = hash_of(&list);
    let image = format!("gantry-test-debian:{}", run_tag(&format!("{hash:016x}")));
    cached(&image, || import_base(&list, &image))
}

/// The image `gantry-test-<name>:<run id>-<hash>` built by `docker build` from `dockerfile`
/// (typically `FROM` a [`debian_image`]) and a context of `files` (path in the context,
/// contents; all mode 0755, so scripts stay executable through `COPY`), labelled with the
/// run label and `gantry.test-image=gantry-test-<name>`; built unless this process built it
/// and it still exists. Needs a live [`docker::DockerTestGuard`]. Without the buildx plugin
/// this is Docker's classic builder, which commits a layer per instruction: keep
/// Dockerfiles short, with what differs between variants last (earlier steps are reused).
pub fn derived_image(name: &str, dockerfile: &str, files: &[(&str, &[u8])]) -> String {
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "image name {name:?}: lowercase letters, digits and '-' only"
    );
    let hash = hash_of(&(name, dockerfile, files));
    let image = format!("gantry-test-{name}:{}", run_tag(&format!("{hash:016x}")));
    cached(&image, || build_derived(dockerfile, files, &image))
}

fn hash_of(value: &impl Hash) -> u64 {
    // SipHash with fixed keys: the same inputs give the same tag within the process.
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// One slot per image: callers for the same image wait for one build; others go on.
fn cached(image: &str, build: impl FnOnce()) -> String {
    assert!(
        docker::live_guards() > 0,
        "create a DockerTestGuard before building test images (its cleanup removes them)"
    );
    static SLOTS: Mutex<Option<HashMap<String, Arc<Mutex<bool>>>>> = Mutex::new(None);
    let slot = {
        let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .get_or_insert_with(HashMap::new)
            .entry(image.to_owned())
            .or_default()
            .clone()
    };
    let mut built = slot.lock().unwrap_or_else(|e| e.into_inner());
    if !*built || !image_exists(image) {
        *built = false;
        let started = Instant::now();
        build();
        assert!(image_exists(image), "{image} was built but does not exist");
        *built = true;
        eprintln!("built {image} in {:.1}s", started.elapsed().as_secs_f64());
    }
    image.to_owned()
}

/// Kills and reaps a child on drop (when the other side of the pipe failed, or on panic).
struct Reaped(Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn import_base(packages: &[&str], image: &str) {
    let mut mm = Command::new("mmdebstrap");
    mm.args(["--variant=apt", "--format=tar"])
        .arg(format!("--include={}", packages.join(",")))
        .args([
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-include=/usr/share/locale/locale.alias",
            "--aptopt=Acquire::Languages \"none\"",
            SUITE,
            "-",
        ]);
    if let Ok(mirror) = std::env::var("GANTRY_TEST_DEBIAN_MIRROR") {
        mm.arg(mirror);
    }
    mm.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = mm
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start mmdebstrap: {e}"));
    let tar = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let mm_log = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let mut mm = Reaped(Some(child));

    let mut import = Command::new("docker");
    import
        .args(["import", "--change", &format!("LABEL {}", run_label())])
        .args([
            "--change",
            &format!("LABEL gantry.test-debian=\"{}\"", packages.join(" ")),
        ])
        .args(["-", image])
        .stdin(Stdio::from(tar))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let imported = Background::spawn(import, "docker import").wait(BASE_TIMEOUT);
    let mm_status = mm.0.take().map(|mut c| c.wait());
    let mm_log = mm_log.join().unwrap_or_default();
    let mm_ok = matches!(mm_status, Some(Ok(s)) if s.success());
    if !mm_ok || !imported.status.success() {
        // A partial tarball may have been imported: never leave it for a later caller.
        let _ = docker::docker(&["rmi", "-f", image]);
        panic!(
            "building {image}: mmdebstrap {} ({mm_status:?}), docker import {}:\n\
             --- mmdebstrap\n{mm_log}\n--- docker import\n{}{}",
            packages.join(","),
            if mm_ok { "ok" } else { "failed" },
            String::from_utf8_lossy(&imported.stdout),
            String::from_utf8_lossy(&imported.stderr),
        );
    }
}

fn build_derived(dockerfile: &str, files: &[(&str, &[u8])], image: &str) {
    let ctx = tempfile::tempdir().expect("temporary build context");
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("write Dockerfile");
    for (path, contents) in files {
        let dest = ctx.path().join(path);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).expect("context directory");
        }
        std::fs::write(&dest, contents).unwrap_or_else(|e| panic!("write {path}: {e}"));
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {path}: {e}"));
    }
    let mut cmd = Command::new("docker");
    // BuildKit needs the buildx plugin; without it, the classic builder (as testapp/build.sh).
    if !buildx_available() {
        cmd.env("DOCKER_BUILDKIT", "0");
    }
    let name = image.split(':').next().unwrap_or(image);
    cmd.args(["build", "--quiet", "--label", &run_label(), "-t", image])
        .args(["--label", &format!("gantry.test-image={name}")])
        .arg(ctx.path());
    let out = run_with_timeout(cmd, BUILD_TIMEOUT)
        .unwrap_or_else(|e| panic!("docker build {image}: {e}"));
    if !out.status.success() {
        panic!(
            "docker build {image} failed ({}):\n{}{}\n--- Dockerfile\n{dockerfile}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn buildx_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| docker::docker(&["buildx", "version"]).status.success())
}
