//! The service files under `systemd/` and `launchd/`: they parse, agree with each other and
//! with batchd's defaults, pass `systemd-analyze verify` and keep a low `systemd-analyze
//! security` exposure (when systemd-analyze is installed), and the example system config
//! is accepted by the real batchd.
//!
//! One file past 400 lines: one test per unit file or service-manager behaviour, sharing
//! the helpers that render and check the units.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use batchd_tests::{bin, temp_dir, Daemon};

/// The most `systemd-analyze security --offline=true` exposure either service may have.
const MAX_EXPOSURE: f64 = 2.0;
/// batchd's default `--drain-timeout`, which every stop timeout must exceed.
const DRAIN_TIMEOUT_S: u64 = 30;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every value of `key` in a unit file, in order (comments and sections ignored).
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// The single value of `key` in a unit file.
fn unit_value(text: &str, key: &str) -> String {
    let mut v = unit_values(text, key);
    assert_eq!(v.len(), 1, "expected exactly one {key}= in:\n{text}");
    v.pop().unwrap()
}

/// A `key = "string"` value of a TOML file (top-level, uncommented).
fn toml_string(text: &str, key: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no {key} in the example config"))
}

fn seconds(v: &str) -> u64 {
    v.trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("not plain seconds: {v}"))
}

#[test]
fn launchd_plist_parses_and_has_the_keys_launchd_needs() {
    let path = repo().join("launchd/dev.batchd.batchd.plist");
    let value = plist::Value::from_file(&path).expect("a valid XML property list");
    let d = value.as_dictionary().expect("a dictionary at the top");
    let string = |k: &str| {
        d.get(k)
            .and_then(plist::Value::as_string)
            .unwrap_or_else(|| panic!("{k} missing or not a string"))
    };

    assert_eq!(string("Label"), "dev.batchd.batchd");
    assert_eq!(
        path.file_stem().unwrap(),
        "dev.batchd.batchd",
        "the file is named after its label"
    );

    let args: Vec<&str> = d
        .get("ProgramArguments")
        .and_then(plist::Value::as_array)
        .expect("ProgramArguments array")
        .iter()
        .map(|v| v.as_string().expect("ProgramArguments holds strings"))
        .collect();
    assert!(args[0].ends_with("/batchd"), "{args:?}");
    let i = args
        .iter()
        .position(|a| *a == "--socket")
        .expect("--socket");
    let socket = *args.get(i + 1).expect("a path after --socket");

    let env = d
        .get("EnvironmentVariables")
        .and_then(plist::Value::as_dictionary)
        .expect("EnvironmentVariables dictionary");
    assert_eq!(
        env.get("BATCHD_SOCKET").and_then(plist::Value::as_string),
        Some(socket),
        "BATCHD_SOCKET and --socket name the same socket"
    );

    assert_eq!(
        d.get("RunAtLoad").and_then(plist::Value::as_boolean),
        Some(true)
    );
    match d.get("KeepAlive").expect("KeepAlive") {
        plist::Value::Boolean(b) => assert!(*b),
        plist::Value::Dictionary(k) => assert_eq!(
            k.get("SuccessfulExit").and_then(plist::Value::as_boolean),
            Some(false),
            "restart on failure only"
        ),
        other => panic!("KeepAlive: {other:?}"),
    }
    let exit_timeout = d
        .get("ExitTimeOut")
        .and_then(plist::Value::as_unsigned_integer)
        .expect("ExitTimeOut");
    assert!(
        exit_timeout > DRAIN_TIMEOUT_S,
        "launchd must wait out batchd's drain before SIGKILL"
    );

    // launchd expands neither ~ nor $VARS: every path is absolute, under the one
    // placeholder home the README's sed command replaces.
    let paths = [
        args[0],
        socket,
        string("StandardOutPath"),
        string("StandardErrorPath"),
    ];
    for p in paths {
        assert!(p.starts_with("/Users/USERNAME/"), "{p}");
        assert!(!p.contains('~') && !p.contains('$'), "{p}");
    }
    // macOS's sun_path holds 104 bytes, NUL included: leave room for long user names.
    let long = socket.replace("USERNAME", &"u".repeat(32));
    assert!(long.len() < 104, "{long} is too long for a Unix socket");
}

