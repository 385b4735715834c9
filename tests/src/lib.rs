//! Harness for end-to-end tests: writes the tiny synthetic model once, starts the real
//! `batchd` binary on a temp socket, and runs the real `batchctl`.
//!
//! The binaries are taken from the same target directory as the test executable, so run
//! `cargo build --workspace --all-targets` before `cargo test` (the README's test command does).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod http;
pub mod soak;

/// Path of a workspace binary in the target directory of the running executable: a test
/// (`target/<profile>/deps/<test>-<hash>`) or a binary of this crate (`target/<profile>/soak`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let mut dir = exe.parent().expect("target dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("target dir");
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --all-targets` first",
        path.display()
    );
    path
}

/// A scratch directory removed on drop.
pub use tempfile::TempDir;

/// A fresh directory under the system temp dir, removed on drop; `tag` names it.
pub fn temp_dir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("batchd-test-{tag}-"))
        .tempdir()
        .expect("create a temp dir")
}

/// The tiny test model, written once per test process with `batchd make-model` next to
/// the binaries (the generator is deterministic, so concurrent writers agree).
pub fn tiny_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| make_model("tiny"))
}

/// The GPT-2-small-shaped test model (250 MB), written like [`tiny_model`]: for what
/// needs real widths, such as two kernels' rounding differences, which the tiny model's
/// 64-wide rows rarely turn into a different token.
pub fn small_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| make_model("small"))
}

fn make_model(shape: &str) -> PathBuf {
    let batchd = bin("batchd");
    let path = batchd.with_file_name(format!("batchd-test-{shape}.gguf"));
    let out = Command::new(&batchd)
        .args(["make-model", "--shape", shape, "--out"])
        .arg(&path)
        .output()
        .expect("run batchd make-model");
    assert!(out.status.success(), "make-model failed: {out:?}");
    path
}

/// A running `batchd` on its own socket; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    dir: TempDir,
    socket: PathBuf,
}

impl Daemon {
    /// Starts batchd with the tiny model and `args`, and waits until it accepts clients.
    pub fn start(args: &[&str]) -> Daemon {
        let dir = temp_dir("daemon");
        let socket = dir.path().join("batchd.sock");
        Self::start_on(dir, socket, args)
    }

    /// Like [`Daemon::start`], with batchd's stderr written to the file `log` (created or
    /// truncated) instead of the test's, so a harness can search it afterwards.
    pub fn start_with_log(args: &[&str], log: &Path) -> Daemon {
        Self::start_env_with_log(args, &[], log)
    }

    /// [`Daemon::start_with_log`] with these environment variables set for batchd.
    pub fn start_env_with_log(args: &[&str], env: &[(&str, &str)], log: &Path) -> Daemon {
        let file =
            std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        Self::spawn_env(args, env, Stdio::from(file))
    }

    /// Like [`Daemon::start`], with these environment variables set for batchd.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::spawn_env(args, env, Stdio::inherit())
    }

    /// Like [`Daemon::start`], serving `model` instead of the tiny model.
    pub fn start_with_model(model: &Path, args: &[&str]) -> Daemon {
        let dir = temp_dir("daemon");
        let socket = dir.path().join("batchd.sock");
        let command = Self::command_for(model, &socket, dir.path(), args);
        Self::spawn_command(dir, socket, command, Stdio::inherit())
    }

    /// Starts batchd on a given socket path inside `dir`.
    pub fn start_on(dir: TempDir, socket: PathBuf, args: &[&str]) -> Daemon {
        Self::spawn(dir, socket, args, Stdio::inherit())
    }

    fn spawn_env(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Daemon {
        let dir = temp_dir("daemon");
        let socket = dir.path().join("batchd.sock");
        let mut command = Self::command(&socket, dir.path(), args);
        command.envs(env.iter().copied());
        Self::spawn_command(dir, socket, command, stderr)
    }

    fn spawn(dir: TempDir, socket: PathBuf, args: &[&str], stderr: Stdio) -> Daemon {
        let command = Self::command(&socket, dir.path(), args);
        Self::spawn_command(dir, socket, command, stderr)
    }

    fn spawn_command(dir: TempDir, socket: PathBuf, mut command: Command, stderr: Stdio) -> Daemon {
        let child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn batchd");
        let mut d = Daemon {
            child: Some(child),
            dir,
            socket,
        };
        d.wait_ready();
        d
    }

    /// The command line that starts batchd (for tests that watch it themselves).
    pub fn command(socket: &Path, home: &Path, args: &[&str]) -> Command {
        Self::command_for(tiny_model(), socket, home, args)
    }

    /// Like [`Daemon::command`], serving `model`.
    pub fn command_for(model: &Path, socket: &Path, home: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin("batchd"));
        c.arg("--model")
            .arg(model)
            .arg("--socket")
            .arg(socket)
            // One thread each: tests run daemons side by side on small machines, and
            // oversubscribed compute threads stall each other.
            .args(["--threads", "1"])
            .args(args)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            // Nothing from the test's own environment: batchd reads every BATCHD_* as
            // a setting, and would report readiness to a NOTIFY_SOCKET it inherited.
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "warn");
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("BATCHD_") {
                c.env_remove(var);
            }
        }
        c
    }

    /// Waits until batchd answers a hello: the socket is bound before the model loads, and
    /// answered only once it has.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if answers_hello(&self.socket, deadline) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("batchd exited during start: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "batchd did not listen on {} within 60 s",
            self.socket.display()
        );
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The HTTP API's socket: its default place, beside the main socket.
    pub fn http_socket(&self) -> PathBuf {
        self.socket.with_file_name("http.sock")
    }

    /// Scratch directory of this daemon.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Connects the real client.
    pub async fn client(&self) -> batchctl::Client {
        batchctl::Client::connect(&self.socket)
            .await
            .expect("connect to batchd")
    }

    /// Runs the real `batchctl` against this daemon.
    pub fn batchctl(&self, args: &[&str]) -> Output {
        self.batchctl_stdin(args, None)
    }

    /// Runs `batchctl` with `stdin` piped in.
    pub fn batchctl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new(bin("batchctl"));
        c.env("BATCHD_SOCKET", &self.socket)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn batchctl");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().expect("batchctl output")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM");
        self.wait_exit(Duration::from_secs(60))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits up to `limit` for the process to exit on its own, and returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "batchd still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process has not exited.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a signal with kill(1).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Whether the daemon on `socket` answers a hello frame (with anything) before `deadline`.
fn answers_hello(socket: &Path, deadline: Instant) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let hello = batchd_protocol::ClientMessage::Hello {
        version: batchd_protocol::PROTOCOL_VERSION,
        client: "batchd-tests".into(),
    };
    let frame = batchd_protocol::frame::encode_frame(&hello).expect("encode hello");
    let left = deadline.saturating_duration_since(Instant::now());
    let mut length = [0u8; 4];
    stream
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .is_ok()
        && stream.write_all(&frame).is_ok()
        && stream.read_exact(&mut length).is_ok()
}

/// A greedy request that ignores EOS, so its length is exactly `max_tokens`.
pub fn greedy(prompt: &str, max_tokens: u32) -> batchd_protocol::GenerateRequest {
    batchd_protocol::GenerateRequest {
        max_tokens,
        ignore_eos: true,
        ..batchd_protocol::GenerateRequest::new(prompt)
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Twelve prompts of different lengths.
pub const PROMPTS: [&str; 12] = [
    "The capital of France is",
    "Today's weather is so",
    "In machine learning, a transformer is",
    "Once upon a time in a land far away,",
    "Quantum computing differs from classical computing because",
    "The history of the Roman Empire began",
    "Hello",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
    "def fibonacci(n):\n    if n < 2:\n        return n",
    "Ünïcödé ✓ and emoji 🦀 are bytes too",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20",
    "batchd",
];

/// A prompt long enough to be prefilled over several steps while others decode.
pub fn long_prompt() -> String {
    "Continuous batching packs every running sequence into one forward pass. ".repeat(12)
}

/// A prompt of about 600 tokens: more than one 512-token step.
pub fn very_long_prompt() -> String {
    long_prompt().repeat(4)
}
