//! Reading subnet.env, the agent's hand-over to this plugin.
//!
//! The file's absence is the most common reason pods on a fresh node fail to
//! start, and flannel's plugin answers it with a bare "open …: no such file
//! or directory". Here it is a "try again later" (code 11) that says which
//! component is not ready and where to look.

use std::io::ErrorKind;
use std::path::Path;

use weft_core::subnet_env::SubnetEnv;

use crate::error::{CniError, code};

/// Where an operator looks when the agent is not ready.
const AGENT_HINT: &str = "check that the weft (or flannel) agent pod on this node is running and ready: \
     `kubectl -n kube-flannel get pods -o wide --field-selector spec.nodeName=<this node>` \
     and `kubectl -n kube-flannel logs <that pod>` (on K3s: `journalctl -u k3s`)";

/// Loads and checks the file: present, parsable, and holding a network and a
/// subnet of some family, the MTU and the masquerade setting.
pub fn load(path: &Path) -> Result<SubnetEnv, CniError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "{shown} is missing: the agent on this node has not written it yet \
                     (it does once it holds a subnet lease); {AGENT_HINT}"
                ),
            )
            .with_details(format!("open {shown}: {e}"))
        } else {
            CniError::new(code::IO, format!("cannot read {shown}: {e}"))
        }
    })?;
    let env = SubnetEnv::parse(&text).map_err(|e| {
        CniError::new(
            code::INVALID_NETCONF,
            format!(
                "{shown} is not a valid subnet.env: {e}; the agent writes this file, {AGENT_HINT}"
            ),
        )
    })?;
    let missing = env.missing_keys();
    if !missing.is_empty() {
        return Err(CniError::new(
            code::INVALID_NETCONF,
            format!(
                "{shown} is missing {}; the agent writes this file, {AGENT_HINT}",
                missing.join(", ")
            ),
        ));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_try_again_later_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnet.env");
        let e = load(&path).unwrap_err();
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        assert!(
            e.msg
                .starts_with(&format!("{} is missing: ", path.display())),
            "{}",
            e.msg
        );
        assert!(e.msg.contains("kubectl -n kube-flannel logs"), "{}", e.msg);
        assert!(e.details.contains("open "), "{}", e.details);
    }

    #[test]
    fn incomplete_file_names_the_keys_as_flannel_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnet.env");
        std::fs::write(
            &path,
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n",
        )
        .unwrap();
        let e = load(&path).unwrap_err();
        assert_eq!(e.code, code::INVALID_NETCONF);
        assert!(
            e.msg.contains("is missing FLANNEL_MTU, FLANNEL_IPMASQ;"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn bad_value_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnet.env");
        std::fs::write(&path, "FLANNEL_MTU=big\n").unwrap();
        assert_eq!(load(&path).unwrap_err().code, code::INVALID_NETCONF);
    }

    #[test]
    fn unreadable_is_io() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap_err().code, code::IO);
    }
}
