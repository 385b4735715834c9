//! Exit statuses, from sysexits(3), so a script can tell "retry later" (75) from "fix
//! your command" (2) from "start the daemon" (69) without parsing messages.

use std::io;

use batchd_protocol::ErrorCode;

use crate::ClientError;

/// Exit status after an error none of the others describe.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of a command line clap rejects (clap's own).
pub const EXIT_USAGE: u8 = 2;
/// `EX_DATAERR`: the daemon rejected a request (too long, bad parameters).
pub const EXIT_DATAERR: u8 = 65;
/// `EX_UNAVAILABLE`: the daemon cannot be reached (not running, or the connection broke).
pub const EXIT_UNAVAILABLE: u8 = 69;
/// `EX_TEMPFAIL`: the daemon's queue is full or it is shutting down; try again later.
pub const EXIT_TEMPFAIL: u8 = 75;
/// `EX_NOPERM`: the daemon's access control (or the socket's mode) refused us.
pub const EXIT_NOPERM: u8 = 77;
/// Exit status after Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status when stdout was closed under us (as if killed by SIGPIPE).
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// The exit statuses, for `--help` (the README has the same table).
pub const EXIT_HELP: &str = "\
Exit status:
  0    success
  1    any other failure
  2    usage error (bad flag or argument)
  65   the daemon rejected a request (e.g. prompt_too_long, invalid_request)
  69   the daemon is not reachable (not running, or the connection broke)
  75   the daemon is busy (queue full) or shutting down: try again later
  77   refused by the daemon's access control or the socket's permissions
  130  interrupted by Ctrl-C";

/// How a command ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It did its job.
    Success,
    /// Ctrl-C stopped it (requests were cancelled).
    Interrupted,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Interrupted => EXIT_INTERRUPTED,
        }
    }
}

/// Some of several requests failed with these error codes from the daemon.
#[derive(Debug, thiserror::Error)]
#[error("{} of {total} requests failed", codes.len())]
pub struct RequestsFailed {
    /// The error code of each failed request.
    pub codes: Vec<ErrorCode>,
    /// Requests submitted.
    pub total: usize,
}

/// The exit status for a daemon error code.
pub fn for_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::Busy | ErrorCode::ShuttingDown => EXIT_TEMPFAIL,
        ErrorCode::Unauthorized => EXIT_NOPERM,
        ErrorCode::Internal => EXIT_FAILURE,
        ErrorCode::BadFrame
        | ErrorCode::FrameTooLarge
        | ErrorCode::VersionMismatch
        | ErrorCode::ProtocolViolation
        | ErrorCode::InvalidRequest
        | ErrorCode::PromptTooLong
        | ErrorCode::DuplicateId => EXIT_DATAERR,
    }
}

/// The exit status for a client-library error.
pub fn for_client_error(e: &ClientError) -> u8 {
    match e {
        ClientError::Connect { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
            EXIT_NOPERM
        }
        ClientError::Connect { .. } | ClientError::Disconnected(_) | ClientError::Frame(_) => {
            EXIT_UNAVAILABLE
        }
        ClientError::Server { code, .. } => for_code(*code),
        ClientError::Protocol(_) => EXIT_FAILURE,
    }
}

/// The exit status for several failed requests: "try again later" only when every
/// failure was temporary, else the status of the first lasting one.
pub fn for_failed(f: &RequestsFailed) -> u8 {
    f.codes
        .iter()
        .map(|c| for_code(*c))
        .find(|s| *s != EXIT_TEMPFAIL)
        .unwrap_or(EXIT_TEMPFAIL)
}

/// The exit status for an error returned by a command.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if is_broken_pipe(err) {
        return EXIT_BROKEN_PIPE;
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return for_client_error(e);
        }
        if let Some(f) = cause.downcast_ref::<RequestsFailed>() {
            return for_failed(f);
        }
    }
    EXIT_FAILURE
}

/// True when the error is stdout closed under us.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: ErrorCode) -> anyhow::Error {
        ClientError::Server {
            code,
            message: String::new(),
        }
        .into()
    }

    #[test]
    fn daemon_errors_map_to_sysexits() {
        assert_eq!(exit_code(&server(ErrorCode::Busy)), EXIT_TEMPFAIL);
        assert_eq!(exit_code(&server(ErrorCode::ShuttingDown)), EXIT_TEMPFAIL);
        assert_eq!(exit_code(&server(ErrorCode::Unauthorized)), EXIT_NOPERM);
        assert_eq!(exit_code(&server(ErrorCode::PromptTooLong)), EXIT_DATAERR);
        assert_eq!(exit_code(&server(ErrorCode::Internal)), EXIT_FAILURE);
        let lost = anyhow::Error::new(ClientError::Disconnected("eof".into()));
        assert_eq!(exit_code(&lost), EXIT_UNAVAILABLE);
        let denied = anyhow::Error::new(ClientError::Connect {
            path: "/x.sock".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        });
        assert_eq!(exit_code(&denied), EXIT_NOPERM);
    }

    #[test]
    fn several_failures_are_temporary_only_if_all_are() {
        let f = |codes: Vec<ErrorCode>| {
            exit_code(&anyhow::Error::new(RequestsFailed { codes, total: 5 }))
        };
        assert_eq!(f(vec![ErrorCode::Busy, ErrorCode::Busy]), EXIT_TEMPFAIL);
        assert_eq!(
            f(vec![ErrorCode::Busy, ErrorCode::PromptTooLong]),
            EXIT_DATAERR
        );
        let e = RequestsFailed {
            codes: vec![ErrorCode::Busy],
            total: 3,
        };
        assert_eq!(e.to_string(), "1 of 3 requests failed");
    }

    #[test]
    fn a_wrapped_client_error_keeps_its_status() {
        let e = server(ErrorCode::Busy).context("submitting");
        assert_eq!(exit_code(&e), EXIT_TEMPFAIL);
    }
}
