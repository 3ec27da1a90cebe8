//! The commands: what ADD, DEL, CHECK, STATUS and GC do with the input, the
//! saved state and the delegate.

use serde_json::{Map, Value, json};

use crate::args::{CniArgs, Command};
use crate::error::{CniError, code};
use crate::netconf::{self, NetConf};
use crate::{delegate, exec, log, state, subnet, version};

/// What to print and how to exit.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The version the request speaks, carried by an error result.
    pub cni_version: String,
    /// The bytes for stdout on success (empty for DEL, CHECK, STATUS, GC).
    pub result: Result<Vec<u8>, CniError>,
}

/// Runs one invocation whose environment has been validated.
pub fn run(args: &CniArgs, stdin: &[u8]) -> Reply {
    if args.command == Command::Version {
        return Reply {
            cni_version: version::LATEST.into(),
            result: Ok(version_info()),
        };
    }
    let conf = match netconf::parse(stdin).and_then(|c| version::check(c.version()).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            return Reply {
                cni_version: version::LATEST.into(),
                result: Err(e),
            };
        }
    };
    let result = match args.command {
        Command::Add => add(args, &conf),
        Command::Del => del(args, &conf).map(|()| Vec::new()),
        Command::Check => check(args, &conf).map(|()| Vec::new()),
        Command::Status => status(args, &conf).map(|()| Vec::new()),
        Command::Gc => gc(&conf).map(|()| Vec::new()),
        Command::Version => Ok(version_info()),
    };
    Reply {
        cni_version: conf.version().to_owned(),
        result,
    }
}

/// VERSION's answer, in the shape libcni's `PluginInfo` encodes.
fn version_info() -> Vec<u8> {
    let v = json!({"cniVersion": version::LATEST, "supportedVersions": version::SUPPORTED});
    serde_json::to_vec(&v).unwrap_or_default()
}

/// ADD: build the delegate configuration, save it, run the delegate, print
/// its result. Nothing is saved when the delegate cannot even be found. A
/// failed delegate ADD is undone at once (bridge leaves its veth behind
/// when a later step fails) and the file removed: a configuration the
/// delegate just refused may well fail its DEL too, and a saved file would
/// then hold the pod's teardown hostage to it.
fn add(args: &CniArgs, conf: &NetConf) -> Result<Vec<u8>, CniError> {
    let env = subnet::load(&conf.subnet_file)?;
    let d = delegate::build(conf, &env)?;
    let ty = delegate::plugin_type(&d)?;
    let exe = exec::find(ty, &args.path)?;
    let bytes = delegate::to_bytes(&d);
    state::save(&conf.data_dir, &args.container_id, &bytes)?;
    let added = exec::invoke(&exe, ty, Command::Add, &bytes)
        .and_then(|out| relabel_result(out, conf.version(), ty));
    if added.is_err() {
        if let Err(e) = exec::invoke(&exe, ty, Command::Del, &bytes) {
            log(&format!(
                "cleanup DEL after the failed ADD of {}: {e}",
                args.container_id
            ));
        }
        if let Err(e) = state::remove(&conf.data_dir, &args.container_id) {
            log(&e.msg);
        }
    }
    added
}

/// Checks the delegate's ADD result is a JSON object and, when the request
/// was 1.1.0 and the delegate spoke 1.0.0, relabels it (a 1.0.0 result is
/// a valid 1.1.0 one). Otherwise the bytes are passed on exactly as the
/// delegate printed them.
fn relabel_result(out: Vec<u8>, want: &str, ty: &str) -> Result<Vec<u8>, CniError> {
    let Ok(Value::Object(mut result)) = serde_json::from_slice::<Value>(&out) else {
        return Err(CniError::new(
            code::DECODE,
            format!("delegate {ty} succeeded but printed no JSON result object"),
        )
        .with_details(
            String::from_utf8_lossy(&out)
                .chars()
                .take(1024)
                .collect::<String>(),
        ));
    };
    if version::for_delegate(want) == want {
        return Ok(out);
    }
    result.insert("cniVersion".into(), json!(want));
    Ok(serde_json::to_vec(&Value::Object(result)).unwrap_or(out))
}

/// DEL: hand the delegate the configuration saved at ADD, then forget it.
/// No saved file means nothing to undo (the spec's idempotent DEL). When the
/// delegate's DEL fails the file is kept, unlike flannel's plugin which
/// drops it, so that the runtime's retry can still finish the job.
fn del(args: &CniArgs, conf: &NetConf) -> Result<(), CniError> {
    let id = &args.container_id;
    let Some(bytes) = state::load(&conf.data_dir, id)? else {
        return Ok(());
    };
    match saved_conf(&bytes) {
        Ok(saved) => {
            let ty = delegate::plugin_type(&saved)?.to_owned();
            let exe = exec::find(&ty, &args.path)?;
            exec::invoke(&exe, &ty, Command::Del, &for_delegate(bytes, saved))?;
        }
        Err(e) => best_effort_del(args, conf, &e),
    }
    state::remove(&conf.data_dir, id)
}

