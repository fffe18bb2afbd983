//! The plugin's log: host-log lines, stdout and stderr, captured into one
//! capped buffer per call.

use super::*;

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogSource {
    /// The `escalator:plugin/host.log` function.
    Plugin,
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
}

/// One line of a plugin's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// Where it came from.
    pub source: LogSource,
    /// `trace`, `debug`, `info`, `warn` or `error` (stdout is `info`,
    /// stderr `warn`).
    pub level: &'static str,
    /// The text.
    pub message: String,
}

/// The capped log of one call, shared by the host function and the
/// stdout/stderr streams.
#[derive(Clone, Default)]
pub struct LogSink(pub(super) Arc<Mutex<LogBuf>>);

#[derive(Default)]
pub(super) struct LogBuf {
    pub(super) lines: Vec<LogLine>,
    pub(super) bytes: usize,
    pub(super) cap: usize,
    pub(super) dropped_bytes: usize,
    pub(super) partial_stdout: Vec<u8>,
    pub(super) partial_stderr: Vec<u8>,
    /// Inside a trigger set: where the current trigger's lines began (in
    /// bytes kept), and its own cap ([`LogSink::begin_segment`]).
    pub(super) segment: Option<(usize, usize)>,
}

impl LogBuf {
    pub(super) fn push(&mut self, source: LogSource, level: &'static str, mut message: String) {
        let mut room = self.cap.saturating_sub(self.bytes);
        if let Some((from, cap)) = self.segment {
            room = room.min(cap.saturating_sub(self.bytes - from));
        }
        if room == 0 {
            self.dropped_bytes += message.len();
            return;
        }
        if message.len() > room {
            let mut cut = room;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            self.dropped_bytes += message.len() - cut;
            message.truncate(cut);
        }
        self.bytes += message.len();
        self.lines.push(LogLine {
            source,
            level,
            message,
        });
    }

    /// End unfinished stream lines as lines.
    fn flush_partial(&mut self) {
        for source in [LogSource::Stdout, LogSource::Stderr] {
            let rest = match source {
                LogSource::Stderr => std::mem::take(&mut self.partial_stderr),
                _ => std::mem::take(&mut self.partial_stdout),
            };
            if !rest.is_empty() {
                let level = if source == LogSource::Stderr {
                    "warn"
                } else {
                    "info"
                };
                self.push(source, level, String::from_utf8_lossy(&rest).into_owned());
            }
        }
    }

    /// Append raw stream bytes; complete lines become log lines.
    pub(super) fn write_stream(&mut self, source: LogSource, bytes: &[u8]) {
        let level = if source == LogSource::Stderr {
            "warn"
        } else {
            "info"
        };
        let partial = match source {
            LogSource::Stderr => &mut self.partial_stderr,
            _ => &mut self.partial_stdout,
        };
        // Never buffer more than the cap of an unfinished line.
        let take = bytes.len().min(self.cap.saturating_sub(partial.len()));
        self.dropped_bytes += bytes.len() - take;
        partial.extend_from_slice(&bytes[..take]);
        let mut complete = Vec::new();
        while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            complete.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        for line in complete {
            self.push(source, level, line);
        }
    }
}

impl LogSink {
    /// A sink that keeps at most `cap` bytes of text.
    pub fn new(cap: usize) -> LogSink {
        LogSink(Arc::new(Mutex::new(LogBuf {
            cap,
            ..LogBuf::default()
        })))
    }

    pub(super) fn with<R>(&self, f: impl FnOnce(&mut LogBuf) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Add a line.
    pub fn push(&self, source: LogSource, level: &'static str, message: String) {
        self.with(|b| b.push(source, level, message));
    }

    /// Take the lines (flushing unfinished stream lines) and the number of
    /// bytes dropped over the cap.
    pub fn finish(&self) -> (Vec<LogLine>, usize) {
        self.with(|b| {
            b.flush_partial();
            (std::mem::take(&mut b.lines), b.dropped_bytes)
        })
    }

    /// Inside a trigger set, the next trigger begins: what the last one
    /// left unfinished on stdout or stderr ends as its line, and from now
    /// on the lines are held to the next one's own `cap` as well as the
    /// call's (so one trigger's excess never takes another's room).
    pub fn begin_segment(&self, cap: usize) {
        self.with(|b| {
            b.flush_partial();
            b.segment = Some((b.bytes, cap));
        });
    }

    /// The lines written so far, and the bytes dropped over a cap so far.
    pub fn written(&self) -> (usize, usize) {
        self.with(|b| (b.lines.len(), b.dropped_bytes))
    }

    /// The last line at level `error` written through the host log (the
    /// SDK's panic handler writes the panic message there).
    pub fn last_error(&self) -> Option<String> {
        self.with(|b| {
            b.lines
                .iter()
                .rev()
                .find(|l| l.level == "error" && l.source == LogSource::Plugin)
                .map(|l| l.message.clone())
        })
    }
}

/// stdout or stderr of a guest, writing into the call's [`LogSink`].
#[derive(Clone)]
pub(super) struct CapturedStream {
    pub(super) sink: LogSink,
    pub(super) source: LogSource,
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: wasmtime_wasi_io::bytes::Bytes) -> StreamResult<()> {
        self.sink.with(|b| b.write_stream(self.source, &bytes));
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always ready; what goes past the cap is counted and dropped, so a
        // chatty plugin is never blocked or failed by its own logging.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CapturedStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.sink.with(|b| b.write_stream(self.source, buf));
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
