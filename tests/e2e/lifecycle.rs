//! Starting, sharing the socket path, and stopping.

use std::time::Duration;

use batchctl::Event;
use batchd_protocol::FinishReason;
use batchd_tests::{greedy, temp_dir, Daemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_requests_removes_the_socket_and_exits_zero() {
    let d = Daemon::start(&["--slots", "8"]);
    let socket = d.socket().to_path_buf();
    let client = d.client().await;
    let mut gens = Vec::new();
    for i in 0..8 {
        let mut g = client
            .generate(greedy(&format!("stream {i}"), 40))
            .await
            .unwrap();
        assert!(matches!(g.next().await, Some(Event::Token { .. })));
        gens.push(g);
    }
    let status = tokio::task::spawn_blocking(move || d.terminate())
        .await
        .unwrap();
    for g in gens {
        let c = g.collect().await.unwrap();
        assert_eq!(
            c.finish_reason(),
            FinishReason::Length,
            "in-flight requests finish"
        );
    }
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "socket file left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_drain_deadline_cancels() {
    let d = Daemon::start(&["--slots", "1", "--drain-timeout", "0"]);
    let client = d.client().await;
    let mut g = client.generate(greedy("forever", 1000)).await.unwrap();
    assert!(matches!(g.next().await, Some(Event::Token { .. })));
    let status = tokio::task::spawn_blocking(move || d.terminate())
        .await
        .unwrap();
    let c = g.collect().await.unwrap();
    assert_eq!(c.finish_reason(), FinishReason::Cancelled);
    assert!(status.success());
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_is_refused() {
    let dir = temp_dir("stale");
    let socket = dir.path().join("batchd.sock");
    // A socket file with nobody behind it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let first = Daemon::start_on(dir, socket.clone(), &["--slots", "1"]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let second = Daemon::command(&socket, first.dir(), &["--slots", "1"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8(second.stderr).unwrap();
    assert!(err.contains("already running"), "{err}");
    assert!(
        socket.exists(),
        "the second daemon must not remove the first one's socket"
    );
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_panic_fails_the_clients_and_exits_70() {
    // Debug builds panic in every decode with this set (engine/llama.rs).
    let mut d = Daemon::start_env(&["--slots", "2"], &[("BATCHD_TEST_PANIC_IN_DECODE", "1")]);
    let client = d.client().await;
    let g = client.generate(greedy("a dead engine", 8)).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), g.collect())
        .await
        .expect("the client is answered, not left waiting");
    assert!(outcome.is_err(), "{outcome:?}");
    let status = tokio::task::spawn_blocking(move || d.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(
        status.code(),
        Some(70),
        "EX_SOFTWARE, for the service manager"
    );
}