#[test]
fn systemd_units_agree_with_each_other_and_the_config() {
    let user_socket = read("systemd/user/batchd.socket");
    let user_service = read("systemd/user/batchd.service");
    let sys_socket = read("systemd/system/batchd.socket");
    let sys_service = read("systemd/system/batchd.service");
    let toml = read("systemd/system/batchd.toml");
    let sysusers = read("systemd/system/batchd.sysusers");

    // User units: batchd's own default socket path, so batchctl needs no BATCHD_SOCKET.
    assert_eq!(
        unit_value(&user_socket, "ListenStream"),
        "%t/batchd/batchd.sock"
    );
    assert_eq!(unit_value(&user_socket, "SocketMode"), "0600");
    assert_eq!(unit_value(&user_socket, "DirectoryMode"), "0700");
    assert_eq!(
        unit_value(&user_service, "ExecStart"),
        "%h/.cargo/bin/batchd"
    );

    // System units: the socket, its group and mode are the config's, and the group is
    // the one sysusers creates (the daemon's user of the same name).
    let listen = unit_value(&sys_socket, "ListenStream");
    assert_eq!(listen, toml_string(&toml, "socket"));
    assert!(listen.starts_with("/run/batchd/"));
    assert_eq!(
        unit_value(&sys_socket, "SocketMode"),
        toml_string(&toml, "socket_mode")
    );
    let group = unit_value(&sys_socket, "SocketGroup");
    assert_eq!(group, "batchd");
    assert_eq!(group, toml_string(&toml, "allow_group"));
    let sysuser = sysusers
        .lines()
        .find(|l| l.starts_with("u "))
        .expect("a sysusers u line");
    assert_eq!(sysuser.split_whitespace().nth(1), Some(group.as_str()));
    assert_eq!(unit_value(&sys_service, "User"), group);
    assert_eq!(
        unit_value(&sys_service, "ExecStart"),
        "/usr/local/bin/batchd --config /etc/batchd/batchd.toml"
    );
    assert_eq!(unit_value(&sys_service, "RuntimeDirectory"), "batchd");
    // Without this, stopping the service would delete /run/batchd and the socket in it.
    assert_eq!(unit_value(&sys_service, "RuntimeDirectoryPreserve"), "yes");
    assert_eq!(unit_value(&sys_service, "StateDirectory"), "batchd");
    // In a user namespace other users' uids read as "nobody": allow_group could not work.
    assert_eq!(unit_value(&sys_service, "PrivateUsers"), "no");

    // The HTTP API's socket: beside the main one, named so batchd can tell them apart,
    // guarded alike, and handed to the service with it.
    for (name, socket, service) in [
        ("user", &user_socket, &user_service),
        ("system", &sys_socket, &sys_service),
    ] {
        let http = read(&format!("systemd/{name}/batchd-http.socket"));
        assert_eq!(
            unit_value(&http, "ListenStream"),
            unit_value(socket, "ListenStream").replace("batchd.sock", "http.sock"),
            "{name}"
        );
        assert_eq!(unit_value(&http, "FileDescriptorName"), "http", "{name}");
        assert_ne!(unit_value(socket, "FileDescriptorName"), "http", "{name}");
        assert_eq!(unit_value(&http, "Service"), "batchd.service", "{name}");
        for key in ["SocketMode", "SocketGroup", "SocketUser", "DirectoryMode"] {
            assert_eq!(
                unit_values(&http, key),
                unit_values(socket, key),
                "{name}: {key}"
            );
        }
        assert_eq!(
            unit_value(service, "Sockets"),
            "batchd.socket batchd-http.socket",
            "{name}"
        );
    }

    for (name, service) in [("user", &user_service), ("system", &sys_service)] {
        assert_eq!(unit_value(service, "Requires"), "batchd.socket", "{name}");
        assert_eq!(unit_value(service, "Restart"), "on-failure", "{name}");
        // Started means the model is loaded: batchd sends READY=1 (tests/e2e/notify.rs).
        assert_eq!(unit_value(service, "Type"), "notify", "{name}");
        assert!(
            seconds(&unit_value(service, "TimeoutStopSec")) > DRAIN_TIMEOUT_S,
            "{name}: systemd must wait out batchd's drain before SIGKILL"
        );
        for (key, want) in [
            ("PrivateNetwork", "yes"),
            ("RestrictAddressFamilies", "AF_UNIX"),
            ("MemoryDenyWriteExecute", "yes"),
            ("NoNewPrivileges", "yes"),
            ("UMask", "0077"),
        ] {
            assert_eq!(unit_value(service, key), want, "{name}: {key}");
        }
    }
}

/// The oldest systemd that knows every directive the units use (PrivateIPC=: 248).
const MIN_SYSTEMD: u32 = 248;

