//! The lifecycle every raw-TCP fake shares: bind 127.0.0.1:0, accept connections and run each
//! on its own task, end them all on shutdown or drop.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A listening fake: accepts until [`TcpFakeServer::shutdown`] or drop.
#[derive(Debug)]
pub(crate) struct TcpFakeServer {
    addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TcpFakeServer {
    /// Binds 127.0.0.1:0 and runs `handle` on each accepted connection.
    pub(crate) async fn start<F, Fut>(handle: F) -> std::io::Result<TcpFakeServer>
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn = handle(stream);
                let mut shutdown = shutdown_rx.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn => {}
                        _ = shutdown.wait_for(|stop| *stop) => {}
                    }
                });
            }
        });
        Ok(TcpFakeServer {
            addr,
            shutdown_tx,
            task,
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and ends every open connection.
    pub(crate) fn shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
        self.task.abort();
    }
}

impl Drop for TcpFakeServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
