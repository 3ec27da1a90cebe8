//! net-conf.json, as `weft_core::netconf::parse` reads it (the ConfigMap,
//! the etcd config key, `weft config validate`). Properties: no panic; an
//! error formats; an accepted config prints (as `weft config validate`
//! prints it) as a config that parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::netconf::{BackendConfig, parse};

fuzz_target!(|data: &[u8]| {
    // The agent reads the file as UTF-8 text before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Err(e) => {
            let _ = (e.to_string(), e.hint());
        }
        Ok(cfg) => {
            let printed = serde_json::to_string_pretty(&cfg).expect("a config serialises");
            // Pre-shared keys are printed redacted, so those cannot come back.
            let secret = match &cfg.backend {
                BackendConfig::Ipsec(_) => true,
                BackendConfig::Wireguard(w) => w.psk.is_some(),
                _ => false,
            };
            if !secret {
                let again = parse(&printed)
                    .unwrap_or_else(|e| panic!("printed config refused: {e}\n{printed}"));
                let reprinted = serde_json::to_string_pretty(&again).expect("serialises");
                assert_eq!(
                    printed, reprinted,
                    "the printed config means something else"
                );
            }
        }
    }
});
