//! Where the daemon's socket lives, agreed by both binaries.

use std::path::PathBuf;

/// The socket path: `$BATCHD_SOCKET` if set, else `batchd/batchd.sock` in the user's
/// runtime dir (`$XDG_RUNTIME_DIR`), else `batchd-<uid>/batchd.sock` in the temp dir.
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os(crate::SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let runtime =
        directories::BaseDirs::new().and_then(|d| d.runtime_dir().map(|p| p.to_path_buf()));
    match runtime {
        Some(dir) => dir.join("batchd").join("batchd.sock"),
        None => std::env::temp_dir()
            .join(format!("batchd-{}", current_uid()))
            .join("batchd.sock"),
    }
}

/// Where the system service (`systemd/system/`) puts its socket.
pub const SYSTEM_SOCKET: &str = "/run/batchd/batchd.sock";

/// The socket a client should try: `$BATCHD_SOCKET` if set; else the user's own daemon's
/// socket if it exists; else the system service's socket if that exists; else the user's
/// path (so the error names what was expected).
pub fn client_socket_path() -> PathBuf {
    let user = default_socket_path();
    if std::env::var_os(crate::SOCKET_ENV).is_some_and(|p| !p.is_empty()) || user.exists() {
        return user;
    }
    let system = PathBuf::from(SYSTEM_SOCKET);
    if system.exists() {
        system
    } else {
        user
    }
}

/// The effective uid of this process.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
