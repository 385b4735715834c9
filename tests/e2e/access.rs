//! Who may connect: peer credentials, socket modes, socket activation.

use std::process::{Command, Stdio};

use batchd_tests::{bin, temp_dir, Daemon, TempDir};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `batchctl status` as `nobody` (uid 65534) against `d`. The binary is copied
/// next to the socket first: the checkout's own folders may be closed to other users.
fn status_as_nobody(d: &Daemon) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let batchctl = d.dir().join("batchctl");
    if !batchctl.exists() {
        std::fs::copy(bin("batchctl"), &batchctl).unwrap();
        std::fs::set_permissions(&batchctl, PermissionsExt::from_mode(0o755)).unwrap();
    }
    // Another test thread forking while the copy was open for writing holds the file
    // open in its child until that child execs: exec fails with ETXTBSY meanwhile.
    for _ in 0..50 {
        let out = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&batchctl)
            .arg("--socket")
            .arg(d.socket())
            .arg("status")
            .env("HOME", "/")
            .output()
            .expect("run setpriv");
        if !String::from_utf8_lossy(&out.stderr).contains("Text file busy") {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{} stayed busy", batchctl.display());
}

#[test]
fn another_uid_is_refused_by_default_even_through_an_open_socket() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    let d = Daemon::start(&["--slots", "1", "--socket-mode", "0666"]);
    std::fs::set_permissions(d.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = status_as_nobody(&d);
    assert_eq!(
        out.status.code(),
        Some(batchctl::app::EXIT_NOPERM.into()),
        "{out:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unauthorized") || err.contains("may not"),
        "{err}"
    );
    // The daemon's own user still gets in.
    assert!(d.batchctl(&["status"]).status.success());
}

#[test]
fn allowed_uids_and_groups_get_in() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    for args in [
        [
            "--slots",
            "1",
            "--socket-mode",
            "0666",
            "--allow-uids",
            "4242,65534",
        ],
        [
            "--slots",
            "1",
            "--socket-mode",
            "0666",
            "--allow-group",
            "nogroup",
        ],
    ] {
        let d = Daemon::start(&args);
        std::fs::set_permissions(d.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let out = status_as_nobody(&d);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
}

#[test]
fn the_default_socket_mode_keeps_others_out() {
    let d = Daemon::start(&["--slots", "1"]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.socket()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let bad = Daemon::command(d.socket(), d.dir(), &["--socket-mode", "999"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("octal"));
}

/// Starts batchd under `systemd-socket-activate` listening on `sockets` (named `names`,
/// if given); batchd's own socket path is `unused`. `None` when the tool is missing.
fn activate(
    dir: &TempDir,
    sockets: &[&std::path::Path],
    names: Option<&str>,
    unused: &std::path::Path,
) -> Option<std::process::Child> {
    let Ok(tool) = which("systemd-socket-activate") else {
        eprintln!("skipped: systemd-socket-activate is not installed");
        return None;
    };
    let c = Daemon::command(unused, dir.path(), &["--slots", "1"]);
    let mut activate = Command::new(tool);
    for socket in sockets {
        activate.arg("-l").arg(socket);
    }
    if let Some(names) = names {
        activate.arg(format!("--fdname={names}"));
    }
    let child = activate
        .arg(c.get_program())
        .args(c.get_args())
        .envs(
            c.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Some(child)
}

/// Polls `batchctl status` on `socket` until it answers (the first client starts batchd).
fn status_when_started(socket: &std::path::Path) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = Command::new(bin("batchctl"))
            .arg("--socket")
            .arg(socket)
            .args(["status", "--json"])
            .output()
            .unwrap();
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn socket_activation_uses_the_inherited_listener() {
    let dir = temp_dir("activation");
    let socket = dir.path().join("activated.sock");
    let unused = dir.path().join("not-this-one.sock");
    let Some(mut child) = activate(&dir, &[&socket], None, &unused) else {
        return;
    };
    let out = status_when_started(&socket);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !unused.exists(),
        "batchd bound its own socket instead of the inherited one"
    );
    batchd_tests::signal(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        socket.exists(),
        "an inherited socket belongs to its activator and stays"
    );
}

#[test]
fn socket_activation_hands_over_the_http_socket_by_name() {
    let dir = temp_dir("activation-http");
    let http = dir.path().join("activated-http.sock");
    let main = dir.path().join("activated.sock");
    let unused = dir.path().join("not-this-one.sock");
    // The HTTP socket first: batchd must go by the names, not the order.
    let Some(mut child) = activate(&dir, &[&http, &main], Some("http:batchd"), &unused) else {
        return;
    };
    let out = status_when_started(&main);
    assert!(out.status.success(), "{out:?}");
    let models = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(batchd_tests::http::get(&http, "/v1/models"));
    assert_eq!(models.status, 200, "{}", models.text());
    assert!(
        !dir.path().join("not-this-one.http.sock").exists(),
        "batchd bound its own HTTP socket instead of the inherited one"
    );
    batchd_tests::signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

#[test]
fn another_uid_is_refused_on_the_http_socket_too() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    let Ok(curl) = which("curl") else {
        eprintln!("skipped: curl is not installed");
        return;
    };
    let d = Daemon::start(&["--slots", "1", "--socket-mode", "0666"]);
    std::fs::set_permissions(d.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let models = |as_nobody: bool| {
        let mut c = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                .arg(&curl);
            c
        } else {
            Command::new(&curl)
        };
        let out = c
            .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(d.http_socket())
            .arg("http://localhost/v1/models")
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = models(true);
    assert!(refused.ends_with("\n403"), "{refused}");
    assert!(refused.contains("\"unauthorized\""), "{refused}");
    assert!(models(false).ends_with("\n200"));
}
