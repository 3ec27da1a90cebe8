//! `/run/flannel/subnet.env` on disk: written atomically, read back at the
//! next start so the node keeps its subnet.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use weft_core::lease::LeaseSubnets;
use weft_core::subnet_env::SubnetEnv;

/// Writes the file as flannel does: a temporary file in the same directory,
/// flushed to disk, mode 0644 whatever the umask, then renamed over the old
/// one, so a reader (the CNI plugin) sees the old file or the new one, never
/// half of either. The directory is created (0755) if missing.
pub fn write(path: &Path, env: &SubnetEnv) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(env.render().as_bytes())?;
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// The subnets a previous run wrote, if the file exists and parses. A
/// missing or broken file is not an error: the node then takes any subnet.
pub fn previous_subnets(path: &Path) -> LeaseSubnets {
    let Ok(text) = fs::read_to_string(path) else {
        return LeaseSubnets::default();
    };
    match SubnetEnv::parse(&text) {
        Ok(env) => LeaseSubnets {
            v4: env.subnet,
            v6: env.ipv6_subnet,
        },
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring the previous subnet file");
            LeaseSubnets::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_with_mode_0644_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/flannel/subnet.env");
        let env = SubnetEnv {
            networks: vec!["10.244.0.0/16".parse().unwrap()],
            subnet: Some("10.244.6.0/24".parse().unwrap()),
            mtu: Some(1450),
            ipmasq: Some(false),
            ..Default::default()
        };
        write(&path, &env).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.6.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(previous_subnets(&path).v4, env.subnet);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn missing_or_broken_previous_file_means_no_preference() {
        let dir = tempfile::tempdir().unwrap();
        assert!(previous_subnets(&dir.path().join("absent")).is_empty());
        let broken = dir.path().join("broken");
        fs::write(&broken, "FLANNEL_SUBNET=nonsense\n").unwrap();
        assert!(previous_subnets(&broken).is_empty());
    }
}
