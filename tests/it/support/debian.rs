//! Real test images from Debian packages, with no registry: the base is made by
//! `mmdebstrap` from the Debian mirror and `docker import`ed; images of real programs add
//! files and settings to it (what [`super::stack`] builds).
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
//! [`derived_image`] makes what a `docker build` of `FROM base`, `COPY` and a few settings
//! would, in one commit: `docker create` of the base, `docker cp` of the files, `docker
//! commit --change ...`. (Docker's classic builder, used without the buildx plugin, commits a
//! layer per instruction, and with the fuse-overlayfs storage driver every commit walks the
//! whole file system: 15-45 s for a 6-line Dockerfile on the loaded 2-core test machine,
//! against 8-10 s for the one commit.) Both are cached within the test process by a hash of
//! what they are made of (the sorted package list; base, files and changes): concurrent
//! callers for the same image wait for one build, and a caller finding the cached image
//! removed (the last live guard removes every image with the run label, see
//! [`super::docker`]) builds it again.
//!
//! `GANTRY_TEST_DEBIAN_MIRROR` replaces mmdebstrap's default mirror (`deb.debian.org`) with
//! another one, e.g. a local apt cache.
#![allow(dead_code)]

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::docker::{self, image_exists, run_label, run_tag, run_with_timeout};
use super::process::Background;

/// The Debian release the images are made from.
pub const SUITE: &str = "bookworm";
/// Time limit of one `mmdebstrap | docker import` (about 35 s on the 2-core test machine).
pub const BASE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

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

/// The image `gantry-test-<name>:<run id>-<hash>`: `base` (typically a [`debian_image`])
/// with `files` added (absolute path in the image, contents; mode 0755 and owned by root, so
/// scripts are executable; a path ending in `/` is an empty directory) and `changes` applied
/// (the Dockerfile instructions `docker commit --change` takes: `CMD`, `ENTRYPOINT`, `ENV`,
/// `EXPOSE`, `LABEL`, `USER`, `WORKDIR`, ...; give a `CMD`, or the image's is `true`).
/// Labelled with the run label and `gantry.test-image=<name>`; made unless this process made
/// it and it still exists. Needs a live [`docker::DockerTestGuard`].
pub fn derived_image(name: &str, base: &str, files: &[(&str, &[u8])], changes: &[&str]) -> String {
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "image name {name:?}: lowercase letters, digits and '-' only"
    );
    for (path, _) in files {
        assert!(
            path.starts_with('/') && !path.split('/').any(|p| p == ".."),
            "file {path:?}: an absolute path in the image, without '..'"
        );
    }
    let hash = hash_of(&(name, base, files, changes));
    let image = format!("gantry-test-{name}:{}", run_tag(&format!("{hash:016x}")));
    cached(&image, || {
        commit_derived(name, base, files, changes, &image)
    })
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
        // Exec-form commands and health checks find programs without a shell's help.
        .args([
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ])
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

fn commit_derived(name: &str, base: &str, files: &[(&str, &[u8])], changes: &[&str], image: &str) {
    // Every directory of the copy is 0755: the tar `docker cp` sends sets the modes of
    // existing directories too, `/` included, and a 0700 temporary directory would lock
    // other users out of the image.
    let ctx = tempfile::tempdir().expect("temporary directory");
    let dir_mode = || std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(ctx.path(), dir_mode()).expect("chmod temporary directory");
    for (path, contents) in files {
        let dest = ctx.path().join(path.trim_start_matches('/'));
        let dir = if path.ends_with('/') {
            dest.as_path()
        } else {
            dest.parent().expect("a file has a parent")
        };
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir for {path}: {e}"));
        for d in dir.ancestors().take_while(|d| d.starts_with(ctx.path())) {
            std::fs::set_permissions(d, dir_mode()).expect("chmod directory");
        }
        if !path.ends_with('/') {
            std::fs::write(&dest, contents).unwrap_or_else(|e| panic!("write {path}: {e}"));
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod {path}: {e}"));
        }
    }
    // The container carries the run label (removed with the run should this fail half-way)
    // and passes its labels on to the image.
    let label = format!("gantry.test-image={name}");
    let container = docker::docker_ok(&[
        "create",
        "--label",
        &run_label(),
        "--label",
        &label,
        base,
        "true",
    ]);
    let src = format!("{}/.", ctx.path().display());
    let copied = docker::docker(&["cp", &src, &format!("{container}:/")]);
    let mut commit = vec!["commit".to_owned()];
    for c in changes {
        commit.extend(["--change".to_owned(), (*c).to_owned()]);
    }
    commit.extend([container.clone(), image.to_owned()]);
    let committed = copied
        .status
        .success()
        .then(|| docker::docker(&commit.iter().map(String::as_str).collect::<Vec<_>>()));
    let _ = docker::docker(&["rm", "-f", &container]);
    let failed = |what: &str, out: &Output| {
        panic!(
            "{what} for {image} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    match committed {
        None => failed("docker cp", &copied),
        Some(out) if !out.status.success() => failed("docker commit", &out),
        Some(_) => {}
    }
}
