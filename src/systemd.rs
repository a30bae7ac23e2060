//! Running under systemd: readiness and status notifications, the
//! watchdog, logs that journald keeps with their level, and a bound on how
//! long an orderly stop may take.
//!
//! Notifications are the `sd_notify` protocol without libsystemd: one
//! datagram of `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET`
//! (a path, or `@name` for an abstract socket). Without `$NOTIFY_SOCKET`
//! (not started by systemd, or `Type=` is not `notify`) every notification
//! is a no-op.
//!
//! `peerlet daemon` uses a [`Supervisor`]:
//!
//! - `READY=1` once the peer listener, the UDP (tracker and overlay) socket
//!   and the control API are bound ([`Supervisor::ready`]);
//! - a monitor thread asks the engine for [`Command::Node`] every 5 s (or
//!   every half watchdog period, if shorter), sends `STATUS=` with a
//!   one-line summary when it changed, and `WATCHDOG=1` only when the
//!   engine answered within the period: a hung net thread stops the pings,
//!   and systemd restarts the service after `WatchdogSec`;
//! - `STOPPING=1` when a stop begins ([`Supervisor::begin_stop`]: a signal,
//!   or `peerlet stop` seen by the monitor), which also arms
//!   [`STOP_DEADLINE`]: if the orderly stop has not ended by then, the
//!   process exits anyway, with a log line saying so.
//!
//! Logs: when stderr is the journal stream systemd set up for us
//! (`$JOURNAL_STREAM` names stderr's device and inode), [`init_logging`]
//! writes each line with an sd-daemon priority prefix (`<3>` error, `<4>`
//! warning, `<6>` info, `<7>` debug and trace), without colours or
//! timestamps (journald adds its own); otherwise env_logger's usual format
//! (written by [`init_logging`]'s own small logger).

use crate::net::api::{Command, EngineHandle, NodeStatus};
use crate::progress::human_bytes;
use crossbeam_channel::{bounded, RecvTimeoutError, SendTimeoutError};
use std::ffi::OsStr;
use std::io;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long an orderly stop may take, from its start, before the process
/// exits without waiting further. The engine's own deadline for saving
/// state is 10 s (tracker `stopped` announces get 5 s of it); this leaves
/// time for the threads to end, and stays well under the unit's
/// `TimeoutStopSec=30`, after which systemd would SIGKILL us.
pub const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// How often `STATUS=` is refreshed (when the summary changed).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest probe period, whatever `$WATCHDOG_USEC` says.
const MIN_PERIOD: Duration = Duration::from_millis(100);

/// Sends `sd_notify` datagrams to `$NOTIFY_SOCKET`, or nothing.
pub struct Notifier {
    target: Option<Target>,
    /// A failed send was logged as a warning (later ones go to debug).
    warned: AtomicBool,
}

struct Target {
    socket: UnixDatagram,
    addr: UnixSocketAddr,
    /// `$NOTIFY_SOCKET` as given, for log lines.
    name: String,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for; a no-op when it is unset or
    /// empty. A value that cannot be used is logged and also gives a no-op.
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => match Notifier::to(&v) {
                Ok(n) => n,
                Err(e) => {
                    log::warn!(
                        "NOTIFY_SOCKET={}: {e}; not notifying systemd",
                        v.to_string_lossy()
                    );
                    Notifier::disabled()
                }
            },
            _ => Notifier::disabled(),
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            warned: AtomicBool::new(false),
        }
    }

    /// A notifier for a `$NOTIFY_SOCKET` value: an absolute path, or
    /// `@name` for a socket in the abstract namespace (Linux).
    pub fn to(value: &OsStr) -> io::Result<Notifier> {
        let addr = parse_notify_socket(value)?;
        let socket = UnixDatagram::unbound()?;
        Ok(Notifier {
            target: Some(Target {
                socket,
                addr,
                name: value.to_string_lossy().into_owned(),
            }),
            warned: AtomicBool::new(false),
        })
    }

    /// True when notifications go somewhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one datagram of newline-separated `KEY=VALUE` assignments.
    /// Failures are logged (the first as a warning) and otherwise ignored:
    /// systemd going away must not stop the daemon.
    pub fn notify(&self, state: &str) {
        let Some(t) = &self.target else {
            return;
        };
        match t.socket.send_to_addr(state.as_bytes(), &t.addr) {
            Ok(_) => log::trace!("sd_notify: {}", state.replace('\n', " ")),
            Err(e) => {
                if self.warned.swap(true, Ordering::Relaxed) {
                    log::debug!("cannot notify systemd at {}: {e}", t.name);
                } else {
                    log::warn!("cannot notify systemd at {}: {e}", t.name);
                }
            }
        }
    }
}

