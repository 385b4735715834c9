//! systemd's readiness protocol: batchd with `$NOTIFY_SOCKET` says `READY=1` once the
//! model is loaded and the socket listens, and `STOPPING=1` when it drains.

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use batchd_tests::{signal, temp_dir, Daemon};

/// Datagrams until one contains `want`; all of them, in order.
fn until(sock: &UnixDatagram, want: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.lines().any(|l| l == want);
                got.push(msg);
                if done {
                    return got;
                }
            }
            // A read timeout, or a signal to this test process: a receive with a timeout
            // is never restarted after a signal handler runs (signal(7)).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    panic!("no {want} within 60 s; got {got:?}");
}

#[test]
fn ready_after_the_model_loads_and_stopping_on_sigterm() {
    let dir = temp_dir("notify");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let socket = dir.path().join("batchd.sock");
    let mut child = Daemon::command(&socket, dir.path(), &["--slots", "2"])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let before_ready = until(&notify, "READY=1");
    // Clients can connect the moment READY=1 arrives.
    assert!(
        UnixStream::connect(&socket).is_ok(),
        "READY=1 before listening"
    );
    assert!(
        before_ready[0].contains("STATUS=loading model"),
        "{before_ready:?}"
    );
    let ready = before_ready.last().unwrap();
    assert!(ready.contains("STATUS=serving 2 slots"), "{ready}");

    signal(child.id(), "TERM");
    let stopping = until(&notify, "STOPPING=1");
    assert!(stopping.last().unwrap().contains("STATUS="), "{stopping:?}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn without_notify_socket_nothing_changes() {
    // The harness removes NOTIFY_SOCKET; batchd serves as always.
    let d = Daemon::start(&["--slots", "1"]);
    assert!(d.batchctl(&["status"]).status.success());
}
