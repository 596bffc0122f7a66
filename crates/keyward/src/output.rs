//! Standard output that a closed pipe ends quietly.
//!
//! Rust ignores `SIGPIPE`, so a write to a pipe whose reader has gone
//! (`keyward keys list | head -1`) fails with `BrokenPipe`, and `println!`
//! panics on it. Every command prints through [`line`] or [`Stdout`]
//! instead: the failure travels up as an error that [`is_closed_stdout`]
//! recognises, and `main` then exits 0 without a word, as ripgrep does.
//! Only standard output is treated so: a broken pipe to the server stays
//! an error.

use std::fmt;
use std::io::{self, Write};

/// The reader of standard output has gone.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Marks a broken pipe as the closing of standard output.
fn mark(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

/// Writes one line to standard output.
pub fn line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(mark)
}

/// Standard output as a writer whose broken pipe [`is_closed_stdout`]
/// recognises.
pub struct Stdout(io::StdoutLock<'static>);

impl Stdout {
    pub fn lock() -> Self {
        Stdout(io::stdout().lock())
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}

/// Whether `e` is, or was caused by, the closing of standard output.
pub fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<StdoutClosed>()
            || cause
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// `println!` that returns the write's error instead of panicking on it.
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}
pub(crate) use outln;
