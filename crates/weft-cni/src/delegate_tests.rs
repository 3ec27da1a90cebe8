use super::*;
use crate::netconf;

const GOLDEN_DELEGATE: &str = include_str!("../tests/golden/cni-delegate-dualstack.json");

/// The subnet.env behind the golden capture: dual-stack, `--ip-masq`.
const DUAL_STACK_ENV: &str = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\n\
    FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:5::1/64\n\
    FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

/// flannel's golden host-gw node: IPv4 only, no `--ip-masq`.
const V4_ENV: &str = include_str!("../tests/golden/subnet-env-hostgw.txt");

fn conf(json: &str) -> NetConf {
    netconf::parse(json.as_bytes()).unwrap()
}

fn env(text: &str) -> SubnetEnv {
    SubnetEnv::parse(text).unwrap()
}

fn built(conf_json: &str, env_text: &str) -> Value {
    Value::Object(build(&conf(conf_json), &env(env_text)).unwrap())
}

const CBR0: &str = r#"{"cniVersion":"1.0.0","name":"cbr0","type":"flannel",
    "delegate":{"hairpinMode":true,"isDefaultGateway":true}}"#;

#[test]
fn dual_stack_matches_flannels_golden() {
    let golden: Value = serde_json::from_str(GOLDEN_DELEGATE).unwrap();
    let d = build(&conf(CBR0), &env(DUAL_STACK_ENV)).unwrap();
    assert_eq!(Value::Object(d.clone()), golden);
    // Byte for byte what flannel writes: compact, keys sorted.
    assert_eq!(to_bytes(&d), serde_json::to_vec(&golden).unwrap());
    assert!(String::from_utf8(to_bytes(&d)).unwrap().starts_with(
        r#"{"cniVersion":"1.0.0","hairpinMode":true,"ipMasq":false,"ipam":{"ranges""#
    ));
}

#[test]
fn v4_only_has_one_range_and_masquerades_in_the_bridge() {
    let d = built(r#"{"cniVersion":"0.3.1","name":"cbr0"}"#, V4_ENV);
    assert_eq!(
        d,
        json!({
            "cniVersion": "0.3.1",
            "name": "cbr0",
            "type": "bridge",
            "ipMasq": true,
            "mtu": 1500,
            "isGateway": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.244.6.0/24"}]],
                "routes": [{"dst": "10.244.0.0/16"}],
            },
        })
    );
}

#[test]
fn user_ipam_is_kept_and_routes_merged_before_the_cluster_network() {
    let d = built(
        r#"{"cniVersion":"1.0.0","name":"cbr0","ipam":{
            "dataDir":"/tmp/hl","ranges":[[{"subnet":"192.168.0.0/24"}]],
            "routes":[{"dst":"192.0.2.0/24","gw":"10.244.6.254","priority":5},{"dst":"0.0.0.0/0"}]}}"#,
        V4_ENV,
    );
    assert_eq!(
        d["ipam"],
        json!({
            "type": "host-local",
            "dataDir": "/tmp/hl",
            "ranges": [[{"subnet": "10.244.6.0/24"}]],
            "routes": [
                {"dst": "192.0.2.0/24", "gw": "10.244.6.254", "priority": 5},
                {"dst": "0.0.0.0/0"},
                {"dst": "10.244.0.0/16"},
            ],
        })
    );
}

#[test]
fn a_user_route_to_the_cluster_network_is_not_doubled() {
    let d = built(
        r#"{"name":"cbr0","ipam":{"type":"static","routes":[{"dst":"10.244.0.0/16","gw":"10.244.6.1"}]}}"#,
        V4_ENV,
    );
    assert_eq!(d["ipam"]["type"], "static");
    assert_eq!(
        d["ipam"]["routes"],
        json!([{"dst": "10.244.0.0/16", "gw": "10.244.6.1"}])
    );
    // No cniVersion in the input: none in the delegate (both mean 0.1.0).
    assert!(d.get("cniVersion").is_none());
}

