//! Reading subnet.env, the agent's hand-over to this plugin.
//!
//! The file's absence is the most common reason pods on a fresh node fail to
//! start, and flannel's plugin answers it with a bare "open …: no such file
//! or directory". Here it is a "try again later" (code 11) that says which
//! component is not ready and where to look.

use std::fs::{File, FileType};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use weft_core::subnet_env::SubnetEnv;

use crate::error::{CniError, code};

/// Where an operator looks when the agent is not ready.
const AGENT_HINT: &str = "check that the weft (or flannel) agent pod on this node is running and ready: \
     `kubectl -n kube-flannel get pods -o wide --field-selector spec.nodeName=<this node>` \
     and `kubectl -n kube-flannel logs <that pod>` (on K3s: `journalctl -u k3s`)";

/// The largest subnet.env read. The agent writes about a hundred bytes;
/// more than this is not its file, and reading on would let a wrong
/// `subnetFile` (`/dev/zero`) take all memory.
pub const MAX_SUBNET_ENV_BYTES: u64 = 1 << 20;

/// Loads and checks the file: a regular file of at most
/// `MAX_SUBNET_ENV_BYTES`, parsable, holding a network and a subnet of
/// some family, the MTU and the masquerade setting, and consistent
/// ([`SubnetEnv::problems`]): a bad file is refused here, before any
/// delegate runs, instead of failing later as a veth the kernel refused.
pub fn load(path: &Path) -> Result<SubnetEnv, CniError> {
    let text = read(path)?;
    let shown = path.display();
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
    let problems = env.problems();
    if !problems.is_empty() {
        return Err(CniError::new(
            code::INVALID_NETCONF,
            format!(
                "{shown} is not a valid subnet.env: {}; nothing was created for the pod; \
                 the agent writes this file, {AGENT_HINT}",
                problems.join("; ")
            ),
        ));
    }
    Ok(env)
}

/// The file's text. Anything but a regular file is refused before it is
/// opened: opening a FIFO for reading waits for a writer, and a device
/// such as `/dev/zero` never ends. The opened file is checked again, and
/// at most `MAX_SUBNET_ENV_BYTES` + 1 bytes are read whatever it is. (A
/// FIFO swapped in between the check and the open would still hold the
/// open; only someone who can already write the agent's directory could
/// do that.)
fn read(path: &Path) -> Result<String, CniError> {
    let shown = path.display();
    let cannot = |e: std::io::Error| CniError::new(code::IO, format!("cannot read {shown}: {e}"));
    let not_regular = |t: FileType| {
        CniError::new(
            code::IO,
            format!(
                "cannot read {shown}: it is {}, not a regular file; subnetFile must name the \
                 subnet.env file the agent writes (default {})",
                kind(t),
                weft_core::subnet_env::DEFAULT_PATH
            ),
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| {
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
            cannot(e)
        }
    })?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let file = File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SUBNET_ENV_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SUBNET_ENV_BYTES {
        return Err(CniError::new(
            code::INVALID_NETCONF,
            format!(
                "{shown} is not a valid subnet.env: it is larger than {MAX_SUBNET_ENV_BYTES} bytes \
                 (the agent writes a few lines); check that subnetFile names the agent's file \
                 (default {})",
                weft_core::subnet_env::DEFAULT_PATH
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        cannot(std::io::Error::new(
            ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

/// What a file that is not a regular one is, for a message.
fn kind(t: FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::{fifo_refusal, file_with};

    /// A complete subnet.env, as the agent writes it.
    const GOOD: &str = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n\
                        FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

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
        e.assert_msg_has("kubectl -n kube-flannel logs");
        assert!(e.details.contains("open "), "{}", e.details);
    }

    #[test]
    fn incomplete_file_names_the_keys_as_flannel_does() {
        let (_dir, path) = file_with(
            "subnet.env",
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n",
        );
        let e = load(&path).unwrap_err();
        e.assert_says(
            code::INVALID_NETCONF,
            "is missing FLANNEL_MTU, FLANNEL_IPMASQ;",
        );
    }

    #[test]
    fn an_inconsistent_file_is_refused_naming_each_field() {
        let (_dir, path) = file_with(
            "subnet.env",
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.9.1.1/24\n\
             FLANNEL_MTU=99999999\nFLANNEL_IPMASQ=true\n",
        );
        let e = load(&path).unwrap_err();
        assert_eq!(e.code, code::INVALID_NETCONF);
        for want in [
            "FLANNEL_MTU=99999999 is outside 68–65535",
            "FLANNEL_SUBNET=10.9.1.0/24 is outside FLANNEL_NETWORK=10.244.0.0/16",
            "nothing was created for the pod",
        ] {
            assert!(e.msg.contains(want), "{want}: {}", e.msg);
        }
        let (_dir, path) = file_with(
            "subnet.env",
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n\
             FLANNEL_MTU=1450\nFLANNEL_IPMASQ=maybe\n",
        );
        let e = load(&path).unwrap_err();
        assert!(
            e.msg
                .contains("FLANNEL_IPMASQ has an invalid value \"maybe\""),
            "{}",
            e.msg
        );
    }

    #[test]
    fn bad_value_is_invalid() {
        let (_dir, path) = file_with("subnet.env", "FLANNEL_MTU=big\n");
        assert_eq!(load(&path).unwrap_err().code, code::INVALID_NETCONF);
    }

    #[test]
    fn unreadable_is_io() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path()).unwrap_err();
        e.assert_says(code::IO, "it is a directory, not a regular file");
    }

    #[test]
    fn a_device_is_refused_without_reading_it() {
        let e = load(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.code, code::IO);
        assert!(
            e.msg
                .starts_with("cannot read /dev/zero: it is a character device, not a regular file"),
            "{}",
            e.msg
        );
    }

    /// A FIFO would block the open until a writer came: refused at once.
    #[test]
    fn a_fifo_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnet.env");
        let p = path.clone();
        let e = fifo_refusal(&path, move || load(&p));
        e.assert_says(code::IO, "it is a FIFO");
    }

    #[test]
    fn an_oversized_file_is_refused() {
        // Exactly the limit is read (and parsed: comments pad it).
        let pad = MAX_SUBNET_ENV_BYTES as usize - GOOD.len() - 1;
        let (_dir, path) = file_with("subnet.env", &format!("{GOOD}#{}", "x".repeat(pad)));
        load(&path).unwrap();
        std::fs::write(&path, format!("{GOOD}#{}", "x".repeat(pad + 1))).unwrap();
        let e = load(&path).unwrap_err();
        e.assert_says(code::INVALID_NETCONF, "larger than 1048576 bytes");
    }

    #[test]
    fn a_symlink_to_the_file_is_read() {
        let (dir, real) = file_with("real.env", GOOD);
        let link = dir.path().join("subnet.env");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(load(&link).unwrap().mtu, Some(1450));
    }
}