/// `$NOTIFY_SOCKET` → a socket address: an absolute path or `@abstract`.
fn parse_notify_socket(value: &OsStr) -> io::Result<UnixSocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => UnixSocketAddr::from_pathname(value),
        Some(b'@') => abstract_addr(&bytes[1..]),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "give an absolute path or @name for an abstract socket",
        )),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<UnixSocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    UnixSocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<UnixSocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

/// The watchdog period systemd expects pings within (`WatchdogSec=`),
/// when `$WATCHDOG_USEC` is set and `$WATCHDOG_PID` is unset or ours.
pub fn watchdog_period() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id())
}

fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid.filter(|p| !p.is_empty()) {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// What `peerlet daemon` tells systemd, and the bound on an orderly stop.
pub struct Supervisor {
    notifier: Notifier,
    watchdog: Option<Duration>,
    stopping: AtomicBool,
    stop_deadline: Duration,
}

impl Supervisor {
    /// From the environment systemd gives a service (`$NOTIFY_SOCKET`,
    /// `$WATCHDOG_USEC`, `$WATCHDOG_PID`), with [`STOP_DEADLINE`].
    pub fn from_env() -> Arc<Supervisor> {
        let notifier = Notifier::from_env();
        let watchdog = if notifier.is_enabled() {
            watchdog_period()
        } else {
            None
        };
        Supervisor::new(notifier, watchdog, STOP_DEADLINE)
    }

    /// A supervisor with explicit parts (tests; `from_env` for the daemon).
    pub fn new(
        notifier: Notifier,
        watchdog: Option<Duration>,
        stop_deadline: Duration,
    ) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            notifier,
            watchdog,
            stopping: AtomicBool::new(false),
            stop_deadline,
        })
    }

    /// The daemon is up: sends `READY=1` and starts the monitor thread
    /// (status lines and watchdog pings) when systemd listens.
    pub fn ready(self: &Arc<Self>, handle: EngineHandle, summary: &str) -> io::Result<()> {
        if !self.notifier.is_enabled() {
            return Ok(());
        }
        self.notifier.notify(&format!("READY=1\nSTATUS={summary}"));
        if let Some(w) = self.watchdog {
            log::info!(
                "systemd watchdog: {} s; pinging every {} ms while the engine answers",
                w.as_secs_f64(),
                self.probe_period().as_millis()
            );
        }
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("peerlet-systemd".into())
            .spawn(move || me.monitor(handle))?;
        Ok(())
    }

    /// A stop begins (`why`: "SIGTERM", "asked to stop", ...). The first
    /// call sends `STOPPING=1` and arms the stop deadline: a thread that
    /// exits the process (status 0: the stop was asked for, and a crash
    /// loses no verified data) if the orderly stop is not over by then.
    /// Later calls do nothing.
    pub fn begin_stop(&self, why: &str) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.notifier.notify(&format!(
            "STOPPING=1\nSTATUS=stopping ({why}): saving state"
        ));
        let deadline = self.stop_deadline;
        let res = std::thread::Builder::new()
            .name("peerlet-stop-deadline".into())
            .spawn(move || {
                std::thread::sleep(deadline);
                log::error!(
                    "the orderly stop did not finish within {} s (the engine or a disk is not answering); exiting without waiting further — pieces verified since the last checkpoint will be re-hashed at the next start",
                    deadline.as_secs()
                );
                std::process::exit(0);
            });
        if let Err(e) = res {
            log::warn!("cannot start the stop deadline thread: {e}");
        }
    }

    /// Sends `STATUS=text` (e.g. why the start failed).
    pub fn status(&self, text: &str) {
        self.notifier.notify(&format!("STATUS={text}"));
    }

    /// True once a stop began.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// How often the monitor asks the engine: every [`STATUS_INTERVAL`],
    /// or every half watchdog period when that is shorter.
    fn probe_period(&self) -> Duration {
        match self.watchdog {
            Some(w) => (w / 2).clamp(MIN_PERIOD, STATUS_INTERVAL),
            None => STATUS_INTERVAL,
        }
    }

    /// The monitor thread: status lines and watchdog pings until a stop.
    fn monitor(&self, handle: EngineHandle) {
        let period = self.probe_period();
        let mut last_status = String::new();
        let mut stalled_since: Option<Instant> = None;
        while !self.is_stopping() {
            let started = Instant::now();
            match probe(&handle, period) {
                Probe::Answer(node) => {
                    if let Some(since) = stalled_since.take() {
                        log::warn!(
                            "the network thread answers again after {:.1} s",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    let status = summary(
                        node.torrents,
                        node.peers,
                        node.download_rate,
                        node.upload_rate,
                    );
                    let mut msg = String::new();
                    if status != last_status {
                        msg.push_str("STATUS=");
                        msg.push_str(&status);
                        last_status = status;
                    }
                    if self.watchdog.is_some() {
                        if !msg.is_empty() {
                            msg.push('\n');
                        }
                        msg.push_str("WATCHDOG=1");
                    }
                    if !msg.is_empty() && !self.is_stopping() {
                        self.notifier.notify(&msg);
                    }
                    std::thread::sleep(period.saturating_sub(started.elapsed()));
                }
                Probe::Slow => {
                    // No ping: if this lasts a whole watchdog period,
                    // systemd restarts the service, which is the point.
                    if stalled_since.is_none() {
                        stalled_since = Some(started);
                        log::warn!(
                            "the network thread did not answer within {} ms{}",
                            period.as_millis(),
                            if self.watchdog.is_some() {
                                "; not pinging the systemd watchdog until it does"
                            } else {
                                ""
                            }
                        );
                    }
                }
                Probe::Stopped => {
                    self.begin_stop("asked to stop");
                    return;
                }
            }
        }
    }
}

/// What a [`Command::Node`] sent to the engine came to.
enum Probe {
    Answer(Box<NodeStatus>),
    /// No answer within the period.
    Slow,
    /// The engine dropped the question (it is stopping) or is gone.
    Stopped,
}

/// Asks the engine for its node status, waiting at most `timeout` in all
/// (a full command queue counts as no answer).
fn probe(handle: &EngineHandle, timeout: Duration) -> Probe {
    let deadline = Instant::now() + timeout;
    let (tx, rx) = bounded(1);
    match handle
        .commands
        .send_deadline(Command::Node { reply: tx }, deadline)
    {
        Ok(()) => {}
        Err(SendTimeoutError::Timeout(_)) => return Probe::Slow,
        Err(SendTimeoutError::Disconnected(_)) => return Probe::Stopped,
    }
    (handle.wake)();
    match rx.recv_deadline(deadline) {
        Ok(Ok(node)) => Probe::Answer(Box::new(node)),
        // The engine answered, so it is alive; it never refuses `Node`
        // except while stopping.
        Ok(Err(_)) => Probe::Stopped,
        Err(RecvTimeoutError::Timeout) => Probe::Slow,
        Err(RecvTimeoutError::Disconnected) => Probe::Stopped,
    }
}

/// The one-line `STATUS=` summary of a [`NodeStatus`]:
/// "2 torrents, 5 peers, down 1.2 MiB/s, up 300.0 KiB/s".
pub fn summary(torrents: u32, peers: u32, download_rate: u64, upload_rate: u64) -> String {
    let plural = |n: u32, word: &str| {
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    format!(
        "{}, {}, down {}/s, up {}/s",
        plural(torrents, "torrent"),
        plural(peers, "peer"),
        human_bytes(download_rate),
        human_bytes(upload_rate)
    )
}

/// True when stderr is the journal stream systemd connected us to:
/// `$JOURNAL_STREAM` is `DEVICE:INODE` of stderr (decimal). Computed once.
pub fn stderr_is_journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        use std::os::fd::AsFd;
        match crate::storage::fd_identity(std::io::stderr().as_fd()) {
            Ok((dev, ino)) => journal_stream_matches(&value.to_string_lossy(), dev, ino),
            Err(_) => false,
        }
    })
}

fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

/// The sd-daemon priority prefix of a log level (`sd-daemon(3)`).
pub fn priority_prefix(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "<3>",
        log::Level::Warn => "<4>",
        log::Level::Info => "<6>",
        log::Level::Debug | log::Level::Trace => "<7>",
    }
}

/// Sets up `log`: journald's form when stderr is the journal
/// ([`stderr_is_journal`]), the usual one otherwise (env_logger's default
/// format, which this replaced to save its code: `[LEVEL target] message`,
/// coloured on a terminal; `RUST_LOG_STYLE`, `NO_COLOR`, `CLICOLOR` and
/// `CLICOLOR_FORCE` are honoured by anstream as before, and escape
/// sequences are stripped when not colouring). The filter (`PEERLET_LOG`,
/// `RUST_LOG`, default `warn`; then the configuration's `log`, also on
/// SIGHUP) is kept by [`crate::config::logging`].
pub fn init_logging() {
    let journal = stderr_is_journal();
    let style = std::env::var("RUST_LOG_STYLE").ok();
    let choice = match (journal, style.as_deref()) {
        (true, _) | (_, Some("never")) => anstream::ColorChoice::Never,
        (_, Some("always")) => anstream::ColorChoice::Always,
        _ => anstream::AutoStream::choice(&io::stderr()),
    };
    let colour = matches!(
        choice,
        anstream::ColorChoice::Always | anstream::ColorChoice::AlwaysAnsi
    );
    crate::config::logging::install(StderrLog {
        journal,
        colour,
        choice: if colour {
            anstream::ColorChoice::Always
        } else {
            anstream::ColorChoice::Never
        },
    });
}

