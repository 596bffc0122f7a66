//! Threads that serve connections, one single-threaded runtime per core.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Deserialize;

/// The kernel scheduling policy of the worker threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduling {
    /// `SCHED_BATCH` (Linux): a thread woken by a write does not preempt
    /// the thread running on its core, so a peer on the same machine (the
    /// upstream, or the client) finishes its batch of work first and the
    /// gateway then relays everything it finds ready in one go. Each thread
    /// keeps its nice value and its share of the CPU; only the moment it
    /// runs moves, and only when the core is busy.
    #[default]
    Batch,
    /// The kernel's default policy: a woken thread preempts at once.
    Normal,
}

/// The threads that serve client connections: each runs a single-threaded
/// runtime, and a connection stays on the thread it was given, with its
/// upstream connection. Nothing is shared between them on the way through
/// but the key cache and the limits, so a request wakes no other thread;
/// the price is that a thread the kernel deschedules delays its own
/// connections, which no other thread can take over. The threads run under
/// [`Scheduling::Batch`] unless configured otherwise: measured against
/// nginx on a machine whose cores the upstream and the client share, it
/// lowered the gateway's p99 from about twice nginx's to below it, as the
/// upstream and the client were no longer cut off mid-batch each time they
/// woke the gateway.
pub struct Workers {
    workers: Vec<Worker>,
    /// Dropped to stop the threads, once their connections have ended.
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

pub struct Worker {
    pub runtime: tokio::runtime::Handle,
    /// Connections open on this thread.
    pub open: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts `threads` threads named `name-0`, `name-1`, ….
    pub fn start(name: &str, threads: usize, scheduling: Scheduling) -> std::io::Result<Self> {
        let mut workers = Vec::with_capacity(threads);
        let mut stops = Vec::with_capacity(threads);
        for n in 0..threads {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (started, runtime) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    if scheduling == Scheduling::Batch {
                        if let Err(e) = keyward_os::set_batch_scheduling() {
                            tracing::warn!(error = %e, "worker thread keeps the default scheduling");
                        }
                    }
                    let built = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .enable_time()
                        .build();
                    match built {
                        Ok(runtime) => {
                            if started.send(Ok(runtime.handle().clone())).is_ok() {
                                let _ = runtime.block_on(stopped);
                            }
                        }
                        Err(e) => {
                            let _ = started.send(Err(e));
                        }
                    }
                })?;
            let runtime = runtime
                .recv()
                .map_err(|_| std::io::Error::other("a worker thread did not start"))??;
            workers.push(Worker {
                runtime,
                open: Arc::default(),
            });
            stops.push(stop);
        }
        Ok(Workers {
            workers,
            _stop: stops,
        })
    }

    /// The thread with the fewest open connections; `None` when connections
    /// run on the server's runtime.
    pub fn least_busy(&self) -> Option<&Worker> {
        self.workers
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
    }
}

/// One open connection, counted on its thread while it lives.
pub struct Open(Arc<AtomicUsize>);

impl Open {
    pub fn count(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Open(Arc::clone(open))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
