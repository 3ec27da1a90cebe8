//! A real etcd server per test, on free loopback ports, in a temp dir.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use weft_store::etcd::{EtcdKv, EtcdOptions};
use weft_store::kv::Kv;

/// TLS files for a server started with client-certificate auth.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<TlsFiles>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn etcd_binary() -> &'static str {
    if Path::new("/usr/bin/etcd").exists() {
        "/usr/bin/etcd"
    } else {
        panic!("etcd is not installed: run scripts/install-deps.sh (Debian package etcd-server)")
    }
}

impl EtcdServer {
    pub fn start() -> EtcdServer {
        Self::start_with(None)
    }

    pub fn start_tls(tls: TlsFiles) -> EtcdServer {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<TlsFiles>) -> EtcdServer {
        let mut server = EtcdServer {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            client_port: free_port(),
            peer_port: free_port(),
            tls,
        };
        server.spawn();
        server
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client_port)
    }

    fn spawn(&mut self) {
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(etcd_binary());
        cmd.arg("--name=weft-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=weft-test={peer_url}"))
            .arg("--log-level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cert-file={}", tls.server_cert.display()))
                .arg(format!("--key-file={}", tls.server_key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        self.child = Some(cmd.spawn().expect("spawn etcd"));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.etcdctl(&["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGKILL) keeping its data, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs etcdctl against this server.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--command-timeout=2s");
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cacert={}", tls.ca.display()))
                .arg(format!("--cert={}", tls.client_cert.display()))
                .arg(format!("--key={}", tls.client_key.display()));
        }
        cmd.args(args).output().expect("run etcdctl")
    }

    pub fn options(&self) -> EtcdOptions {
        EtcdOptions {
            endpoints: vec![self.endpoint()],
            ..Default::default()
        }
    }

    pub async fn kv(&self) -> EtcdKv {
        let kv = EtcdKv::connect(&self.options()).await.expect("connect");
        kv.get("/probe").await.expect("etcd answers");
        kv
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `openssl req` options for a new unencrypted P-256 key, written to the
/// path that follows: the CA's and each certificate's key are made alike.
const NEW_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
];

/// Makes a CA, a server certificate for 127.0.0.1/localhost and a client
/// certificate with the openssl tool.
pub fn make_tls(dir: &Path, name: &str) -> TlsFiles {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = |p: &PathBuf| p.to_string_lossy().into_owned();
    let (ca, ca_key) = (p("ca.pem"), p("ca-key.pem"));
    run(&[
        &["req", "-x509"],
        NEW_KEY,
        &[
            &s(&ca_key),
            "-out",
            &s(&ca),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}-ca"),
        ],
    ]
    .concat());
    let issue = |cn: &str, cert: &PathBuf, key: &PathBuf, ext: &str| {
        let csr = dir.join(format!("{name}-{cn}.csr"));
        let extfile = dir.join(format!("{name}-{cn}.ext"));
        std::fs::write(&extfile, ext).expect("write ext");
        run(&[
            &["req"],
            NEW_KEY,
            &[&s(key), "-out", &s(&csr), "-subj", &format!("/CN={cn}")],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-out",
            &s(cert),
            "-days",
            "2",
            "-extfile",
            &s(&extfile),
        ]);
    };
    let files = TlsFiles {
        ca: ca.clone(),
        server_cert: p("server.pem"),
        server_key: p("server-key.pem"),
        client_cert: p("client.pem"),
        client_key: p("client-key.pem"),
    };
    issue(
        "server",
        &files.server_cert,
        &files.server_key,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    issue(
        "client",
        &files.client_cert,
        &files.client_key,
        "extendedKeyUsage=clientAuth\n",
    );
    files
}
