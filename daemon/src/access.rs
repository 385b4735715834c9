//! Who may talk to the daemon: peer credentials checked against the allowed uids/group.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::sync::Mutex;

/// The access rule: the daemon's own uid and root always; more uids or a group if set.
#[derive(Debug)]
pub struct Access {
    own_uid: u32,
    uids: Vec<u32>,
    group: Option<(String, u32)>,
    refused_logged: Mutex<HashSet<u32>>,
}

impl Access {
    /// Builds the rule; an unknown group name is an error.
    pub fn new(allow_uids: &[u32], allow_group: Option<&str>) -> anyhow::Result<Self> {
        let group = match allow_group {
            Some(name) => Some((
                name.to_string(),
                group_id(name)
                    .ok_or_else(|| anyhow::anyhow!("allow_group: no group named {name:?}"))?,
            )),
            None => None,
        };
        Ok(Self {
            // SAFETY: geteuid cannot fail.
            own_uid: unsafe { libc::geteuid() },
            uids: allow_uids.to_vec(),
            group,
            refused_logged: Mutex::new(HashSet::new()),
        })
    }

    /// Whether a peer with these credentials may connect.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        if uid == self.own_uid || uid == 0 || self.uids.contains(&uid) {
            return true;
        }
        match &self.group {
            Some((_, group)) => gid == *group || user_in_group(uid, *group),
            None => false,
        }
    }

    /// Whether the peer on `stream` may talk to us, from its credentials (`SO_PEERCRED`).
    /// Each refused uid is logged once.
    pub fn admits(&self, stream: &tokio::net::UnixStream) -> bool {
        match stream.peer_cred() {
            Ok(cred) => {
                let (uid, gid) = (cred.uid(), cred.gid());
                let ok = self.allows(uid, gid);
                if !ok && self.first_refusal(uid) {
                    tracing::warn!(
                        uid,
                        gid,
                        "refused a connection from a peer that is not allowed"
                    );
                }
                ok
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read peer credentials; refusing");
                false
            }
        }
    }

    /// True the first time a uid is refused (so each refused peer is logged once).
    pub fn first_refusal(&self, uid: u32) -> bool {
        self.refused_logged
            .lock()
            .map(|mut seen| seen.insert(uid))
            .unwrap_or(false)
    }
}

fn group_id(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: getgrnam takes a valid C string; the result is read at once.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    (!g.is_null()).then(|| unsafe { (*g).gr_gid })
}

/// Whether `uid`'s supplementary groups include `gid`.
fn user_in_group(uid: u32, gid: u32) -> bool {
    // SAFETY: getpwuid returns a pointer to static storage or null; read at once.
    let pw = unsafe { libc::getpwuid(uid) };
    if pw.is_null() {
        return false;
    }
    let (name, primary) = unsafe { (CStr::from_ptr((*pw).pw_name).to_owned(), (*pw).pw_gid) };
    if primary == gid {
        return true;
    }
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        // SAFETY: the buffer holds n entries; n is updated to the count needed.
        let r = unsafe { libc::getgrouplist(name.as_ptr(), primary, groups.as_mut_ptr(), &mut n) };
        if r >= 0 {
            return groups[..n as usize].contains(&gid);
        }
        if n as usize <= groups.len() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_uid_and_root_always_others_only_when_listed() {
        let a = Access::new(&[4242], None).unwrap();
        let me = unsafe { libc::geteuid() };
        assert!(a.allows(me, 12345));
        assert!(a.allows(0, 0));
        assert!(a.allows(4242, 4242));
        assert!(!a.allows(65534, 65534) || me == 65534);
        assert!(a.first_refusal(65534));
        assert!(!a.first_refusal(65534));
    }

    #[test]
    fn group_rule_and_unknown_group() {
        assert!(Access::new(&[], Some("no-such-group-batchd")).is_err());
        let a = Access::new(&[], Some("root")).unwrap();
        assert!(a.allows(65534, 0), "primary gid in the group");
    }
}
