//! The driver behind a network interface, as `ethtool -i` shows it, through
//! the `ETHTOOL_GDRVINFO` ioctl.
//!
//! Why: some NIC drivers (VMware's `vmxnet3`) corrupt the checksums of VXLAN
//! packets when the vxlan device leaves them to the NIC, so the choice of
//! TX checksum offload looks at the underlay's driver
//! (`weft_core::offload_policy`).
//!
//! Why the ioctl: ethtool's netlink family has no driver-info message, and
//! `/sys/class/net/<if>/device/driver` shows the devices of the namespace
//! that mounted `/sys`, not of the caller's: in a node's namespace that can
//! be another interface of the same name. The ioctl answers for the calling
//! thread's network namespace and needs no privilege.

use std::os::fd::AsRawFd as _;

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

/// `ETHTOOL_GDRVINFO` from `<linux/ethtool.h>` (libc does not carry it).
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

/// Why an interface's driver could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DrvInfoError {
    #[error("interface name {0:?} is longer than the kernel's 15 bytes")]
    Name(String),
    #[error("no interface {0} in this network namespace")]
    NoSuchDevice(String),
    #[error("cannot open a socket to ask for {name}'s driver: {source}")]
    Socket {
        name: String,
        #[source]
        source: Errno,
    },
    #[error("cannot read {name}'s driver (ETHTOOL_GDRVINFO): {source}")]
    Ioctl {
        name: String,
        #[source]
        source: Errno,
    },
}

/// `struct ethtool_drvinfo`: only `cmd` in and `driver` out matter here.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ifreq` with `ifr_data`, padded to the kernel union's size.
#[repr(C)]
struct IfReqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolDrvinfo,
    _pad: [u8; 16],
}

/// The driver of interface `name` in the calling thread's network
/// namespace (`veth`, `virtio_net`, `vmxnet3`…); `None` when the device
/// does not report one (`lo`, some virtual devices).
pub fn driver(name: &str) -> Result<Option<String>, DrvInfoError> {
    let mut ifname = [0u8; libc::IFNAMSIZ];
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(DrvInfoError::Name(name.to_owned()));
    }
    ifname[..bytes.len()].copy_from_slice(bytes);
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|source| DrvInfoError::Socket {
        name: name.to_owned(),
        source,
    })?;
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut req = IfReqData {
        name: ifname,
        data: &mut info,
        _pad: [0; 16],
    };
    match gdrvinfo(&sock, &mut req) {
        Ok(()) => {}
        Err(Errno::ENODEV) => return Err(DrvInfoError::NoSuchDevice(name.to_owned())),
        Err(Errno::EOPNOTSUPP) => return Ok(None),
        Err(source) => {
            return Err(DrvInfoError::Ioctl {
                name: name.to_owned(),
                source,
            });
        }
    }
    let end = info
        .driver
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(info.driver.len());
    let driver = String::from_utf8_lossy(&info.driver[..end]).into_owned();
    Ok((!driver.is_empty()).then_some(driver))
}

/// `ioctl(SIOCETHTOOL)` with an `ETHTOOL_GDRVINFO` request.
#[allow(unsafe_code)]
fn gdrvinfo(sock: &std::os::fd::OwnedFd, req: &mut IfReqData) -> Result<(), Errno> {
    // SAFETY: `sock` is an open socket; `req` is a live `struct ifreq` of
    // the kernel's size whose `ifr_data` points at a live, initialised
    // `struct ethtool_drvinfo` with `cmd` set, which the kernel fills in
    // (copy_to_user of exactly that struct) before the call returns. Both
    // outlive the call.
    let r = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCETHTOOL,
            std::ptr::from_mut::<IfReqData>(req),
        )
    };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<EthtoolDrvinfo>(), 196);
        assert_eq!(std::mem::size_of::<IfReqData>(), 40);
    }

    #[test]
    fn bad_names_are_refused_before_the_kernel() {
        for name in ["", "sixteen-bytes-xx", "nul\0name"] {
            assert!(
                matches!(driver(name), Err(DrvInfoError::Name(_))),
                "{name:?}"
            );
        }
    }
}
