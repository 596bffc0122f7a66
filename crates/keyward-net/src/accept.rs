//! Accepting connections until the server stops.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::limits::{Connections, Slot};

/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Accepts connections on `listener` and gives each to `take`, with its
/// slot in `admission`, the receiver that tells them the server is stopping
/// and the set their tasks go in, until `shutdown` completes; then stops
/// listening, tells them, and waits for every task in the set to end.
///
/// A connection from an address that has its cap open is sent `refusal`
/// (a whole answer, written once without waiting) and closed at once, so
/// one client cannot hold every descriptor; when the process has none left,
/// idle connections everywhere are asked to close and accepting pauses
/// briefly rather than failing in a loop.
pub async fn accept_until(
    listener: TcpListener,
    admission: &Connections,
    refusal: &[u8],
    shutdown: impl std::future::Future<Output = ()>,
    mut take: impl FnMut(TcpStream, SocketAddr, Slot, &watch::Receiver<bool>, &mut JoinSet<()>),
) {
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let pause = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(pause);
    let mut paused = false;
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept(), if !paused => match accepted {
                Ok((stream, peer)) => match admission.admit(peer.ip()) {
                    Some(slot) => take(stream, peer, slot, &stopping, &mut connections),
                    None => {
                        tracing::debug!(peer = %peer.ip(), "connection over the address's cap");
                        let _ = stream.try_write(refusal);
                    }
                },
                Err(e) => {
                    if keyward_os::is_out_of_descriptors(&e) {
                        admission.shed().shed();
                    }
                    let now = tokio::time::Instant::now();
                    if warned.is_none_or(|at| now >= at + Duration::from_secs(10)) {
                        warned = Some(now);
                        tracing::warn!(error = %e, "could not accept a connection");
                    }
                    pause.as_mut().reset(now + ACCEPT_PAUSE);
                    paused = true;
                }
            },
            () = &mut pause, if paused => paused = false,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

/// Resolves once the server is stopping.
pub async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Moves a connection's idle deadline to `timeout` from now, at most once a
/// second: a timer is not re-armed for every request.
pub fn push_back(idle: Pin<&mut tokio::time::Sleep>, timeout: Duration) {
    let now = tokio::time::Instant::now();
    if idle.deadline() + Duration::from_secs(1) < now + timeout {
        idle.reset(now + timeout);
    }
}
