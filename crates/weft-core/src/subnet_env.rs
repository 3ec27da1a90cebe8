//! `/run/flannel/subnet.env`: how the agent tells the CNI plugin (and
//! anything else on the node, such as Docker through mk-docker-opts) which
//! subnet, MTU and masquerade setting this node has.

use std::fmt::Write as _;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::prefix;

/// flannel's default `--subnet-file`.
pub const DEFAULT_PATH: &str = "/run/flannel/subnet.env";

/// The file's content. Subnets are kept as network prefixes
/// (`10.244.1.0/24`); the file carries the first host address
/// (`10.244.1.1/24`), as flannel writes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubnetEnv {
    /// `FLANNEL_NETWORK`; flannel once wrote several, comma-separated.
    pub networks: Vec<Ipv4Net>,
    pub subnet: Option<Ipv4Net>,
    pub ipv6_networks: Vec<Ipv6Net>,
    pub ipv6_subnet: Option<Ipv6Net>,
    pub mtu: Option<u32>,
    pub ipmasq: Option<bool>,
}

/// Why a subnet.env file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetEnvError {
    #[error("line {line}: expected KEY=VALUE")]
    Syntax { line: usize },
    #[error("line {line}: {key} has an invalid value {value:?}")]
    Value {
        line: usize,
        key: &'static str,
        value: String,
    },
}

impl SubnetEnv {
    /// The bytes flannel writes, in flannel's order: IPv4 lines only when
    /// IPv4 is enabled, IPv6 lines only when IPv6 is, then MTU and IPMASQ.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.networks.is_empty() {
            let nets: Vec<String> = self.networks.iter().map(|n| n.to_string()).collect();
            let _ = writeln!(out, "FLANNEL_NETWORK={}", nets.join(","));
        }
        if let Some(sn) = self.subnet {
            let _ = writeln!(out, "FLANNEL_SUBNET={}", first_host_cidr(IpNet::V4(sn)));
        }
        if !self.ipv6_networks.is_empty() {
            let nets: Vec<String> = self.ipv6_networks.iter().map(|n| n.to_string()).collect();
            let _ = writeln!(out, "FLANNEL_IPV6_NETWORK={}", nets.join(","));
        }
        if let Some(sn) = self.ipv6_subnet {
            let _ = writeln!(
                out,
                "FLANNEL_IPV6_SUBNET={}",
                first_host_cidr(IpNet::V6(sn))
            );
        }
        if let Some(mtu) = self.mtu {
            let _ = writeln!(out, "FLANNEL_MTU={mtu}");
        }
        if let Some(masq) = self.ipmasq {
            let _ = writeln!(out, "FLANNEL_IPMASQ={masq}");
        }
        out
    }

    /// Reads the file as flannel's readers do (godotenv): `KEY=VALUE` lines,
    /// blank lines and `#` comments skipped, optional `export ` and quotes.
    /// Unknown keys are ignored; a known key with a bad value is an error.
    pub fn parse(text: &str) -> Result<SubnetEnv, SubnetEnvError> {
        let mut env = SubnetEnv::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
            let (key, value) = trimmed
                .split_once('=')
                .ok_or(SubnetEnvError::Syntax { line })?;
            let value = unquote(value.trim());
            let key = key.trim();
            match key {
                "FLANNEL_NETWORK" => env.networks = parse_list(value, line, "FLANNEL_NETWORK")?,
                "FLANNEL_IPV6_NETWORK" => {
                    env.ipv6_networks = parse_list(value, line, "FLANNEL_IPV6_NETWORK")?
                }
                "FLANNEL_SUBNET" => env.subnet = Some(parse_subnet(value, line, "FLANNEL_SUBNET")?),
                "FLANNEL_IPV6_SUBNET" => {
                    env.ipv6_subnet = Some(parse_subnet(value, line, "FLANNEL_IPV6_SUBNET")?)
                }
                "FLANNEL_MTU" => {
                    env.mtu = Some(value.parse().map_err(|_| bad(line, "FLANNEL_MTU", value))?)
                }
                "FLANNEL_IPMASQ" => {
                    env.ipmasq = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(line, "FLANNEL_IPMASQ", value)),
                    })
                }
                _ => {}
            }
        }
        Ok(env)
    }

    /// The keys a consumer needs that the file lacks, named as flannel's
    /// CNI plugin names them: a network and a subnet of at least one
    /// family, the MTU and the masquerade setting.
    pub fn missing_keys(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.networks.is_empty() && self.ipv6_networks.is_empty() {
            missing.push("FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK");
        }
        if self.subnet.is_none() && self.ipv6_subnet.is_none() {
            missing.push("FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET");
        }
        if self.mtu.is_none() {
            missing.push("FLANNEL_MTU");
        }
        if self.ipmasq.is_none() {
            missing.push("FLANNEL_IPMASQ");
        }
        missing
    }
}

