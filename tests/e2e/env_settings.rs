//! batchd's settings from `BATCHD_*` environment variables: over the config file, under
//! flags, and named when their value is bad.

use std::process::Command;

use batchd_tests::{bin, temp_dir, Daemon};

fn slots(d: &Daemon) -> u64 {
    let out = d.batchctl(&["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["slots_total"].as_u64().unwrap()
}

#[test]
fn batchd_slots_sets_the_slots_and_a_flag_wins() {
    let d = Daemon::start_env(&[], &[("BATCHD_SLOTS", "3")]);
    assert_eq!(slots(&d), 3);
    drop(d);
    let d = Daemon::start_env(&["--slots", "2"], &[("BATCHD_SLOTS", "3")]);
    assert_eq!(slots(&d), 2, "the flag wins over the variable");
}

#[test]
fn the_variable_wins_over_the_config_file() {
    let dir = temp_dir("env-config");
    let config = dir.path().join("batchd.toml");
    std::fs::write(&config, "slots = 5\npolicy = \"static\"\n").unwrap();
    let config = config.to_str().unwrap();
    let d = Daemon::start_env(&[], &[("BATCHD_SLOTS", "4"), ("BATCHD_CONFIG", config)]);
    let out = d.batchctl(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["slots_total"], 4, "BATCHD_SLOTS over the file's slots");
    assert_eq!(
        v["policy"], "static",
        "the file (named by BATCHD_CONFIG) still applies"
    );
}

#[test]
fn a_bad_value_names_the_variable() {
    let dir = temp_dir("env-bad");
    let socket = dir.path().join("batchd.sock");
    for (var, value) in [
        ("BATCHD_SLOTS", "many"),
        ("BATCHD_PREFILL_CHUNK", "0"),
        ("BATCHD_POLICY", "fastest"),
        ("BATCHD_SOCKET_MODE", "rw-------"),
    ] {
        let out = Daemon::command(&socket, dir.path(), &[])
            .env(var, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(var), "{var}={value} not named: {err}");
        assert!(!socket.exists());
    }
    // The same bad value as a flag is the flag's fault, not the variable's.
    let out = Daemon::command(&socket, dir.path(), &["--slots", "many"])
        .env("BATCHD_SLOTS", "many")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("BATCHD_SLOTS"), "{err}");
}

#[test]
fn deterministic_comes_from_the_flag_the_variable_or_the_file_and_status_shows_it() {
    let mode = |d: &Daemon| {
        let out = d.batchctl(&["status"]);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text.lines().find(|l| l.starts_with("deterministic:"));
        line.unwrap_or_else(|| panic!("no mode in:\n{text}"))
            .to_string()
    };
    let d = Daemon::start(&[]);
    assert!(mode(&d).ends_with(" no"), "{}", mode(&d));
    drop(d);
    let d = Daemon::start(&["--deterministic"]);
    assert!(mode(&d).contains(" yes"), "{}", mode(&d));
    drop(d);
    let d = Daemon::start_env(&[], &[("BATCHD_DETERMINISTIC", "true")]);
    assert!(mode(&d).contains(" yes"), "{}", mode(&d));
    drop(d);
    let dir = temp_dir("env-deterministic");
    let config = dir.path().join("batchd.toml");
    std::fs::write(&config, "deterministic = true\n").unwrap();
    let d = Daemon::start_env(&[], &[("BATCHD_CONFIG", config.to_str().unwrap())]);
    let out = d.batchctl(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["deterministic"], true, "from the config file");
}

#[test]
fn help_lists_every_variable() {
    let out = Command::new(bin("batchd")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "BATCHD_MODEL",
        "BATCHD_SOCKET",
        "BATCHD_SLOTS",
        "BATCHD_PREFILL_CHUNK",
        "BATCHD_DRAIN_TIMEOUT",
        "BATCHD_ALLOW_GROUP",
        "BATCHD_DETERMINISTIC",
        "BATCHD_CONFIG",
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} not in:\n{help}"
        );
    }
}
