//! A real Docker Engine and a real registry for the tests: images built from Debian's
//! `busybox-static`, pushed to a `docker-registry` on 127.0.0.1, and containers that
//! publish their ports on 127.0.0.1 only. Everything a test makes carries the label
//! [`TEST_LABEL`] with the test's own value, and is removed when its [`Sandbox`] goes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use autoredeploy::config::{EngineEndpoint, EngineSettings};
use autoredeploy::platform::engine::{Call, EngineClient};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

/// The label on everything the tests create in the engine; its value names the sandbox.
pub const TEST_LABEL: &str = "autoredeploy.test";

/// The image every test image is built on: a root holding only the static busybox.
pub const BASE_IMAGE: &str = "autoredeploy-test/busybox:base";

/// Debian's `busybox-static`.
const BUSYBOX: &str = "/bin/busybox";

/// The busybox commands the test images use, as links in `/bin`.
const APPLETS: [&str; 14] = [
    "sh", "httpd", "sleep", "cat", "echo", "true", "false", "env", "cp", "mkdir", "test", "wget",
    "ls", "kill",
];

/// `X-Registry-Auth` for a registry without credentials: base64url of `{}`.
const NO_CREDENTIALS: &str = "e30=";

/// The engine at `DOCKER_HOST` or the default socket, if one answers.
pub async fn engine() -> Option<EngineClient> {
    let address = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let path = address.strip_prefix("unix://")?;
    let settings = EngineSettings {
        address: address.clone(),
        endpoint: EngineEndpoint::Unix(PathBuf::from(path)),
        tls_files: None,
        config_folder: None,
    };
    let client = EngineClient::new(&settings).ok()?;
    client.version().await.ok()?;
    Some(client)
}

/// Where the engine listens, as `DOCKER_HOST` says it.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

static BASE: OnceCell<()> = OnceCell::const_new();

static SWARM: OnceCell<()> = OnceCell::const_new();

/// Makes the engine a one-node Swarm manager, listening on 127.0.0.1, unless it is one.
/// The swarm stays: leaving it would pull it from under the tests that run beside.
pub async fn swarm(engine: &EngineClient) {
    SWARM
        .get_or_init(|| async {
            let info: Value = engine
                .json(Call::get("asking the engine about its swarm", "/info"))
                .await
                .expect("the engine answers /info");
            if info["Swarm"]["LocalNodeState"] == "active" {
                assert_eq!(
                    info["Swarm"]["ControlAvailable"], true,
                    "the engine is in a swarm but no manager"
                );
                return;
            }
            let body = json!({ "ListenAddr": "127.0.0.1:2377", "AdvertiseAddr": "127.0.0.1" });
            engine
                .call(Call::post("starting a swarm", "/swarm/init").json(&body))
                .await
                .expect("the engine starts a one-node swarm");
        })
        .await;
}