/// A saved file that is not a delegate configuration (hand-edited, or
/// written by something else): flannel's plugin logs and succeeds, leaving
/// the pod's address and veth behind. weft also succeeds (the runtime could
/// never get past this DEL otherwise) but first tries a DEL with the
/// configuration ADD would build now, which frees the address in all but
/// exotic cases, and then removes the file.
fn best_effort_del(args: &CniArgs, conf: &NetConf, why: &CniError) {
    let path = state::path(&conf.data_dir, &args.container_id);
    log(&format!(
        "{} is not a delegate configuration ({}); deleting with the current configuration instead",
        path.display(),
        why.msg
    ));
    let attempt = || -> Result<(), CniError> {
        let d = delegate::build(conf, &subnet::load(&conf.subnet_file)?)?;
        let ty = delegate::plugin_type(&d)?;
        let exe = exec::find(ty, &args.path)?;
        exec::invoke(&exe, ty, Command::Del, &delegate::to_bytes(&d)).map(drop)
    };
    if let Err(e) = attempt() {
        log(&format!(
            "best-effort DEL of {} failed: {e}",
            args.container_id
        ));
    }
}

/// CHECK: flannel's plugin answers success without looking. weft asks the
/// delegate, with the saved configuration and the runtime's `prevResult`,
/// so a pod whose veth, address or routes vanished is reported.
fn check(args: &CniArgs, conf: &NetConf) -> Result<(), CniError> {
    if !version::at_least(conf.version(), "0.4.0") {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "config version {} does not allow CHECK (0.4.0 or later does)",
                conf.version()
            ),
        ));
    }
    let id = &args.container_id;
    let bytes = state::load(&conf.data_dir, id)?.ok_or_else(|| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!(
                "unknown container {id}: no delegate configuration saved in {}",
                conf.data_dir.display()
            ),
        )
    })?;
    let mut saved = saved_conf(&bytes)?;
    let ty = delegate::plugin_type(&saved)?.to_owned();
    let exe = exec::find(&ty, &args.path)?;
    let delegate_version = version::for_delegate(conf.version());
    saved.insert("cniVersion".into(), json!(delegate_version));
    if let Some(mut prev) = conf.prev_result.clone() {
        if let Value::Object(p) = &mut prev {
            p.insert("cniVersion".into(), json!(delegate_version));
            fill_route_gateways(p);
        }
        saved.insert("prevResult".into(), prev);
    }
    exec::invoke(&exe, &ty, Command::Check, &delegate::to_bytes(&saved)).map(drop)
}

/// Gives every gateway-less route of a result the gateway of its family.
///
/// That is how bridge installs such routes (`ipam.ConfigureIface`), but the
/// reference plugins' CHECK (1.1.1) looks for a route with *no* gateway and
/// so fails on every healthy pod flannel made, whose cluster-network routes
/// carry none. Naming the gateway matches what is in the kernel, for old
/// and fixed plugins alike.
fn fill_route_gateways(result: &mut Map<String, Value>) {
    let gateway = |v6: bool| {
        result.get("ips")?.as_array()?.iter().find_map(|ip| {
            let gw = ip.get("gateway")?.as_str()?;
            (gw.contains(':') == v6).then(|| gw.to_owned())
        })
    };
    let (v4, v6) = (gateway(false), gateway(true));
    let Some(Value::Array(routes)) = result.get_mut("routes") else {
        return;
    };
    for route in routes.iter_mut().filter_map(Value::as_object_mut) {
        if route.get("gw").is_some_and(|g| !g.is_null()) {
            continue;
        }
        let is_v6 = route
            .get("dst")
            .and_then(Value::as_str)
            .is_some_and(|d| d.contains(':'));
        if let Some(gw) = if is_v6 { &v6 } else { &v4 } {
            route.insert("gw".into(), json!(gw));
        }
    }
}

/// STATUS (spec 1.1): ready when subnet.env is complete, the configuration
/// builds, and the delegate is installed; otherwise code 50 with the reason.
fn status(args: &CniArgs, conf: &NetConf) -> Result<(), CniError> {
    require_1_1(conf, "STATUS")?;
    let unavailable = |e: CniError| CniError {
        code: code::NOT_AVAILABLE,
        ..e
    };
    let env = subnet::load(&conf.subnet_file).map_err(unavailable)?;
    let d = delegate::build(conf, &env)?;
    let ty = delegate::plugin_type(&d)?;
    if !args.path.is_empty() {
        exec::find(ty, &args.path).map_err(unavailable)?;
    }
    Ok(())
}

