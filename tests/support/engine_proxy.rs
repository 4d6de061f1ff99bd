//! A Unix socket in front of the real engine's, which can hold one kind of request: the
//! process under test then waits for an answer while the test kills it, or changes the
//! engine's state before the request goes on. autoredeploy
//! opens a connection per request, so each connection carries one request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

/// Which requests to hold, and how.
#[derive(Debug, Clone)]
pub struct Hold {
    /// The method (`POST`).
    pub method: &'static str,
    /// A part of the path (`/containers/create`).
    pub path_contains: String,
    /// Pass the request to the engine first, and hold only its answer (for ever).
    /// Otherwise the request waits until [`EngineProxy::let_held_through`].
    pub after_the_engine: bool,
}

/// The proxy; it stops when dropped.
pub struct EngineProxy {
    /// The socket, for `DOCKER_HOST=unix://…`.
    pub socket: PathBuf,
    hold: Arc<Mutex<Option<Hold>>>,
    held: Arc<Notify>,
    go: Arc<Notify>,
    /// The request line of every request, in order.
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
    _folder: tempfile::TempDir,
}

impl EngineProxy {
    /// A proxy of the engine listening on `engine`.
    pub fn start(engine: &Path) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let socket = folder.path().join("engine.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let hold: Arc<Mutex<Option<Hold>>> = Arc::default();
        let held = Arc::new(Notify::new());
        let go = Arc::new(Notify::new());
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let engine = engine.to_owned();
        let task = {
            let signals = Signals {
                hold: Arc::clone(&hold),
                held: Arc::clone(&held),
                go: Arc::clone(&go),
                seen: Arc::clone(&seen),
            };
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (signals, engine) = (signals.clone(), engine.clone());
                    tokio::spawn(async move {
                        let _ = relay(client, &engine, &signals).await;
                    });
                }
            })
        };
        Self {
            socket,
            hold,
            held,
            go,
            seen,
            task,
            _folder: folder,
        }
    }

    /// `DOCKER_HOST` for this proxy.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Holds the requests `hold` describes from now on.
    pub fn hold(&self, hold: Hold) {
        *self.hold.lock().unwrap() = Some(hold);
    }

    /// Lets every request through from now on (those held stay held).
    pub fn release(&self) {
        *self.hold.lock().unwrap() = None;
    }

    /// Sends the request held before the engine on to it.
    pub fn let_held_through(&self) {
        self.go.notify_one();
    }

    /// How many requests of `method` whose path holds `path_contains` went through.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.starts_with(&format!("{method} ")) && line.contains(path_contains))
            .count()
    }

    /// Waits until a request is held.
    pub async fn until_held(&self) {
        tokio::time::timeout(std::time::Duration::from_secs(60), self.held.notified())
            .await
            .expect("the request to hold arrives");
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the proxy and its connections share.
#[derive(Clone)]
struct Signals {
    hold: Arc<Mutex<Option<Hold>>>,
    held: Arc<Notify>,
    go: Arc<Notify>,
    seen: Arc<Mutex<Vec<String>>>,
}

/// Carries one connection to the engine, unless its request is to be held.
async fn relay(mut client: UnixStream, engine: &Path, signals: &Signals) -> std::io::Result<()> {
    let Signals {
        hold,
        held,
        go,
        seen,
    } = signals;
    let mut head = Vec::new();
    let mut byte = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = client.read(&mut byte).await?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&byte[..read]);
    }
    let line = String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)])
        .into_owned();
    seen.lock().unwrap().push(line.clone());
    let mut words = line.split(' ');
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let rule = hold
        .lock()
        .unwrap()
        .clone()
        .filter(|rule| rule.method == method && path.contains(&rule.path_contains));
    let hold_the_answer = match &rule {
        Some(rule) if !rule.after_the_engine => {
            held.notify_one();
            go.notified().await;
            false
        }
        Some(_) => true,
        None => false,
    };
    let mut upstream = UnixStream::connect(engine).await?;
    upstream.write_all(&head).await?;
    match hold_the_answer {
        false => {
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        }
        true => {
            // The engine acts on the request; its answer never reaches the caller.
            let (mut from_client, _to_client) = client.split();
            let (mut from_engine, mut to_engine) = upstream.split();
            let forward = tokio::io::copy(&mut from_client, &mut to_engine);
            let answered = async {
                let mut first = [0u8; 1];
                let _ = from_engine.read(&mut first).await;
                held.notify_one();
                std::future::pending::<()>().await;
            };
            let _ = tokio::join!(forward, answered);
        }
    }
    Ok(())
}

/// The engine's Unix socket offered on 127.0.0.1 over plain TCP, as `DOCKER_HOST=tcp://…`
/// reaches it; it stops when dropped.
pub struct TcpRelay {
    task: tokio::task::JoinHandle<()>,
}

impl TcpRelay {
    /// A port on 127.0.0.1 kept for a relay: bound but not listening, so that connections
    /// to it are refused and no other test takes it meanwhile.
    pub fn reserve() -> (tokio::net::TcpSocket, u16) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let port = socket.local_addr().unwrap().port();
        (socket, port)
    }

    /// Relays each connection to the `reserved` port to the socket `engine`.
    pub async fn start(reserved: tokio::net::TcpSocket, engine: &Path) -> Self {
        let listener = reserved.listen(64).unwrap();
        let engine = engine.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let engine = engine.clone();
                tokio::spawn(async move {
                    if let Ok(mut upstream) = UnixStream::connect(&engine).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        Self { task }
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