/// `systemd-analyze`, if installed, new enough, and able to verify a trivial unit here.
fn systemd_analyze(scratch: &Path) -> Option<PathBuf> {
    let Some(tool) = which("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed");
        return None;
    };
    let version = Command::new(&tool).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u32>().ok());
    match version {
        Some(v) if v >= MIN_SYSTEMD => {}
        _ => {
            eprintln!("skipped: systemd-analyze {version:?} is older than {MIN_SYSTEMD}");
            return None;
        }
    }
    let probe = scratch.join("batchd-probe.service");
    std::fs::write(&probe, "[Service]\nExecStart=/bin/sh -c true\n").unwrap();
    let out = analyze(&tool, scratch, false, &["verify"], &[&probe]);
    if !out.status.success() {
        eprintln!(
            "skipped: systemd-analyze cannot verify even a trivial unit here: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    std::fs::remove_file(probe).unwrap();
    Some(tool)
}

fn analyze(tool: &Path, scratch: &Path, user: bool, args: &[&str], units: &[&Path]) -> Output {
    let runtime = scratch.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let mut c = Command::new(tool);
    if user {
        c.arg("--user");
    }
    c.args(args)
        .args(units)
        // --user looks for the user manager's runtime dir; keep that in the scratch dir.
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_PAGER", "cat");
    c.output().expect("run systemd-analyze")
}

/// Copies `flavour`'s units into `dir`, with only the ExecStart binary changed to the
/// batchd built with these tests (verify insists that the binary exists).
fn units_with_built_batchd(flavour: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let batchd = bin("batchd").display().to_string().replace('%', "%%");
    let service = read(&format!("systemd/{flavour}/batchd.service"));
    let exec = unit_value(&service, "ExecStart");
    let (program, rest) = exec.split_once(' ').unwrap_or((&exec, ""));
    let rewritten = service.replacen(
        &format!("ExecStart={exec}"),
        format!("ExecStart=\"{batchd}\" {rest}").trim_end(),
        1,
    );
    assert_ne!(rewritten, service, "ExecStart={program} not rewritten");
    let service_path = dir.join("batchd.service");
    let socket_path = dir.join("batchd.socket");
    std::fs::write(&service_path, rewritten).unwrap();
    std::fs::copy(
        repo().join(format!("systemd/{flavour}/batchd.socket")),
        &socket_path,
    )
    .unwrap();
    std::fs::copy(
        repo().join(format!("systemd/{flavour}/batchd-http.socket")),
        dir.join("batchd-http.socket"),
    )
    .unwrap();
    (socket_path, service_path)
}

fn assert_verified(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("systemd-analyze verify ({what}): {stderr}");
    assert!(out.status.success(), "{what}: {out:?}");
    let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains("batchd")).collect();
    assert!(complaints.is_empty(), "{what}: {complaints:#?}");
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let scratch = temp_dir("units-verify");
    let Some(tool) = systemd_analyze(scratch.path()) else {
        return;
    };
    for (flavour, user) in [("system", false), ("user", true)] {
        let dir = scratch.path().join(flavour);
        std::fs::create_dir_all(&dir).unwrap();
        let (socket, service) = units_with_built_batchd(flavour, &dir);
        let out = analyze(
            &tool,
            scratch.path(),
            user,
            &["verify"],
            &[&socket, &dir.join("batchd-http.socket"), &service],
        );
        assert_verified(&out, flavour);
    }
    // The user service with its fallback drop-in for hosts without user namespaces.
    let dir = scratch.path().join("user");
    let dropins = dir.join("batchd.service.d");
    std::fs::create_dir_all(&dropins).unwrap();
    std::fs::copy(
        repo().join("systemd/user/no-userns.conf"),
        dropins.join("no-userns.conf"),
    )
    .unwrap();
    let out = analyze(
        &tool,
        scratch.path(),
        true,
        &["verify"],
        &[&dir.join("batchd.socket"), &dir.join("batchd.service")],
    );
    assert_verified(&out, "user + no-userns.conf");
}

#[test]
fn systemd_services_expose_little() {
    let scratch = temp_dir("units-security");
    let Some(tool) = systemd_analyze(scratch.path()) else {
        return;
    };
    for (flavour, user) in [("system", false), ("user", true)] {
        let dir = scratch.path().join(flavour);
        std::fs::create_dir_all(&dir).unwrap();
        let (_, service) = units_with_built_batchd(flavour, &dir);
        let out = analyze(
            &tool,
            scratch.path(),
            user,
            &["security", "--offline=true"],
            &[&service],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("--offline") || stderr.contains("unrecognized option") {
            eprintln!("skipped: this systemd-analyze has no `security --offline` (v250+)");
            return;
        }
        let exposure: f64 = stdout
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for batchd.service:"))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{flavour}: no exposure level in {out:?}"));
        eprintln!("{flavour} batchd.service exposure: {exposure}");
        assert!(
            exposure <= MAX_EXPOSURE,
            "{flavour} batchd.service exposure {exposure} > {MAX_EXPOSURE}:\n{stdout}"
        );
    }
}

#[test]
fn the_example_system_config_is_accepted_by_batchd() {
    // The file as shipped, except that the group must exist here: use our own.
    let out = Command::new("id").arg("-gn").output().expect("run id -gn");
    assert!(out.status.success(), "{out:?}");
    let group = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let toml = read("systemd/system/batchd.toml");
    assert!(toml.contains("allow_group = \"batchd\""));
    let toml = toml.replace(
        "allow_group = \"batchd\"",
        &format!("allow_group = \"{group}\""),
    );
    let dir = temp_dir("system-config");
    let config = dir.path().join("batchd.toml");
    std::fs::write(&config, toml).unwrap();
    // --model and --socket (tests' tiny model, temp socket) win over the file's.
    let d = Daemon::start(&["--config", config.to_str().unwrap()]);
    let status = d.batchctl(&["status"]);
    assert!(status.status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(text.contains("slots:"), "{text}");
    assert!(
        text.contains(" of 8"),
        "the file's slots = 8 applies: {text}"
    );
    let exit = d.terminate();
    assert!(exit.success(), "{exit:?}");
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}
