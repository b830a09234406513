//! Shared by the tests that need the real control plane, Prometheus or Envoy. The components are
//! started by `tests/env/testenv` (tests/run wraps the whole suite in `testenv run`); when no
//! cluster is up, the first test that needs one starts it, and a failure to start is a test
//! failure with the reason, never a skip.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

pub fn testenv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/env/testenv")
}

pub fn run_dir() -> PathBuf {
    std::env::var_os("AVIARY_TESTENV_RUN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/aviary-testenv"))
}

/// Runs a testenv subcommand and returns its stdout; panics with its stderr when it fails.
pub fn testenv_cmd(args: &[&str]) -> String {
    let output = Command::new(testenv())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tests/env/testenv {args:?}: {e}"));
    assert!(
        output.status.success(),
        "tests/env/testenv {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

static CLUSTER: OnceCell<PathBuf> = OnceCell::const_new();

/// The kubeconfig of the running test cluster, starting one when none answers.
pub async fn kubeconfig() -> PathBuf {
    CLUSTER
        .get_or_init(|| async {
            let path = run_dir().join("kubeconfig");
            if !path.exists() || client_from(&path).await.apiserver_version().await.is_err() {
                testenv_cmd(&["up"]);
            }
            path
        })
        .await
        .clone()
}

async fn client_from(path: &PathBuf) -> Client {
    aviary::http_client::install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(path).expect("kubeconfig readable");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig valid");
    Client::try_from(config).expect("client builds")
}

/// An admin client for the test cluster.
pub async fn admin() -> Client {
    client_from(&kubeconfig().await).await
}

/// A client that authenticates with a bearer token (for example a ServiceAccount's).
pub async fn with_token(token: &str) -> Client {
    let path = kubeconfig().await;
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_string().into()),
        ..Default::default()
    };
    Client::try_from(config).unwrap()
}

