//! Command-line parsing that names the `BATCHD_*` variable a bad value came from: clap
//! names only the flag, and a service's environment is easy to forget.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue};
use clap::Parser;

/// Parses `args` (the first is the program name) into `P`, exiting like clap on an
/// error, with the variable's name added when the bad value came from the environment.
pub fn parse_from<P: Parser>(args: Vec<OsString>) -> P {
    match P::try_parse_from(&args) {
        Ok(p) => p,
        Err(e) => {
            let text = e.render().to_string();
            match source_variable::<P>(&e, &args) {
                Some(var) => {
                    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
                    eprint!("{first} (from the environment variable {var})\n{rest}");
                    std::process::exit(e.exit_code());
                }
                None => e.exit(),
            }
        }
    }
}

/// The environment variable behind the argument `e` rejects, when that argument was not
/// given on the command line but its variable is set.
pub fn source_variable<P: Parser>(e: &clap::Error, args: &[OsString]) -> Option<String> {
    let Some(ContextValue::String(invalid)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    // "--slots <SLOTS>" names the argument by its long flag.
    let long = invalid.split_whitespace().next()?.strip_prefix("--")?;
    let cmd = P::command();
    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(long))?;
    let var = arg.get_env()?;
    let flag = format!("--{long}");
    let on_command_line = args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    (!on_command_line && std::env::var_os(var).is_some()).then(|| var.to_string_lossy().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[arg(long, env = "BATCHD_ENV_ARGS_TEST_N")]
        n: Option<u32>,
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_variable() {
        // A variable no other test reads.
        std::env::set_var("BATCHD_ENV_ARGS_TEST_N", "many");
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let from_env = args(&["t"]);
        let e = Flags::try_parse_from(&from_env).unwrap_err();
        assert_eq!(
            source_variable::<Flags>(&e, &from_env).as_deref(),
            Some("BATCHD_ENV_ARGS_TEST_N")
        );
        for flag in [&["t", "--n", "x"][..], &["t", "--n=x"]] {
            let from_flag = args(flag);
            let e = Flags::try_parse_from(&from_flag).unwrap_err();
            assert_eq!(source_variable::<Flags>(&e, &from_flag), None, "{flag:?}");
        }
        // A good flag wins over the bad variable.
        let f = Flags::try_parse_from(["t", "--n", "3"]).unwrap();
        assert_eq!(f.n, Some(3));
        std::env::remove_var("BATCHD_ENV_ARGS_TEST_N");
    }
}
