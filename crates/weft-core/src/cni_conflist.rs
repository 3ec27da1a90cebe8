//! The CNI conflist flannel deployments install: here, beside the other
//! formats weft shares with flannel, because the agent installs it
//! (`--cni-conf-file`) and the tests compare against it.

/// flannel's conflist, byte for byte the `cni-conf.json` of
/// `deploy/base/kube-flannel-cfg.yml` (a test holds the two together): network
/// `cbr0`, the flannel plugin delegating to the bridge with hairpin mode and
/// the default gateway, then `portmap` for hostPort.
pub const FLANNEL_CONFLIST: &str = r#"{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "flannel",
      "delegate": {
        "hairpinMode": true,
        "isDefaultGateway": true
      }
    },
    {
      "type": "portmap",
      "capabilities": {
        "portMappings": true
      }
    }
  ]
}
"#;