/// A kubeconfig that signs in as ServiceAccount `namespace/account` with a TokenRequest token.
pub async fn account_kubeconfig(namespace: &str, account: &str) -> PathBuf {
    let token = testenv_cmd(&["token", namespace, account]);
    let admin = std::fs::read_to_string(kubeconfig().await).unwrap();
    let mut text = String::new();
    for line in admin.lines() {
        if line.trim_start().starts_with("token:") {
            text.push_str(&format!("    token: {token}\n"));
        } else if line.trim_start().starts_with("namespace:") {
            text.push_str(&format!("    namespace: {namespace}\n"));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    let path = std::env::temp_dir().join(format!("aviary-{namespace}-{account}.kubeconfig"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A fresh namespace for one test.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let name = format!("{prefix}-{}", rand::random::<u32>() % 1_000_000);
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).unwrap();
    api.create(&Default::default(), &ns)
        .await
        .expect("namespace created");
    // The ServiceAccount controller creates `default`; pods cannot be created before it exists.
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(client.clone(), &name);
    eventually(Duration::from_secs(30), || async {
        accounts.get_opt("default").await.ok().flatten().is_some()
    })
    .await;
    name
}

/// Polls `check` every 200ms until it holds, or panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Like `eventually`, for a check that yields what it found: returns the first `Some`.
pub async fn eventually_some<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Serves `app` on a loopback port from a thread of its own (each test has its own runtime, and a
/// server shared by several tests must outlive any one of them); returns `host:port`.
pub fn serve_on_own_thread(app: axum::Router) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender
                .send(listener.local_addr().unwrap().to_string())
                .unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    receiver.recv().unwrap()
}

/// Starts a Prometheus scraping `targets` every second; returns its base URL.
pub fn prometheus(targets: &[String]) -> String {
    let mut args = vec!["prometheus"];
    args.extend(targets.iter().map(String::as_str));
    testenv_cmd(&args)
}

/// A path `testenv env` exports as `name` (a binary `testenv build` installed).
pub fn testenv_export(name: &str) -> PathBuf {
    let exports = testenv_cmd(&["env"]);
    let prefix = format!("export {name}=");
    let line = exports
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("testenv env names {name}"));
    PathBuf::from(line.trim_matches('\'').trim_matches('"'))
}

/// Path of the Envoy binary installed by `testenv build`.
pub fn envoy_binary() -> PathBuf {
    let path = testenv_export("AVIARY_ENVOY_BIN");
    assert!(
        path.exists(),
        "Envoy is not installed at {}: run tests/env/testenv build",
        path.display()
    );
    path
}

/// A free loopback port for a process that cannot bind port 0 and report it (Prometheus,
/// Envoy). Picked below the kernel's ephemeral range (32768 and up): a port there may be taken
/// at any moment as the source port of an outgoing connection before the child binds it.
pub fn free_port() -> u16 {
    loop {
        let port = rand::random_range(20000..32000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts `command` (stdout piped) and waits up to `limit` for its first line,
/// `listening <address>`: a child that binds port 0 itself can never lose its port to another.
/// The rest of its stdout is drained. Early exit or a wrong first line fail the test.
pub async fn spawn_listening(
    mut command: tokio::process::Command,
    limit: Duration,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the child process starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(limit, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("no `listening` line within {limit:?}"))
        .expect("stdout is readable");
    let address = first
        .as_deref()
        .and_then(|line| line.strip_prefix("listening "))
        .unwrap_or_else(|| panic!("expected `listening <address>` first, got {first:?}"))
        .trim()
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
}

pub mod faulty;
pub mod fixture;
pub mod helm;
pub mod receiver;
pub mod series;
pub mod telemetry;

/// How long a child process may take to start on a loaded 2-core machine.
pub const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// A running `aviary controller` process, killed when dropped.
pub struct ControllerProcess {
    pub child: tokio::process::Child,
    pub listen: String,
    pub log: PathBuf,
}

impl ControllerProcess {
    /// Starts the controller for one namespace against `prometheus`, with short intervals allowed.
    pub async fn start(namespace: &str, prometheus: &str) -> ControllerProcess {
        Self::start_with(namespace, prometheus, &[]).await
    }

    pub async fn start_with(
        namespace: &str,
        prometheus: &str,
        extra: &[&str],
    ) -> ControllerProcess {
        Self::start_with_env(namespace, prometheus, extra, &[]).await
    }

    /// As [`Self::start_with`], with more environment variables (say a failpoint).
    pub async fn start_with_env(
        namespace: &str,
        prometheus: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ControllerProcess {
        let mut args = vec!["--namespace", namespace];
        args.extend_from_slice(extra);
        Self::launch(&kubeconfig().await, namespace, prometheus, &args, env).await
    }

    /// A controller that signs in with `kubeconfig` (say a ServiceAccount's token) and watches
    /// what `args` say: every namespace unless they hold `--namespace`. `label` names its log.
    pub async fn launch(
        kubeconfig: &std::path::Path,
        label: &str,
        prometheus: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ControllerProcess {
        let log = std::env::temp_dir().join(format!(
            "aviary-controller-{label}-{}.log",
            rand::random::<u32>()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_aviary"));
        command
            .args(["controller", "--metrics-server", prometheus])
            .args(["--listen", "127.0.0.1:0", "--min-interval", "1s"])
            // The tests' Prometheus scrapes every second.
            .args(["--scrape-interval", "1s"])
            .args(args)
            .envs(env.iter().copied())
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                "aviary=debug,aviary::controller::watch=trace,kube=warn",
            )
            .stderr(file);
        let (child, listen) = spawn_listening(command, STARTUP_LIMIT).await;
        let http = aviary::http_client::client(Duration::from_secs(2));
        // Serving is enough here: /readyz waits for synced caches, which a refused watch never has.
        let ready = format!("http://{listen}/healthz");
        let mut process = ControllerProcess { child, listen, log };
        let deadline = tokio::time::Instant::now() + STARTUP_LIMIT;
        while tokio::time::Instant::now() < deadline {
            if http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("controller exited with {status}:\n{}", process.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("controller never served /healthz:\n{}", process.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up, as when a node dies.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}
