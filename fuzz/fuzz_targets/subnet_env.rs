//! subnet.env as the CNI plugin reads it (`SubnetEnv::parse`). Properties:
//! no panic; an error formats; a file the plugin would accept (nothing
//! missing, no problems) has an MTU a link can have and each subnet inside
//! its family's network; a parsed file renders (as the agent writes it) to
//! text that parses back to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::subnet_env::{MTU_RANGE, SubnetEnv};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SubnetEnv::parse(text) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(env) => {
            if env.missing_keys().is_empty() && env.problems().is_empty() {
                assert!(env.mtu.is_some_and(|m| MTU_RANGE.contains(&m)), "{env:?}");
                if let Some(s) = env.subnet {
                    assert!(env.networks.iter().any(|n| n.contains(&s)), "{env:?}");
                }
                if let Some(s) = env.ipv6_subnet {
                    assert!(env.ipv6_networks.iter().any(|n| n.contains(&s)), "{env:?}");
                }
            }
            // The file carries a subnet's first host (10.244.1.1/24); a /32
            // or /128 has none, and no agent ever leases one.
            let host_route = env.subnet.is_some_and(|s| s.prefix_len() == 32)
                || env.ipv6_subnet.is_some_and(|s| s.prefix_len() == 128);
            if !host_route {
                let rendered = env.render();
                assert_eq!(
                    SubnetEnv::parse(&rendered).as_ref(),
                    Ok(&env),
                    "rendered as:\n{rendered}"
                );
            }
        }
    }
});
