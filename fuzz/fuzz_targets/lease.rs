//! A stored lease entry: the key after `<prefix>/subnets/` up to the first
//! newline (decoded lossily, as the etcd store decodes keys), the value
//! after it, as bytes. Decoded and screened exactly as the store does, next
//! to an older good peer, in four configurations. Properties: no panic; the
//! good peer stays; whatever is accepted is valid (`weft_fuzz::assert_valid`);
//! a decoded key and value survive a write and a read unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::etcd_key;
use weft_core::lease::LeaseAttrs;

fuzz_target!(|data: &[u8]| {
    let (key, value) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let key = String::from_utf8_lossy(key);
    if let Ok(subnets) = etcd_key::parse_subnet_key(&key) {
        let written = etcd_key::subnet_key(&subnets);
        assert_eq!(
            etcd_key::parse_subnet_key(&written),
            Ok(subnets),
            "key {key:?} written back as {written:?}"
        );
    }
    if let Ok(attrs) = LeaseAttrs::from_json(value) {
        let written = attrs.to_json();
        assert_eq!(
            LeaseAttrs::from_json(written.as_bytes()).as_ref(),
            Ok(&attrs),
            "value written back as {written}"
        );
    }
    weft_fuzz::screen_everywhere(&weft_fuzz::decode(&key, value));
});