/// The MTUs a link may have: IPv4's minimum (RFC 791) to the largest the
/// kernel's 16-bit length fields allow.
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

impl SubnetEnv {
    /// What makes a complete file unusable even though every value parses:
    /// an MTU no link can have, a subnet outside the network of its
    /// family, a family with a network but no subnet or the reverse. Each
    /// names its key, so a consumer can refuse the file before acting on
    /// it (the CNI plugin creates no interface for a bad one).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(mtu) = self.mtu
            && !MTU_RANGE.contains(&mtu)
        {
            out.push(format!(
                "FLANNEL_MTU={mtu} is outside {}–{}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ));
        }
        family_problems(&mut out, "", &self.networks, self.subnet, |n, s| {
            n.contains(&s)
        });
        family_problems(
            &mut out,
            "IPV6_",
            &self.ipv6_networks,
            self.ipv6_subnet,
            |n, s| n.contains(&s),
        );
        out
    }
}

/// One family's network and subnet: both or neither, and the subnet
/// inside one of the networks.
fn family_problems<N: std::fmt::Display, S: std::fmt::Display + Copy>(
    out: &mut Vec<String>,
    family: &str,
    networks: &[N],
    subnet: Option<S>,
    contains: impl Fn(&N, S) -> bool,
) {
    match (networks.is_empty(), subnet) {
        (true, None) => {}
        (false, None) => out.push(format!(
            "FLANNEL_{family}NETWORK is set but FLANNEL_{family}SUBNET is not"
        )),
        (true, Some(s)) => out.push(format!(
            "FLANNEL_{family}SUBNET={s} is set but FLANNEL_{family}NETWORK is not"
        )),
        (false, Some(s)) => {
            if !networks.iter().any(|n| contains(n, s)) {
                let nets: Vec<String> = networks.iter().map(ToString::to_string).collect();
                out.push(format!(
                    "FLANNEL_{family}SUBNET={s} is outside FLANNEL_{family}NETWORK={}",
                    nets.join(",")
                ));
            }
        }
    }
}

fn first_host_cidr(net: IpNet) -> String {
    format!("{}/{}", prefix::first_host(net), net.prefix_len())
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn bad(line: usize, key: &'static str, value: &str) -> SubnetEnvError {
    SubnetEnvError::Value {
        line,
        key,
        value: value.chars().take(128).collect(),
    }
}

/// A prefix of one family, narrowed from either.
trait FamilyNet: Sized + PartialEq {
    fn narrow(net: IpNet) -> Option<Self>;
}

impl FamilyNet for Ipv4Net {
    fn narrow(net: IpNet) -> Option<Self> {
        prefix::as_v4(net)
    }
}

impl FamilyNet for Ipv6Net {
    fn narrow(net: IpNet) -> Option<Self> {
        prefix::as_v6(net)
    }
}

/// Parses a comma list of networks of one family, masked and de-duplicated
/// in order, as flannel's CNI plugin does.
fn parse_list<N: FamilyNet>(
    value: &str,
    line: usize,
    key: &'static str,
) -> Result<Vec<N>, SubnetEnvError> {
    let mut out: Vec<N> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net = prefix::parse_cidr(part).map_err(|_| bad(line, key, value))?;
        let net = N::narrow(net.trunc()).ok_or_else(|| bad(line, key, value))?;
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(out)
}

fn parse_subnet<N: FamilyNet>(
    value: &str,
    line: usize,
    key: &'static str,
) -> Result<N, SubnetEnvError> {
    let net = prefix::parse_cidr(value).map_err(|_| bad(line, key, value))?;
    N::narrow(net.trunc()).ok_or_else(|| bad(line, key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<String> {
        SubnetEnv::parse(text).unwrap().problems()
    }

    #[test]
    fn a_good_file_has_no_problems() {
        assert!(problems_of(&vxlan_masq().render()).is_empty());
        assert!(
            problems_of(
                "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.6.1/24\n\
                 FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:6::1/64\n\
                 FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn each_problem_names_its_key() {
        assert_eq!(
            problems_of(
                "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.9.1.1/24\n\
                 FLANNEL_MTU=99999999\nFLANNEL_IPMASQ=true\n"
            ),
            [
                "FLANNEL_MTU=99999999 is outside 68–65535",
                "FLANNEL_SUBNET=10.9.1.0/24 is outside FLANNEL_NETWORK=10.244.0.0/16",
            ]
        );
        assert_eq!(
            problems_of(
                "FLANNEL_MTU=67\nFLANNEL_IPV6_SUBNET=fd00::1/64\nFLANNEL_NETWORK=10.0.0.0/8\n"
            ),
            [
                "FLANNEL_MTU=67 is outside 68–65535",
                "FLANNEL_NETWORK is set but FLANNEL_SUBNET is not",
                "FLANNEL_IPV6_SUBNET=fd00::/64 is set but FLANNEL_IPV6_NETWORK is not",
            ]
        );
        assert!(problems_of("FLANNEL_MTU=68\n").is_empty());
        assert!(problems_of("FLANNEL_MTU=65535\n").is_empty());
    }

    #[test]
    fn ipmasq_is_true_or_false() {
        for (value, want) in [("true", Some(true)), ("false", Some(false))] {
            let env = SubnetEnv::parse(&format!("FLANNEL_IPMASQ={value}\n")).unwrap();
            assert_eq!(env.ipmasq, want);
        }
        for value in ["maybe", "1", "TRUE", ""] {
            assert_eq!(
                SubnetEnv::parse(&format!("FLANNEL_IPMASQ={value}\n")),
                Err(SubnetEnvError::Value {
                    line: 1,
                    key: "FLANNEL_IPMASQ",
                    value: value.to_owned()
                }),
                "{value}"
            );
        }
    }

    fn vxlan_masq() -> SubnetEnv {
        SubnetEnv {
            networks: vec!["10.244.0.0/16".parse().unwrap()],
            subnet: Some("10.244.6.0/24".parse().unwrap()),
            mtu: Some(1450),
            ipmasq: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn renders_flannel_bytes() {
        assert_eq!(
            vxlan_masq().render(),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.6.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        );
    }

    #[test]
    fn renders_dual_stack_in_order() {
        let env = SubnetEnv {
            ipv6_networks: vec!["2001:cafe:42::/56".parse().unwrap()],
            ipv6_subnet: Some("2001:cafe:42::/64".parse().unwrap()),
            ..vxlan_masq()
        };
        assert_eq!(
            env.render(),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.6.1/24\n\
             FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\n\
             FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        );
    }

    #[test]
    fn parses_what_it_renders() {
        let env = vxlan_masq();
        assert_eq!(SubnetEnv::parse(&env.render()), Ok(env));
    }

    #[test]
    fn parses_godotenv_forms() {
        let env = SubnetEnv::parse(
            "# written by hand\n\nexport FLANNEL_NETWORK=\"10.244.0.0/16,10.244.0.0/16\"\nFLANNEL_SUBNET='10.244.6.1/24'\nOTHER=x\n",
        )
        .unwrap();
        assert_eq!(env.networks.len(), 1);
        assert_eq!(env.subnet, Some("10.244.6.0/24".parse().unwrap()));
        assert_eq!(env.missing_keys(), vec!["FLANNEL_MTU", "FLANNEL_IPMASQ"]);
    }

    #[test]
    fn refuses_bad_values() {
        assert!(SubnetEnv::parse("FLANNEL_MTU=big\n").is_err());
        assert!(SubnetEnv::parse("FLANNEL_SUBNET=fd00::1/64\n").is_err());
        assert!(SubnetEnv::parse("FLANNEL_NETWORK=10.244.0.0/33\n").is_err());
        // Go's net.ParseCIDR (flannel's plugin) refuses leading zeros, which
        // some tools read as octal; ipnet's parser would take them.
        for bad in [
            "FLANNEL_NETWORK=010.244.0.0/16\n",
            "FLANNEL_SUBNET=10.244.06.1/24\n",
            "FLANNEL_IPV6_NETWORK=::ffff:010.0.0.0/120\n",
            "FLANNEL_SUBNET=10.244.6.1/+24\n",
        ] {
            assert_eq!(
                SubnetEnv::parse(bad).map_err(|e| matches!(e, SubnetEnvError::Value { .. })),
                Err(true),
                "{bad}"
            );
        }
        assert_eq!(
            SubnetEnv::parse("garbage\n"),
            Err(SubnetEnvError::Syntax { line: 1 })
        );
    }
}
