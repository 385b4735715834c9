//! Where `generate` gets its prompts: arguments, a file, or stdin.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

/// Where the prompts come from.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// The prompt arguments themselves.
    Args(Vec<String>),
    /// One per non-empty line of a file.
    File(PathBuf),
    /// One per non-empty line of stdin (a lone `-`, or `--file -`).
    Stdin,
}

/// Decides where the prompts come from.
pub fn source(prompts: &[String], file: Option<&Path>) -> Result<Source> {
    Ok(match (file, prompts) {
        (Some(f), _) if f == Path::new("-") => Source::Stdin,
        (Some(f), _) => Source::File(f.to_path_buf()),
        (None, [one]) if one == "-" => Source::Stdin,
        (None, []) => {
            bail!("no prompt given: pass PROMPT..., --file F, or - to read prompts from stdin")
        }
        (None, many) => {
            if many.iter().any(|p| p == "-") {
                bail!("`-` (prompts from stdin) cannot be combined with prompt arguments");
            }
            Source::Args(many.to_vec())
        }
    })
}

/// The prompts of `file`, one per non-empty line.
pub fn read_file(file: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow!("cannot read prompts from {}: {e}", file.display()))?;
    parse(&text, &file.display().to_string())
}

/// Reads all of stdin on a thread of its own, so that waiting for it can be interrupted
/// (the thread dies with the process).
pub async fn read_stdin() -> Result<Vec<String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(io::read_to_string(io::stdin()));
    });
    let text = rx
        .await
        .map_err(|_| anyhow!("cannot read prompts from stdin"))?
        .map_err(|e| anyhow!("cannot read prompts from stdin: {e}"))?;
    parse(&text, "stdin")
}

/// The non-blank lines of `text`, without their line endings; an error if there are
/// none. `source` names where the text came from.
pub fn parse(text: &str, source: &str) -> Result<Vec<String>> {
    let prompts: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if prompts.is_empty() {
        bail!("no prompts in {source} (expected one per non-empty line)");
    }
    Ok(prompts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_as_given() {
        let p = vec!["a b".to_string(), String::new()];
        assert_eq!(source(&p, None).unwrap(), Source::Args(p));
    }

    #[test]
    fn dash_means_stdin() {
        assert_eq!(source(&["-".into()], None).unwrap(), Source::Stdin);
        assert_eq!(source(&[], Some(Path::new("-"))).unwrap(), Source::Stdin);
        assert_eq!(
            source(&[], Some(Path::new("p.txt"))).unwrap(),
            Source::File("p.txt".into())
        );
    }

    #[test]
    fn lines_skip_blanks_and_line_endings() {
        assert_eq!(parse("one\r\n\n  \ntwo\n", "x").unwrap(), ["one", "two"]);
        let err = parse("\n \n", "stdin").unwrap_err().to_string();
        assert!(err.starts_with("no prompts in stdin"), "{err}");
    }

    #[test]
    fn file_lines() {
        let dir = std::env::temp_dir().join(format!("batchctl-prompts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.txt");
        std::fs::write(&f, "first\n\nsecond\n").unwrap();
        assert_eq!(read_file(&f).unwrap(), ["first", "second"]);
        std::fs::remove_dir_all(&dir).unwrap();
        let err = read_file(&f).unwrap_err().to_string();
        assert!(err.starts_with("cannot read prompts from "), "{err}");
    }

    #[test]
    fn nothing_or_mixed_is_an_error() {
        assert!(source(&[], None).is_err());
        assert!(source(&["a".into(), "-".into()], None).is_err());
    }
}
