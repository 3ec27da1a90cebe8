//! What the startup log says about how etcd is reached. flanneld warns
//! "http … insecure" whenever no client certificate is given, even for
//! `https://` endpoints checked against a CA; that sends operators hunting
//! for a problem they do not have. Here the warning is kept for what is
//! really unencrypted: a plain `http://` endpoint.

/// A warning for each endpoint reached over plain http; none for https.
pub fn warnings(endpoints: &[String]) -> Vec<String> {
    endpoints
        .iter()
        .filter(|e| {
            e.get(..7)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
        })
        .map(|e| {
            format!(
                "connecting to etcd at {e} with plain http: leases (and any \
                 --etcd-username/--etcd-password) cross the network unencrypted; use an \
                 https:// endpoint with --etcd-cafile"
            )
        })
        .collect()
}

/// A neutral line for https without a client certificate: encrypted and
/// the server checked (against --etcd-cafile, or the system's roots), but
/// etcd learns who we are only from a user name, if one is given.
pub fn note(endpoints: &[String], client_cert: bool) -> Option<&'static str> {
    let https = endpoints.iter().any(|e| {
        e.get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    });
    (https && !client_cert).then_some(
        "connecting to etcd over https without a client certificate \
         (--etcd-certfile/--etcd-keyfile): the connection is encrypted and the server \
         verified; etcd authenticates this node only if --etcd-username is set",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn plain_http_is_called_insecure() {
        let w = warnings(&eps(&["http://10.0.0.5:2379", "HTTP://10.0.0.6:2379"]));
        assert_eq!(w.len(), 2);
        assert!(
            w[0].contains("http://10.0.0.5:2379 with plain http"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("unencrypted"), "{}", w[0]);
    }

    #[test]
    fn https_with_a_ca_only_is_not_called_insecure() {
        let https = eps(&["https://10.0.0.5:2379"]);
        assert!(warnings(&https).is_empty());
        let note = note(&https, false).unwrap_or_default();
        assert!(note.contains("encrypted and the server verified"), "{note}");
        assert!(!note.contains("insecure"), "{note}");
        assert_eq!(super::note(&https, true), None, "mutual TLS needs no note");
        assert_eq!(super::note(&eps(&["http://a:2379"]), false), None);
    }

    #[test]
    fn a_mixed_list_warns_about_the_http_one_only() {
        let w = warnings(&eps(&["https://a:2379", "http://b:2379"]));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("http://b:2379"), "{}", w[0]);
    }
}
