//! Who may talk to the daemon: peer credentials checked against the allowed uids/group.

use std::collections::HashSet;
use std::ffi::CString;
use std::sync::Mutex;

use nix::unistd::{Gid, Group, Uid, User};

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
            own_uid: nix::unistd::geteuid().as_raw(),
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
    match Group::from_name(name) {
        Ok(g) => g.map(|g| g.gid.as_raw()),
        Err(e) => {
            tracing::warn!(group = name, error = %e, "looking up the group failed");
            None
        }
    }
}

/// Whether `uid`'s primary or supplementary groups include `gid`.
fn user_in_group(uid: u32, gid: u32) -> bool {
    let user = match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => u,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(uid, error = %e, "looking up the user failed");
            return false;
        }
    };
    if user.gid.as_raw() == gid {
        return true;
    }
    let Ok(name) = CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .is_ok_and(|groups| groups.contains(&Gid::from_raw(gid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_uid_and_root_always_others_only_when_listed() {
        let a = Access::new(&[4242], None).unwrap();
        let me = nix::unistd::geteuid().as_raw();
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