/// Imports [`BASE_IMAGE`] once per run, unless the engine has it already.
pub async fn base_image(engine: &EngineClient) {
    BASE.get_or_init(|| async {
        let has = engine
            .call(Call::get(
                "inspecting the base image",
                &format!("/images/{BASE_IMAGE}/json"),
            ))
            .await;
        if has.is_ok() {
            return;
        }
        let busybox = std::fs::read(BUSYBOX).unwrap_or_else(|error| {
            panic!("{BUSYBOX} (Debian's busybox-static) is needed to build test images: {error}")
        });
        let mut root = tar::Builder::new(Vec::new());
        append_file(&mut root, "bin/busybox", &busybox, 0o755);
        for applet in APPLETS {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            root.append_link(&mut header, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
        for folder in ["tmp", "www", "data", "etc"] {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            header.set_mode(0o1777);
            root.append_data(&mut header, folder, std::io::empty())
                .unwrap();
        }
        let root = root.into_inner().unwrap();
        let query = format!(
            "/images/create?fromSrc=-&repo=autoredeploy-test/busybox&tag=base&changes={}",
            urlencode(&format!("LABEL {TEST_LABEL}=base"))
        );
        engine
            .follow_progress(Call::post("importing the base image", &query).tar(root))
            .await
            .expect("the base image is imported");
    })
    .await;
}

fn append_file(archive: &mut tar::Builder<Vec<u8>>, path: &str, content: &[u8], mode: u32) {
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    archive.append_data(&mut header, path, content).unwrap();
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// One test's share of the engine: a name prefix and a label value, and everything made
/// under them removed at the end.
pub struct Sandbox {
    pub engine: EngineClient,
    /// The prefix of every name, and the value of [`TEST_LABEL`].
    pub id: String,
}

impl Sandbox {
    /// A sandbox named after `test`.
    pub async fn new(engine: EngineClient, test: &str) -> Self {
        base_image(&engine).await;
        let unique = std::process::id() ^ rand_suffix();
        let id = format!("ar-{test}-{unique:x}");
        Self { engine, id }
    }

    /// A name in this sandbox.
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.id)
    }

    /// Builds `tag` from `dockerfile` (whose `FROM` is the base image) and the `files` of
    /// its context; the image carries the sandbox's label.
    pub async fn build(&self, tag: &str, dockerfile: &str, files: &[(&str, &str)]) {
        let mut context = tar::Builder::new(Vec::new());
        let dockerfile = format!(
            "FROM {BASE_IMAGE}\nLABEL {TEST_LABEL}={}\n{dockerfile}\n",
            self.id
        );
        append_file(&mut context, "Dockerfile", dockerfile.as_bytes(), 0o644);
        for (path, content) in files {
            append_file(&mut context, path, content.as_bytes(), 0o644);
        }
        let context = context.into_inner().unwrap();
        let path = format!("/build?t={}&rm=1&forcerm=1", urlencode(tag));
        self.engine
            .follow_progress(Call::post("building a test image", &path).tar(context))
            .await
            .unwrap_or_else(|error| panic!("building {tag}: {error}"));
    }

    /// Pushes `repository:tag` to its registry.
    pub async fn push(&self, repository: &str, tag: &str) {
        self.push_with(
            repository,
            tag,
            &secrecy::SecretString::from(NO_CREDENTIALS),
        )
        .await;
    }

    /// Pushes `repository:tag` with the `X-Registry-Auth` value `auth`.
    pub async fn push_with(&self, repository: &str, tag: &str, auth: &secrecy::SecretString) {
        let path = format!("/images/{repository}/push?tag={tag}");
        self.engine
            .follow_progress(Call::post("pushing a test image", &path).registry_auth(Some(auth)))
            .await
            .unwrap_or_else(|error| panic!("pushing {repository}:{tag}: {error}"));
    }

    /// Creates and starts a container named `name` from `body` (a create body, to which
    /// the sandbox's label is added); returns its id.
    pub async fn run(&self, name: &str, mut body: Value) -> String {
        body["Labels"][TEST_LABEL] = json!(self.id);
        let path = format!("/containers/create?name={name}");
        let created: Value = self
            .engine
            .json(Call::post("creating a test container", &path).json(&body))
            .await
            .unwrap_or_else(|error| panic!("creating {name}: {error}"));
        let id = created["Id"].as_str().unwrap().to_owned();
        self.engine
            .call(Call::post(
                "starting a test container",
                &format!("/containers/{id}/start"),
            ))
            .await
            .unwrap_or_else(|error| panic!("starting {name}: {error}"));
        id
    }

    /// Creates a network with the sandbox's label.
    pub async fn network(&self, name: &str) {
        let body = json!({ "Name": name, "Labels": { TEST_LABEL: self.id } });
        self.engine
            .call(Call::post("creating a test network", "/networks/create").json(&body))
            .await
            .unwrap_or_else(|error| panic!("creating network {name}: {error}"));
    }

    /// Creates a Swarm service from `spec` (the sandbox's label is added to the service
    /// and to its containers) and waits until one of its tasks runs; returns its id.
    pub async fn service(&self, mut spec: Value) -> String {
        spec["Labels"][TEST_LABEL] = json!(self.id);
        spec["TaskTemplate"]["ContainerSpec"]["Labels"][TEST_LABEL] = json!(self.id);
        let created: Value = self
            .engine
            .json(Call::post("creating a test service", "/services/create").json(&spec))
            .await
            .unwrap_or_else(|error| panic!("creating service {}: {error}", spec["Name"]));
        let id = created["ID"].as_str().unwrap().to_owned();
        self.until_running(&id).await;
        id
    }

    /// Waits until a task of the service `id` runs the image its spec names now.
    pub async fn until_running(&self, id: &str) {
        for _ in 0..300 {
            let service: Value = self
                .engine
                .json(Call::get(
                    "inspecting a test service",
                    &format!("/services/{id}"),
                ))
                .await
                .unwrap();
            let image = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].clone();
            let filters =
                urlencode(&json!({ "service": [id], "desired-state": ["running"] }).to_string());
            let tasks: Vec<Value> = self
                .engine
                .json(Call::get(
                    "listing test tasks",
                    &format!("/tasks?filters={filters}"),
                ))
                .await
                .unwrap();
            if tasks.iter().any(|task| {
                task["Status"]["State"] == "running"
                    && task["Spec"]["ContainerSpec"]["Image"] == image
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no task of service {id} runs");
    }

    /// The service of that name or id.
    pub async fn inspect_service(&self, name: &str) -> Value {
        self.engine
            .json(Call::get(
                "inspecting a test service",
                &format!("/services/{name}"),
            ))
            .await
            .unwrap_or_else(|error| panic!("inspecting service {name}: {error}"))
    }

    /// The digest `reference` names in its registry now.
    pub async fn registry_digest(&self, reference: &str) -> String {
        self.registry_digest_with(reference, &secrecy::SecretString::from(NO_CREDENTIALS))
            .await
    }

    /// The digest `reference` names in its registry now, asked with the `X-Registry-Auth`
    /// value `auth`.
    pub async fn registry_digest_with(
        &self,
        reference: &str,
        auth: &secrecy::SecretString,
    ) -> String {
        let answer: Value = self
            .engine
            .json(
                Call::get(
                    "asking a digest",
                    &format!("/distribution/{reference}/json"),
                )
                .registry_auth(Some(auth)),
            )
            .await
            .unwrap_or_else(|error| panic!("the digest of {reference}: {error}"));
        answer["Descriptor"]["digest"].as_str().unwrap().to_owned()
    }

    /// Removes the image `reference` from the engine, so that running it needs a pull.
    pub async fn remove_image(&self, reference: &str) {
        self.engine
            .call(Call::delete(
                "removing a test image",
                &format!("/images/{reference}"),
            ))
            .await
            .unwrap_or_else(|error| panic!("removing image {reference}: {error}"));
    }

    /// Creates a volume with the sandbox's label.
    pub async fn volume(&self, name: &str) {
        let body = json!({ "Name": name, "Labels": { TEST_LABEL: self.id } });
        self.engine
            .call(Call::post("creating a test volume", "/volumes/create").json(&body))
            .await
            .unwrap_or_else(|error| panic!("creating volume {name}: {error}"));
    }

    /// Connects a container to a network with `aliases`.
    pub async fn connect(&self, container: &str, network: &str, aliases: &[&str]) {
        let body = json!({ "Container": container, "EndpointConfig": { "Aliases": aliases } });
        self.engine
            .call(
                Call::post(
                    "connecting a test container",
                    &format!("/networks/{network}/connect"),
                )
                .json(&body),
            )
            .await
            .unwrap_or_else(|error| panic!("connecting {container} to {network}: {error}"));
    }

    /// The container's inspect, or `None`.
    pub async fn inspect(&self, name: &str) -> Option<Value> {
        match self
            .engine
            .json(Call::get(
                "inspecting a test container",
                &format!("/containers/{name}/json"),
            ))
            .await
        {
            Ok(document) => Some(document),
            Err(error) if error.is_not_found() => None,
            Err(error) => panic!("inspecting {name}: {error}"),
        }
    }

    /// The names of the sandbox's containers, running or not, sorted.
    pub async fn containers(&self) -> Vec<String> {
        let filters = json!({ "label": [format!("{TEST_LABEL}={}", self.id)] }).to_string();
        let path = format!("/containers/json?all=1&filters={}", urlencode(&filters));
        let listed: Vec<Value> = self
            .engine
            .json(Call::get("listing test containers", &path))
            .await
            .unwrap();
        let mut names: Vec<String> = listed
            .iter()
            .filter_map(|container| container["Names"][0].as_str())
            .map(|name| name.trim_start_matches('/').to_owned())
            .collect();
        names.sort();
        names
    }

    /// Removes everything of the sandbox: containers (with their anonymous volumes),
    /// networks, volumes and images.
    async fn clean(&self) {
        assert!(
            !self.id.is_empty(),
            "a sandbox without an id would clean everything"
        );
        let label = format!("{TEST_LABEL}={}", self.id);
        let filters = urlencode(&json!({ "label": [label] }).to_string());
        let name_filter = urlencode(&json!({ "name": [self.id] }).to_string());
        let services: Vec<Value> = self
            .engine
            .json(Call::get(
                "listing test services",
                &format!("/services?filters={filters}"),
            ))
            .await
            .unwrap_or_default();
        for service in &services {
            let id = service["ID"].as_str().unwrap_or_default();
            let _ = self
                .engine
                .call(Call::delete(
                    "removing a test service",
                    &format!("/services/{id}"),
                ))
                .await;
        }
        if !services.is_empty() {
            // Swarm removes the tasks' containers by itself, a moment later.
            for _ in 0..100 {
                let left: Vec<Value> = self
                    .engine
                    .json(Call::get(
                        "listing test containers",
                        &format!("/containers/json?all=1&filters={filters}"),
                    ))
                    .await
                    .unwrap_or_default();
                if !left
                    .iter()
                    .any(|container| container["Labels"]["com.docker.swarm.task.id"].is_string())
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Volumes the sandbox's containers mount: anonymous ones carry no label, and those
        // mounted again by name in a new container outlive it.
        let mut mounted: Vec<String> = Vec::new();
        for filter in [&filters, &name_filter] {
            let listed: Vec<Value> = self
                .engine
                .json(Call::get(
                    "listing test containers",
                    &format!("/containers/json?all=1&filters={filter}"),
                ))
                .await
                .unwrap_or_default();
            for container in listed {
                let id = container["Id"].as_str().unwrap_or_default();
                for mount in container["Mounts"].as_array().into_iter().flatten() {
                    if mount["Type"] == "volume"
                        && let Some(name) = mount["Name"].as_str()
                    {
                        mounted.push(name.to_owned());
                    }
                }
                let _ = self
                    .engine
                    .call(Call::delete(
                        "removing a test container",
                        &format!("/containers/{id}?force=1&v=1"),
                    ))
                    .await;
            }
        }
        let _ = self
            .engine
            .call(Call::post(
                "pruning test networks",
                &format!("/networks/prune?filters={filters}"),
            ))
            .await;
        let volumes: Value = self
            .engine
            .json(Call::get(
                "listing test volumes",
                &format!("/volumes?filters={filters}"),
            ))
            .await
            .unwrap_or_default();
        let labelled = volumes["Volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|volume| volume["Name"].as_str().map(str::to_owned));
        for name in labelled.chain(mounted) {
            let _ = self
                .engine
                .call(Call::delete(
                    "removing a test volume",
                    &format!("/volumes/{name}?force=1"),
                ))
                .await;
        }
        let images: Vec<Value> = self
            .engine
            .json(Call::get(
                "listing test images",
                &format!("/images/json?filters={filters}"),
            ))
            .await
            .unwrap_or_default();
        for image in images {
            let id = image["Id"].as_str().unwrap_or_default();
            let _ = self
                .engine
                .call(Call::delete(
                    "removing a test image",
                    &format!("/images/{id}?force=1"),
                ))
                .await;
        }
    }
}

impl Drop for Sandbox {
    /// Cleans up on a runtime of its own, whether the test passed or not.
    fn drop(&mut self) {
        if self.id.is_empty() {
            return;
        }
        let sandbox = Sandbox {
            engine: self.engine.clone(),
            id: std::mem::take(&mut self.id),
        };
        let cleaning = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to clean up");
            runtime.block_on(sandbox.clean());
            // `sandbox` is dropped here: its id is still set, so it is emptied first.
            let mut sandbox = sandbox;
            sandbox.id.clear();
        });
        let _ = cleaning.join();
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default()
}

/// A `docker-registry` (Debian's distribution registry) on 127.0.0.1, with its storage in
/// a temporary folder; stopped when dropped.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub host: String,
    binary: PathBuf,
    config_file: PathBuf,
    _storage: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on 127.0.0.1:`port`; `htpasswd`, when given, is the content of
    /// its password file (bcrypt entries), which makes it ask for credentials.
    pub async fn start(port: u16, htpasswd: Option<&str>) -> Result<Self, String> {
        let binary = which("docker-registry")
            .ok_or("docker-registry (Debian's docker-registry package) is not installed")?;
        let storage = tempfile::tempdir().map_err(|error| error.to_string())?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.path().join("data").display()
        );
        if let Some(htpasswd) = htpasswd {
            let file = storage.path().join("htpasswd");
            std::fs::write(&file, htpasswd).map_err(|error| error.to_string())?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                file.display()
            ));
        }
        let config_file = storage.path().join("config.yml");
        std::fs::write(&config_file, config).map_err(|error| error.to_string())?;
        let child = serve(&binary, &config_file)?;
        let registry = Self {
            child,
            host: format!("127.0.0.1:{port}"),
            binary,
            config_file,
            _storage: storage,
        };
        registry.until_listening().await?;
        Ok(registry)
    }

    /// Starts the registry again, notifying `url` of every event with `Authorization:
    /// Bearer <key>`, as an operator configures it for autoredeploy.
    pub async fn notify(&mut self, url: &str, key: &str) {
        self.stop().await;
        let mut config = std::fs::read_to_string(&self.config_file).unwrap();
        config.push_str(&format!(
            "notifications:\n  endpoints:\n    - name: autoredeploy\n      url: {url}\n      \
             headers:\n        Authorization: [Bearer {key}]\n      timeout: 2s\n      \
             threshold: 3\n      backoff: 500ms\n"
        ));
        std::fs::write(&self.config_file, config).unwrap();
        self.child = serve(&self.binary, &self.config_file).unwrap();
        self.until_listening().await.unwrap();
    }

    async fn until_listening(&self) -> Result<(), String> {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(&self.host).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("docker-registry did not start listening".into())
    }

    /// Stops the registry now (its images stay in its storage).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// `docker-registry serve <config_file>`, ended when dropped.
fn serve(binary: &Path, config_file: &Path) -> Result<Child, String> {
    Command::new(binary)
        .arg("serve")
        .arg(config_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("starting docker-registry: {error}"))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|folder| Path::new(folder).join(program))
        .find(|path| path.is_file())
}

/// A port of 127.0.0.1 free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

/// Reads `http://127.0.0.1:<port><path>`, waiting up to 10 s for an answer.
pub async fn read_published(port: u16, path: &str) -> Result<String, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut last = String::new();
    for _ in 0..100 {
        match client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(answer) if answer.status().is_success() => {
                return answer.text().await.map_err(|error| error.to_string());
            }
            Ok(answer) => last = format!("status {}", answer.status()),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{url}: {last}"))
}
