//! Building the delegate's configuration (flannel-compat §5.3), a pure
//! function of the input and subnet.env so the golden comparison needs no
//! root and no files.

use ipnet::IpNet;
use serde_json::{Map, Value, json};
use weft_core::prefix;
use weft_core::subnet_env::SubnetEnv;

use crate::args::truncate;
use crate::error::{CniError, code};
use crate::netconf::{NetConf, json_kind};
use crate::version;

/// The delegate flannel (and weft) uses unless the conflist names another.
pub const DEFAULT_TYPE: &str = "bridge";
/// The IPAM plugin used unless `ipam.type` names another.
pub const DEFAULT_IPAM: &str = "host-local";

/// The configuration the delegate receives for ADD and that is saved for
/// DEL: the user's `delegate` options plus what subnet.env says.
pub fn build(conf: &NetConf, env: &SubnetEnv) -> Result<Map<String, Value>, CniError> {
    let mut d = conf.delegate.clone();
    if d.get("type").is_some_and(|t| !t.is_string()) {
        return Err(CniError::new(
            code::INVALID_NETCONF,
            "'delegate' dictionary, if present, must have (string) 'type' field",
        ));
    }
    for key in ["name", "ipam"] {
        if d.contains_key(key) {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!(
                    "'delegate' dictionary must not have '{key}' field, it'll be set by flannel"
                ),
            )
            .with_details(format!("delegate.{key}: {}", truncate(&d[key].to_string()))));
        }
    }
    if let Some(rc) = &conf.runtime_config {
        d.insert("runtimeConfig".into(), Value::Object(rc.clone()));
    }
    d.insert("name".into(), json!(conf.name));
    let ty = d
        .entry("type")
        .or_insert_with(|| json!(DEFAULT_TYPE))
        .as_str()
        .unwrap_or(DEFAULT_TYPE)
        .to_owned();
    check_plugin_name(&ty)?;
    if !d.contains_key("ipMasq") {
        // The agent masquerades pod traffic itself when FLANNEL_IPMASQ is
        // true; otherwise the bridge plugin should.
        d.insert("ipMasq".into(), json!(!env.ipmasq.unwrap_or(false)));
    }
    if !d.contains_key("mtu") {
        d.insert("mtu".into(), json!(env.mtu));
    }
    if ty == DEFAULT_TYPE && !d.contains_key("isGateway") {
        d.insert("isGateway".into(), json!(true));
    }
    if !conf.cni_version.is_empty() {
        d.insert(
            "cniVersion".into(),
            json!(version::for_delegate(&conf.cni_version)),
        );
    }
    d.insert("ipam".into(), Value::Object(ipam(conf, env)?));
    Ok(d)
}

/// The input's `ipam` (or `{}`) with one range per family present and
/// routes to the cluster network(s) appended to the user's own routes.
fn ipam(conf: &NetConf, env: &SubnetEnv) -> Result<Map<String, Value>, CniError> {
    let mut ipam = conf.ipam.clone().unwrap_or_default();
    ipam.entry("type").or_insert_with(|| json!(DEFAULT_IPAM));
    let mut ranges = Vec::new();
    if let Some(sn) = env.subnet {
        ranges.push(json!([{ "subnet": sn.to_string() }]));
    }
    if let Some(sn) = env.ipv6_subnet {
        ranges.push(json!([{ "subnet": sn.to_string() }]));
    }
    ipam.insert("ranges".into(), Value::Array(ranges));

    let mut routes = user_routes(ipam.get("routes"))?;
    let mut taken: Vec<IpNet> = routes.iter().filter_map(route_dst).collect();
    let networks = env
        .networks
        .iter()
        .map(|n| IpNet::V4(*n))
        .chain(env.ipv6_networks.iter().map(|n| IpNet::V6(*n)));
    for net in networks {
        // A second route to the same destination would make the delegate's
        // route add fail with EEXIST; the user's own route wins.
        if !taken.contains(&net) {
            routes.push(json!({ "dst": net.to_string() }));
            taken.push(net);
        }
    }
    ipam.insert("routes".into(), Value::Array(routes));
    Ok(ipam)
}

/// The user's `ipam.routes`, checked as libcni's `types.Route` would decode
/// them (a CIDR `dst`, an IP `gw`) and otherwise passed through as written.
fn user_routes(routes: Option<&Value>) -> Result<Vec<Value>, CniError> {
    let list = match routes {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(bad_route(format!(
                " must be an array, got {}",
                json_kind(other)
            )));
        }
    };
    for (i, r) in list.iter().enumerate() {
        let Value::Object(obj) = r else {
            return Err(bad_route(format!(
                "[{i}] must be an object like {{\"dst\": \"10.0.0.0/8\"}}"
            )));
        };
        match obj.get("dst").and_then(Value::as_str) {
            Some(dst) if prefix::parse_cidr(dst).is_ok() => {}
            _ => {
                return Err(bad_route(format!(
                    "[{i}].dst must be a CIDR such as \"10.0.0.0/8\""
                )));
            }
        }
        let gw_ok = match obj.get("gw") {
            None | Some(Value::Null) => true,
            Some(gw) => gw
                .as_str()
                .is_some_and(|g| g.parse::<std::net::IpAddr>().is_ok()),
        };
        if !gw_ok {
            return Err(bad_route(format!("[{i}].gw must be an IP address")));
        }
    }
    Ok(list.clone())
}

fn route_dst(route: &Value) -> Option<IpNet> {
    let dst = route.get("dst")?.as_str()?;
    prefix::parse_cidr(dst).ok().map(|n| n.trunc())
}

fn bad_route(what: String) -> CniError {
    CniError::new(
        code::INVALID_NETCONF,
        format!("failed to assemble Delegate IPAM: ipam.routes{what}"),
    )
}

/// A delegate `type` is a file name looked up in `CNI_PATH`; anything that
/// could walk out of those directories is refused.
pub fn check_plugin_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(CniError::new(
            code::INVALID_NETCONF,
            format!(
                "invalid delegate type {:?}: it must be the file name of a CNI plugin in CNI_PATH, such as \"bridge\"",
                truncate(name)
            ),
        ));
    }
    Ok(())
}

/// The delegate's plugin name from a built or saved configuration.
pub fn plugin_type(conf: &Map<String, Value>) -> Result<&str, CniError> {
    let ty = conf.get("type").and_then(Value::as_str).ok_or_else(|| {
        CniError::new(
            code::INVALID_NETCONF,
            "the delegate configuration has no string 'type'",
        )
    })?;
    check_plugin_name(ty)?;
    Ok(ty)
}

/// Compact JSON with object keys sorted at every level, the bytes Go's
/// `json.Marshal` of flannel's maps produces, whatever serde_json's map
/// order feature is in this build.
pub fn to_bytes(conf: &Map<String, Value>) -> Vec<u8> {
    let mut v = Value::Object(conf.clone());
    sort_keys(&mut v);
    // Serialising a Value cannot fail: its keys are strings.
    serde_json::to_vec(&v).unwrap_or_default()
}

fn sort_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.sort_keys();
            m.values_mut().for_each(sort_keys);
        }
        Value::Array(a) => a.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

#[cfg(test)]
#[path = "delegate_tests.rs"]
mod tests;