/// Log records to stderr, one write (and flush) each.
struct StderrLog {
    journal: bool,
    colour: bool,
    /// Always or Never (Never strips escape sequences from the output).
    choice: anstream::ColorChoice,
}

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        use std::io::Write;
        let line = if self.journal {
            journal_line(record.level(), record.target(), record.args())
        } else {
            plain_line(record.level(), record.target(), record.args(), self.colour)
        };
        let mut out = anstream::AutoStream::new(io::stderr(), self.choice).lock();
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }

    fn flush(&self) {}
}

/// One log record in env_logger's default form: `[LEVEL target] message`,
/// the level padded to five, later lines of the message indented by four;
/// with `colour`, the brackets grey and the level in its colour.
fn plain_line(
    level: log::Level,
    target: &str,
    args: &dyn std::fmt::Display,
    colour: bool,
) -> String {
    const RESET: &str = "\x1b[0m";
    let (open, close, level_style) = if colour {
        let style = match level {
            log::Level::Trace => "\x1b[36m",
            log::Level::Debug => "\x1b[34m",
            log::Level::Info => "\x1b[32m",
            log::Level::Warn => "\x1b[33m",
            log::Level::Error => "\x1b[1m\x1b[31m",
        };
        ("\x1b[90m[\x1b[0m", "\x1b[90m]\x1b[0m", style)
    } else {
        ("[", "]", "")
    };
    let reset = if colour { RESET } else { "" };
    let mut out = format!("{open}{level_style}{level:<5}{reset}");
    if !target.is_empty() {
        out.push(' ');
        out.push_str(target);
    }
    out.push_str(close);
    out.push(' ');
    let message = args.to_string();
    let message = crate::text::for_terminal(&message);
    if message.contains('\n') {
        out.push_str(&message.replace('\n', "\n    "));
    } else {
        out.push_str(&message);
    }
    out.push('\n');
    out
}

