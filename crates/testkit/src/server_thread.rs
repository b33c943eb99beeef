//! A server running on its own thread and single-threaded tokio runtime, so it works the same from sync and
//! async tests, does not compete with the test's runtime, and shuts down (bounded) when dropped.

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// How long dropping a server waits for its thread to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long startup may take.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle that tells a server to stop: `stopped().await` resolves when it should.
#[derive(Debug, Clone)]
pub(crate) struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    pub(crate) async fn stopped(&mut self) {
        // Err means the sender is gone, which also means stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[derive(Debug)]
pub(crate) struct ServerThread {
    what: String,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `127.0.0.1:0` and runs `serve(listener, stop)` on a new thread until it returns.
    pub(crate) fn spawn<F, Fut>(what: &str, serve: F) -> Result<ServerThread>
    where
        F: FnOnce(TcpListener, StopSignal) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        ServerThread::spawn_at(what, std::net::SocketAddr::from(([127, 0, 0, 1], 0)), serve)
    }

    /// As [`spawn`](Self::spawn), listening on `addr` (port 0 picks one).
    pub(crate) fn spawn_at<F, Fut>(
        what: &str,
        addr: std::net::SocketAddr,
        serve: F,
    ) -> Result<ServerThread>
    where
        F: FnOnce(TcpListener, StopSignal) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let listener =
            StdListener::bind(addr).map_err(|e| Error::io(format!("{what}: binding {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(format!("{what}: reading the bound address"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(format!("{what}: set_nonblocking"), e))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (started_tx, started_rx) = mpsc::sync_channel::<std::io::Result<()>>(1);
        let (done_tx, done_rx) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name(format!("testkit-{what}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let _ = started_tx.send(Ok(()));
                            serve(listener, StopSignal(stop_rx)).await;
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                        }
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(500));
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::io(format!("{what}: spawning its thread"), e))?;
        let server = ServerThread {
            what: what.to_string(),
            addr,
            stop: stop_tx,
            done: done_rx,
            thread: Some(thread),
        };
        match started_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => Err(Error::io(format!("{what}: starting"), e)),
            Err(_) => Err(Error::Timeout {
                what: format!("{what} to start"),
                after: START_TIMEOUT,
            }),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        match self.done.recv_timeout(STOP_TIMEOUT) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                eprintln!(
                    "testkit: {} did not stop within {STOP_TIMEOUT:?}; leaving its thread behind",
                    self.what
                );
            }
        }
    }
}
