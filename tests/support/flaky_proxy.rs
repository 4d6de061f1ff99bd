//! A TCP proxy in front of the fake Rancher that can hang up on connections, as a restarting
//! Rancher or a flapping load balancer does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct FlakyProxy {
    pub address: SocketAddr,
    drops_left: Arc<AtomicUsize>,
    /// The next connection is cut after this many bytes of answer (0: not armed).
    cut_after: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
}

impl FlakyProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let drops_left = Arc::new(AtomicUsize::new(0));
        let cut_after = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (drops, cut, count, connections) = (
            Arc::clone(&drops_left),
            Arc::clone(&cut_after),
            Arc::clone(&dropped),
            Arc::clone(&open),
        );
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let hang_up = drops
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                        left.checked_sub(1)
                    })
                    .is_ok();
                if hang_up {
                    count.fetch_add(1, Ordering::SeqCst);
                    drop(inbound);
                    continue;
                }
                let cut_after = cut.swap(0, Ordering::SeqCst);
                let count = Arc::clone(&count);
                let task = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    if cut_after == 0 {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                    let (mut from_client, mut to_client) = inbound.split();
                    let (mut from_server, mut to_server) = outbound.split();
                    let mut answer = (&mut from_server).take(cut_after as u64);
                    // Once the allowed part of the answer is through, both sides are closed.
                    tokio::select! {
                        _ = tokio::io::copy(&mut from_client, &mut to_server) => {}
                        _ = tokio::io::copy(&mut answer, &mut to_client) => {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
                connections.lock().unwrap().push(task.abort_handle());
            }
        });
        Self {
            address,
            drops_left,
            cut_after,
            dropped,
            open,
        }
    }

    pub fn host(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Cuts every open connection and hangs up on the next `count` new ones.
    pub fn drop_next(&self, count: usize) {
        self.drops_left.store(count, Ordering::SeqCst);
        for connection in self.open.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Cuts the next new connection once `bytes` of the answer have been passed on, as a
    /// connection lost in the middle of a long page does.
    pub fn cut_next_answer_after(&self, bytes: usize) {
        self.cut_after.store(bytes, Ordering::SeqCst);
    }

    /// Connections hung up on or cut so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}