/// One log record in journald's form: every line of the message carries
/// the priority, so a multi-line message keeps its level.
fn journal_line(level: log::Level, target: &str, args: &dyn std::fmt::Display) -> String {
    let prefix = priority_prefix(level);
    let text = format!("{target}: {args}");
    let text = crate::text::for_terminal(&text);
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        out.push_str(prefix);
        out.push_str(line);
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str(prefix);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn notify_socket_values() {
        assert!(parse_notify_socket(OsStr::new("/run/systemd/notify")).is_ok());
        assert!(parse_notify_socket(OsStr::new("relative/path")).is_err());
        assert!(parse_notify_socket(OsStr::new("")).is_err());
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let a = parse_notify_socket(OsStr::new("@peerlet/notify")).unwrap();
            assert_eq!(a.as_abstract_name(), Some(&b"peerlet/notify"[..]));
        }
        assert!(Notifier::to(&OsString::from("nope")).is_err());
    }

    #[test]
    fn notifications_reach_path_and_abstract_sockets() {
        let dir = std::env::temp_dir().join(format!("peerlet-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::to(path.as_os_str()).unwrap();
        n.notify("READY=1\nSTATUS=up");
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        let _ = std::fs::remove_dir_all(&dir);

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("peerlet-test-notify-{}", std::process::id());
            let addr = UnixSocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let server = UnixDatagram::bind_addr(&addr).unwrap();
            server
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let n = Notifier::to(OsStr::new(&format!("@{name}"))).unwrap();
            n.notify("WATCHDOG=1");
            let len = server.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], b"WATCHDOG=1");
        }

        // Nobody listening: logged, not fatal.
        let gone = Notifier::to(OsStr::new("/nonexistent/peerlet/notify")).unwrap();
        gone.notify("READY=1");
        gone.notify("READY=1");
        Notifier::disabled().notify("READY=1");
    }

    #[test]
    fn watchdog_environment() {
        assert_eq!(
            parse_watchdog(Some("2000000"), None, 42),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_watchdog(Some("2000000"), Some("42"), 42),
            Some(Duration::from_secs(2))
        );
        assert_eq!(parse_watchdog(Some("2000000"), Some("43"), 42), None);
        assert_eq!(parse_watchdog(Some("2000000"), Some("x"), 42), None);
        assert_eq!(
            parse_watchdog(Some("2000000"), Some(""), 42),
            Some(Duration::from_secs(2))
        );
        assert_eq!(parse_watchdog(Some("0"), None, 42), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 42), None);
        assert_eq!(parse_watchdog(None, Some("42"), 42), None);
    }

    #[test]
    fn probe_period_follows_the_watchdog() {
        let s = |w| Supervisor::new(Notifier::disabled(), w, STOP_DEADLINE);
        assert_eq!(s(None).probe_period(), STATUS_INTERVAL);
        assert_eq!(
            s(Some(Duration::from_secs(60))).probe_period(),
            STATUS_INTERVAL
        );
        assert_eq!(
            s(Some(Duration::from_secs(2))).probe_period(),
            Duration::from_secs(1)
        );
        assert_eq!(
            s(Some(Duration::from_micros(10))).probe_period(),
            MIN_PERIOD
        );
    }

    #[test]
    fn journal_stream_format() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(!journal_stream_matches("8:1235", 8, 1234));
        assert!(!journal_stream_matches("8", 8, 1234));
        assert!(!journal_stream_matches("", 8, 1234));
        assert!(!journal_stream_matches("x:1234", 8, 1234));
    }

    #[test]
    fn plain_lines_are_env_loggers_default_format() {
        assert_eq!(
            plain_line(log::Level::Info, "peerlet::net", &"up", false),
            "[INFO  peerlet::net] up\n"
        );
        assert_eq!(
            plain_line(log::Level::Warn, "", &"two\nlines", false),
            "[WARN ] two\n    lines\n"
        );
        assert_eq!(
            plain_line(log::Level::Error, "peerlet", &"x", true),
            "\x1b[90m[\x1b[0m\x1b[1m\x1b[31mERROR\x1b[0m peerlet\x1b[90m]\x1b[0m x\n"
        );
        assert_eq!(
            plain_line(log::Level::Debug, "p", &"y", true),
            "\x1b[90m[\x1b[0m\x1b[34mDEBUG\x1b[0m p\x1b[90m]\x1b[0m y\n"
        );
    }

    #[test]
    fn journal_lines_carry_the_priority() {
        assert_eq!(
            journal_line(log::Level::Warn, "peerlet::net", &"disk full"),
            "<4>peerlet::net: disk full\n"
        );
        assert_eq!(
            journal_line(log::Level::Error, "peerlet", &"two\nlines"),
            "<3>peerlet: two\n<3>lines\n"
        );
        assert_eq!(priority_prefix(log::Level::Info), "<6>");
        assert_eq!(priority_prefix(log::Level::Debug), "<7>");
        assert_eq!(priority_prefix(log::Level::Trace), "<7>");
    }

    #[test]
    fn log_lines_carry_no_escapes_from_their_message() {
        let hostile = "name \x1b[2J\x1b]0;t\x07 abc\u{202e}txt.exe";
        assert_eq!(
            journal_line(log::Level::Warn, "peerlet", &hostile),
            "<4>peerlet: name ?[2J?]0;t? abc?txt.exe\n"
        );
        // Our own colour codes stay; the message's escapes do not.
        let line = plain_line(log::Level::Warn, "peerlet", &hostile, true);
        assert!(
            line.ends_with("\x1b[0m name ?[2J?]0;t? abc?txt.exe\n"),
            "{line:?}"
        );
        assert_eq!(
            plain_line(log::Level::Info, "", &"two\nlines", false),
            "[INFO ] two\n    lines\n"
        );
    }

    #[test]
    fn summary_line() {
        assert_eq!(
            summary(1, 0, 1536, 0),
            format!(
                "1 torrent, 0 peers, down 1.5 KiB/s, up {}/s",
                human_bytes(0)
            )
        );
        assert!(summary(2, 1, 0, 0).starts_with("2 torrents, 1 peer, "));
    }
}