/// GC (spec 1.1): nothing to collect safely. A stale saved file names a
/// container but not its interface, which the delegate's DEL needs; the
/// runtime's DEL of each stale attachment does the cleanup. flannel's plugin
/// does nothing either.
fn gc(conf: &NetConf) -> Result<(), CniError> {
    require_1_1(conf, "GC")
}

fn require_1_1(conf: &NetConf, what: &str) -> Result<(), CniError> {
    if version::at_least(conf.version(), "1.1.0") {
        return Ok(());
    }
    Err(CniError::new(
        code::INCOMPATIBLE_VERSION,
        format!(
            "config version {} does not allow {what} (1.1.0 does)",
            conf.version()
        ),
    ))
}

/// A saved delegate configuration: a JSON object with a plugin `type`.
fn saved_conf(bytes: &[u8]) -> Result<Map<String, Value>, CniError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => {
            delegate::plugin_type(&m)?;
            Ok(m)
        }
        Ok(_) => Err(CniError::new(code::DECODE, "not a JSON object")),
        Err(e) => Err(CniError::new(
            code::DECODE,
            format!("failed to parse netconf: {e}"),
        )),
    }
}

/// The saved bytes as the delegate gets them: verbatim, unless they say
/// 1.1.0 (flannel's plugin saves the conflist's version) and the delegate
/// must be spoken to in 1.0.0.
fn for_delegate(bytes: Vec<u8>, mut saved: Map<String, Value>) -> Vec<u8> {
    let Some(v) = saved.get("cniVersion").and_then(Value::as_str) else {
        return bytes;
    };
    let v = v.to_owned();
    if version::for_delegate(&v) == v {
        return bytes;
    }
    saved.insert("cniVersion".into(), json!(version::for_delegate(&v)));
    delegate::to_bytes(&saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lists_flannels_versions() {
        let v: Value = serde_json::from_slice(&version_info()).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn relabels_only_a_1_1_0_request() {
        let out = b"{\n  \"cniVersion\": \"1.0.0\",\n  \"ips\": []\n}\n".to_vec();
        assert_eq!(relabel_result(out.clone(), "1.0.0", "bridge").unwrap(), out);
        let v: Value =
            serde_json::from_slice(&relabel_result(out, "1.1.0", "bridge").unwrap()).unwrap();
        assert_eq!(v, json!({"cniVersion": "1.1.0", "ips": []}));
        assert_eq!(
            relabel_result(b"ok".to_vec(), "1.0.0", "bridge")
                .unwrap_err()
                .code,
            code::DECODE
        );
    }

    #[test]
    fn check_names_the_gateway_bridge_installed() {
        let mut golden: Value = serde_json::from_str(include_str!(
            "../tests/golden/cni-add-result-dualstack.json"
        ))
        .unwrap();
        let result = golden.as_object_mut().unwrap();
        fill_route_gateways(result);
        assert_eq!(
            result["routes"],
            json!([
                {"dst": "10.244.0.0/16", "gw": "10.244.5.1"},
                {"dst": "fd00:10:244::/56", "gw": "fd00:10:244:5::1"},
                {"dst": "0.0.0.0/0", "gw": "10.244.5.1"},
                {"dst": "::/0", "gw": "fd00:10:244:5::1"},
            ])
        );
    }

    #[test]
    fn saved_1_1_0_goes_out_as_1_0_0() {
        let bytes = br#"{"cniVersion":"1.1.0","type":"bridge"}"#.to_vec();
        let saved = saved_conf(&bytes).unwrap();
        let out: Value = serde_json::from_slice(&for_delegate(bytes, saved)).unwrap();
        assert_eq!(out["cniVersion"], "1.0.0");
        let golden = include_bytes!("../tests/golden/cni-delegate-dualstack.json").to_vec();
        let saved = saved_conf(&golden).unwrap();
        assert_eq!(for_delegate(golden.clone(), saved), golden);
    }

    #[test]
    fn refuses_saved_files_that_are_not_delegate_configurations() {
        assert_eq!(saved_conf(b"{oops").unwrap_err().code, code::DECODE);
        assert_eq!(saved_conf(b"[]").unwrap_err().code, code::DECODE);
        assert!(saved_conf(br#"{"type":"../../bin/sh"}"#).is_err());
    }
}
