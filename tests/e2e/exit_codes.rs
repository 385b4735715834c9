//! batchctl's exit statuses against the real daemon: what a script branches on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use batchctl::app::{EXIT_TEMPFAIL, EXIT_UNAVAILABLE, EXIT_USAGE};
use batchctl::Event;
use batchd_tests::{bin, eventually, greedy, temp_dir, Daemon};

/// Runs [`BRANCH`] for `batchctl ARGS` (split on spaces) against `socket`; what it
/// printed.
fn branch(socket: &Path, args: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("set -- {args}\n{BRANCH}"))
        .env("BATCHCTL", bin("batchctl"))
        .env("BATCHD_SOCKET", socket)
        .output()
        .expect("run sh");
    String::from_utf8(out.stdout).unwrap()
}

/// What a retry loop tells apart, as a shell script sees it.
const BRANCH: &str = r#""$BATCHCTL" "$@" >/dev/null 2>&1
case $? in
  0) echo ok ;;
  2) echo fix-the-command ;;
  69) echo start-the-daemon ;;
  75) echo retry-later ;;
  *) echo "other $?" ;;
esac"#;

#[test]
fn no_daemon_is_69_and_a_bad_flag_is_2() {
    let dir = temp_dir("exit-codes");
    let socket = dir.path().join("nobody.sock");
    let out = Command::new(bin("batchctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_UNAVAILABLE.into()), "{out:?}");
    let out = Command::new(bin("batchctl"))
        .args(["generate", "--no-such-flag", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE.into()), "{out:?}");

    assert_eq!(branch(&socket, "status"), "start-the-daemon\n");
    assert_eq!(branch(&socket, "status --bogus"), "fix-the-command\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_75_and_succeeds_later() {
    let d = Daemon::start(&["--slots", "1", "--queue", "1"]);
    let client = d.client().await;
    // One request in the slot, one waiting: the queue is full.
    let mut running = client.generate(greedy("running", 1000)).await.unwrap();
    assert!(matches!(running.next().await, Some(Event::Token { .. })));
    let waiting = client.generate(greedy("waiting", 4)).await.unwrap();
    let full = eventually(Duration::from_secs(30), || async {
        client.status().await.unwrap().queued == 1
    })
    .await;
    assert!(full, "the second request never queued");

    let hello = "generate hello --max-tokens 2";
    assert_eq!(branch_async(d.socket(), hello).await, "retry-later\n");
    let direct = d.batchctl(&["generate", "hello", "--max-tokens", "2"]);
    assert_eq!(
        direct.status.code(),
        Some(EXIT_TEMPFAIL.into()),
        "{direct:?}"
    );
    assert!(String::from_utf8_lossy(&direct.stderr).contains("busy"));

    running.cancel_handle().cancel();
    drop(running);
    waiting.collect().await.unwrap();
    assert_eq!(branch_async(d.socket(), hello).await, "ok\n");
}

/// [`branch`] off the async test's threads.
async fn branch_async(socket: &Path, args: &'static str) -> String {
    let socket: PathBuf = socket.to_path_buf();
    tokio::task::spawn_blocking(move || branch(&socket, args))
        .await
        .unwrap()
}
