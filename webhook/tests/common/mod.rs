//! Test harness for the admission server: certificates from throwaway CAs, a kubelet-style certificate
//! directory, a static cluster view, and a server running in-process on ephemeral ports.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use airlock_webhook::admin::Readiness;
use airlock_webhook::metrics::Metrics;
use airlock_webhook::review::{ClusterView, StaticView};
use airlock_webhook::tls::ReloadingCert;
use airlock_webhook::{ServeOptions, serve};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A cluster with only the `default` namespace, on a recent API server.
pub fn empty_cluster() -> Arc<dyn ClusterView> {
    Arc::new(StaticView::new().with_namespace("default", &[("kubernetes.io/metadata.name", "default")]))
}

/// A certificate authority that issues serving certificates for `localhost`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A (certificate PEM, key PEM) pair for `localhost` and 127.0.0.1.
    pub fn serving_pair(&self) -> (String, String) {
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn client(&self) -> reqwest::Client {
        client_builder(self).build().unwrap()
    }
}

pub fn client_builder(ca: &Ca) -> reqwest::ClientBuilder {
    install_provider();
    let root = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([root])
        .timeout(Duration::from_secs(20))
}

pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A directory laid out like a mounted Secret: `tls.crt` and `tls.key` are links through `..data`,
/// which an update replaces atomically.
pub struct SecretDir {
    root: PathBuf,
    version: AtomicUsize,
}

impl SecretDir {
    pub fn new(cert_pem: &str, key_pem: &str) -> SecretDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "airlock-webhook-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let dir = SecretDir {
            root,
            version: AtomicUsize::new(0),
        };
        dir.update(cert_pem, key_pem);
        std::os::unix::fs::symlink("..data/tls.crt", dir.cert_path()).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", dir.key_path()).unwrap();
        dir
    }

    pub fn cert_path(&self) -> PathBuf {
        self.root.join("tls.crt")
    }

    pub fn key_path(&self) -> PathBuf {
        self.root.join("tls.key")
    }

    /// Writes a new version and swaps `..data` to it, as the kubelet does.
    pub fn update(&self, cert_pem: &str, key_pem: &str) {
        let version = format!("..v{}", self.version.fetch_add(1, Ordering::Relaxed));
        let dir = self.root.join(&version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), key_pem).unwrap();
        let tmp = self.root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// An admission server and its admin server on ephemeral ports.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub secret: SecretDir,
    stop: Option<oneshot::Sender<()>>,
    stop_admin: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<airlock_webhook::Result<()>>>,
}

/// Options for tests: quick reloads, otherwise the defaults.
pub fn test_options() -> ServeOptions {
    ServeOptions {
        cert_reload_interval: Duration::from_millis(100),
        ..ServeOptions::default()
    }
}

impl TestServer {
    pub async fn start(ca: &Ca) -> TestServer {
        Self::start_with(ca, test_options()).await
    }

    pub async fn start_with(ca: &Ca, opts: ServeOptions) -> TestServer {
        install_provider();
        let (cert, key) = ca.serving_pair();
        let secret = SecretDir::new(&cert, &key);
        let tls = ReloadingCert::from_files(secret.cert_path(), secret.key_path()).unwrap();
        let metrics = opts.metrics.clone();
        let readiness = Readiness::default();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, tls, empty_cluster(), opts, async {
            let _ = stopped.await;
        }));

        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (stop_admin, admin_stopped) = oneshot::channel::<()>();
        tokio::spawn(airlock_webhook::admin::serve(
            admin,
            readiness.clone(),
            metrics.clone(),
            async {
                let _ = admin_stopped.await;
            },
        ));

        TestServer {
            addr,
            admin_addr,
            metrics,
            readiness,
            secret,
            stop: Some(stop),
            stop_admin: Some(stop_admin),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// Signals shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the server to return after [`Self::begin_shutdown`].
    pub async fn stopped(&mut self) -> airlock_webhook::Result<()> {
        self.task.take().expect("server already awaited").await.unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(stop) = self.stop_admin.take() {
            let _ = stop.send(());
        }
    }
}

/// A pod CREATE AdmissionReview, optionally padded with an annotation of `padding` bytes.
pub fn pod_review(uid: &str, padding: usize) -> Vec<u8> {
    let mut annotations = serde_json::Map::new();
    if padding > 0 {
        annotations.insert("example.com/padding".into(), "x".repeat(padding).into());
    }
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    }))
    .unwrap()
}

/// A raw TLS connection to the server, for clients that misbehave on purpose.
pub async fn raw_tls(ca: &Ca, addr: SocketAddr) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    install_provider();
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap();
    roots.add(der).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

use rustls_pki_types::pem::PemObject;