#[test]
fn user_delegate_options_win_and_pass_through() {
    let d = built(
        r#"{"cniVersion":"1.0.0","name":"cbr0","runtimeConfig":{"mac":"aa:bb:cc:dd:ee:ff"},
            "delegate":{"ipMasq":true,"mtu":1400,"isGateway":false,"forceAddress":true,
                        "bridge":"weft0","hairpinMode":true}}"#,
        DUAL_STACK_ENV,
    );
    assert_eq!(d["ipMasq"], true);
    assert_eq!(d["mtu"], 1400);
    assert_eq!(d["isGateway"], false);
    assert_eq!(d["forceAddress"], true);
    assert_eq!(d["bridge"], "weft0");
    assert_eq!(d["runtimeConfig"], json!({"mac": "aa:bb:cc:dd:ee:ff"}));
}

#[test]
fn other_delegates_get_no_is_gateway() {
    let d = built(
        r#"{"name":"n","delegate":{"type":"ipvlan","master":"eth0"}}"#,
        V4_ENV,
    );
    assert_eq!(d["type"], "ipvlan");
    assert!(d.get("isGateway").is_none());
}

#[test]
fn spec_1_1_0_reaches_the_delegate_as_1_0_0() {
    let d = built(r#"{"cniVersion":"1.1.0","name":"cbr0"}"#, V4_ENV);
    assert_eq!(d["cniVersion"], "1.0.0");
}

#[test]
fn refuses_delegate_fields_flannel_sets() {
    let e = env(V4_ENV);
    let err = |json: &str| build(&conf(json), &e).unwrap_err();

    let n = err(r#"{"name":"n","delegate":{"name":"x"}}"#);
    assert_eq!(n.code, code::UNSUPPORTED_FIELD);
    assert_eq!(
        n.msg,
        "'delegate' dictionary must not have 'name' field, it'll be set by flannel"
    );

    let i = err(r#"{"name":"n","delegate":{"ipam":{}}}"#);
    assert_eq!(i.code, code::UNSUPPORTED_FIELD);
    assert_eq!(
        i.msg,
        "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel"
    );

    let t = err(r#"{"name":"n","delegate":{"type":7}}"#);
    assert_eq!(t.code, code::INVALID_NETCONF);
    assert_eq!(
        t.msg,
        "'delegate' dictionary, if present, must have (string) 'type' field"
    );

    for ty in ["../bin/sh", "", ".."] {
        let p = err(&format!(r#"{{"name":"n","delegate":{{"type":"{ty}"}}}}"#));
        assert_eq!(p.code, code::INVALID_NETCONF, "{ty}");
    }
}

#[test]
fn refuses_malformed_user_routes() {
    let e = env(V4_ENV);
    for routes in [
        r#""10.0.0.0/8""#,
        r#"["10.0.0.0/8"]"#,
        r#"[{"dst":"10.0.0.0"}]"#,
        r#"[{"dst":"10.0.0.0/8","gw":"x"}]"#,
        // libcni decodes dst with Go's net.ParseCIDR, which refuses leading
        // zeros (read as octal by other tools) and signs.
        r#"[{"dst":"010.0.0.0/8"}]"#,
        r#"[{"dst":"::ffff:010.0.0.0/104"}]"#,
        r#"[{"dst":"10.0.0.0/+8"}]"#,
    ] {
        let json = format!(r#"{{"name":"n","ipam":{{"routes":{routes}}}}}"#);
        let err = build(&conf(&json), &e).unwrap_err();
        assert_eq!(err.code, code::INVALID_NETCONF, "{routes}");
        err.assert_msg_has("ipam.routes");
    }
    let json = r#"{"name":"n","ipam":{"routes":"10.0.0.0/8"}}"#;
    let err = build(&conf(json), &e).unwrap_err();
    assert!(
        err.msg
            .ends_with("ipam.routes must be an array, got a string"),
        "{}",
        err.msg
    );
}

#[test]
fn reads_the_type_of_a_saved_configuration() {
    let golden: Value = serde_json::from_str(GOLDEN_DELEGATE).unwrap();
    assert_eq!(plugin_type(golden.as_object().unwrap()).unwrap(), "bridge");
    let bad = json!({"type": "../x"});
    assert!(plugin_type(bad.as_object().unwrap()).is_err());
}
