//! Shell completions and man pages of both binaries: valid scripts that complete the
//! subcommands, and pages man renders.

use std::path::Path;
use std::process::Command;

use batchd_tests::{bin, temp_dir};

/// `BIN ARGS` to a file in `dir`.
fn write_output(binary: &str, args: &[&str], file: &Path) {
    let out = Command::new(bin(binary)).args(args).output().unwrap();
    assert!(out.status.success(), "{binary} {args:?}: {out:?}");
    assert!(!out.stdout.is_empty(), "{binary} {args:?} printed nothing");
    std::fs::write(file, &out.stdout).unwrap();
}

/// What bash completes after `line` (words split on spaces), with `script` loaded.
fn bash_complete(script: &Path, function: &str, line: &str) -> Vec<String> {
    let code = format!(
        r#"source "$1"
COMP_LINE="$2"; COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$2"
[[ "$2" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
{function} "${{COMP_WORDS[0]}}" "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let out = Command::new("bash")
        .args(["-c", &code, "complete-test"])
        .arg(script)
        .arg(line)
        .output()
        .expect("run bash");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completion_scripts_parse_and_complete_subcommands() {
    let dir = temp_dir("completions");
    for (binary, subs) in [
        (
            "batchctl",
            &["generate", "status", "bench", "trace", "man"][..],
        ),
        ("batchd", &["make-model", "bench-engine", "completions"][..]),
    ] {
        let script = dir.path().join(format!("{binary}.bash"));
        write_output(binary, &["completions", "bash"], &script);
        let check = Command::new("bash")
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap();
        assert!(check.status.success(), "bash -n {binary}: {check:?}");

        let all = bash_complete(&script, &format!("_{binary}"), &format!("{binary} "));
        for sub in subs {
            assert!(
                all.iter().any(|w| w == sub),
                "{binary}: no {sub} in {all:?}"
            );
        }
        let prefix = &subs[0][..3];
        let some = bash_complete(
            &script,
            &format!("_{binary}"),
            &format!("{binary} {prefix}"),
        );
        assert!(
            some.contains(&subs[0].to_string()),
            "{binary} {prefix}: {some:?}"
        );
        assert!(some.iter().all(|w| w.starts_with(prefix)), "{some:?}");
    }
    // zsh and fish: generated and non-empty (their shells are not installed in CI).
    for binary in ["batchctl", "batchd"] {
        for shell in ["zsh", "fish"] {
            write_output(binary, &["completions", shell], &dir.path().join(shell));
        }
    }
}

#[test]
fn man_pages_render_with_man() {
    let dir = temp_dir("man");
    for binary in ["batchctl", "batchd"] {
        let out = Command::new(bin(binary))
            .args(["man", "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{binary} man: {out:?}");
    }
    let pages = [
        "batchctl.1",
        "batchctl-generate.1",
        "batchd.1",
        "batchd-make-model.1",
    ];
    for page in pages {
        let path = dir.path().join(page);
        assert!(path.is_file(), "{page} not written");
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .env("LANG", "C.UTF-8")
            .output()
            .expect("run man (.ci/run installs man-db)");
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "man -l {page}: {err}");
        assert!(err.trim().is_empty(), "man -l {page} warns: {err}");
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page}:\n{text}"
        );
        assert!(
            !text.contains("\\f") && !text.contains(".TH"),
            "raw roff in {page}:\n{text}"
        );
    }
    let batchctl = std::fs::read_to_string(dir.path().join("batchctl.1")).unwrap();
    assert!(
        batchctl.contains("75"),
        "the exit statuses are in batchctl.1"
    );
    let batchd = std::fs::read_to_string(dir.path().join("batchd.1")).unwrap();
    assert!(
        batchd.contains("BATCHD_SLOTS"),
        "the variables are in batchd.1"
    );
}
