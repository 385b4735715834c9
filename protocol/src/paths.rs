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

/// The effective uid of this process.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
