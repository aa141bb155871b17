//! Copies of the trail for other systems: standard output and syslog
//! (RFC 5424 over UDP, TCP with octet counting (RFC 6587), or a unix
//! datagram socket). Copies are best effort and run on their own thread:
//! the node's file is what requests wait for; a slow collector never
//! delays an answer. A failed copy counts in `coffer_audit_failures_total`.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::Duration;

/// `<PRI>` of every message: facility authpriv (10), severity info (6).
const PRI: u8 = 10 * 8 + 6;
/// Lines waiting for the copy thread at most (beyond: dropped, counted).
const COPY_QUEUE: usize = 10_000;

/// Where syslog messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogTarget {
    /// `udp://host:port`.
    Udp(String),
    /// `tcp://host:port`.
    Tcp(String),
    /// `unix:///dev/log`.
    Unix(String),
}

impl SyslogTarget {
    /// Parses `udp://…`, `tcp://…` or `unix://…`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(a) = s.strip_prefix("udp://") {
            Ok(Self::Udp(a.to_owned()))
        } else if let Some(a) = s.strip_prefix("tcp://") {
            Ok(Self::Tcp(a.to_owned()))
        } else if let Some(p) = s.strip_prefix("unix://") {
            Ok(Self::Unix(p.to_owned()))
        } else {
            Err(format!(
                "[audit] syslog must be udp://host:port, tcp://host:port or unix:///path, not {s:?}"
            ))
        }
    }
}

/// One RFC 5424 message carrying `line` (a chain line) as its MSG.
pub fn rfc5424(time: &str, host: &str, node_id: u64, line: &[u8]) -> Vec<u8> {
    let _ = node_id;
    rfc5424_message(PRI, time, host, "audit", line)
}

/// One RFC 5424 message: priority `pri`, MSGID `msgid`, `msg` as MSG
/// (`time` in the record format, cut to microseconds).
pub fn rfc5424_message(pri: u8, time: &str, host: &str, msgid: &str, msg: &[u8]) -> Vec<u8> {
    // The record's time has 7 fraction digits; RFC 5424 allows at most 6.
    let ts = match time.len() {
        28 => format!("{}Z", &time[..26]),
        _ => time.to_owned(),
    };
    let mut m = format!(
        "<{pri}>1 {ts} {host} coffer {} {msgid} - ",
        std::process::id()
    )
    .into_bytes();
    m.extend_from_slice(msg);
    m
}

/// The copy thread's handle.
#[derive(Clone)]
pub struct Copies {
    tx: mpsc::SyncSender<(String, Vec<u8>)>,
}

impl Copies {
    /// Starts the copy thread, or `None` when no copy is configured.
    pub fn start(stdout: bool, syslog: Option<SyslogTarget>, node_id: u64) -> Option<Self> {
        if !stdout && syslog.is_none() {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel::<(String, Vec<u8>)>(COPY_QUEUE);
        let host = hostname();
        std::thread::Builder::new()
            .name("audit-copies".into())
            .spawn(move || {
                let mut syslog = syslog.map(Syslog::new);
                for (time, line) in rx {
                    if stdout {
                        let mut out = std::io::stdout().lock();
                        let ok = out
                            .write_all(&line)
                            .and_then(|()| out.write_all(b"\n"))
                            .and_then(|()| out.flush());
                        count("stdout", ok.is_ok());
                    }
                    if let Some(s) = syslog.as_mut() {
                        let ok = s.send(&rfc5424(&time, &host, node_id, &line));
                        count("syslog", ok.is_ok());
                    }
                }
            })
            .ok()?;
        Some(Self { tx })
    }

    /// Queues a written line for the copies.
    pub fn send(&self, time: String, line: Vec<u8>) {
        if self.tx.try_send((time, line)).is_err() {
            metrics::counter!("coffer_audit_failures_total", "sink" => "copies").increment(1);
        }
    }
}

fn count(sink: &'static str, ok: bool) {
    if ok {
        metrics::counter!("coffer_audit_records_total", "sink" => sink).increment(1);
    } else {
        metrics::counter!("coffer_audit_failures_total", "sink" => sink).increment(1);
    }
}

/// This machine's host name (`-` when unknown), as syslog messages name it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && h.is_ascii())
        .unwrap_or_else(|| "-".to_owned())
}

/// A syslog connection, reconnected after a failure (blocking I/O: run it
/// on a thread of its own or in `spawn_blocking`).
pub struct Syslog {
    target: SyslogTarget,
    tcp: Option<TcpStream>,
}

impl Syslog {
    /// A connection to `target`, opened on the first send.
    pub fn new(target: SyslogTarget) -> Self {
        Self { target, tcp: None }
    }

    /// Sends one message (TCP: octet-counted, RFC 6587).
    pub fn send(&mut self, msg: &[u8]) -> std::io::Result<()> {
        match &self.target {
            SyslogTarget::Udp(addr) => {
                let s = UdpSocket::bind("0.0.0.0:0")?;
                s.send_to(msg, addr.as_str()).map(|_| ())
            }
            SyslogTarget::Unix(path) => {
                let s = UnixDatagram::unbound()?;
                s.send_to(msg, path).map(|_| ())
            }
            SyslogTarget::Tcp(addr) => {
                if self.tcp.is_none() {
                    let s = TcpStream::connect(addr.as_str())?;
                    s.set_write_timeout(Some(Duration::from_secs(2)))?;
                    self.tcp = Some(s);
                }
                let mut framed = format!("{} ", msg.len()).into_bytes();
                framed.extend_from_slice(msg);
                let r = self.tcp.as_mut().map_or(Ok(()), |s| s.write_all(&framed));
                if r.is_err() {
                    self.tcp = None;
                }
                r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_rfc5424_with_microsecond_time() {
        let m = rfc5424("2026-11-30T02:33:00.1234567Z", "n1", 1, b"{\"seq\":1}");
        let m = String::from_utf8(m).unwrap();
        assert!(
            m.starts_with("<86>1 2026-11-30T02:33:00.123456Z n1 coffer "),
            "{m}"
        );
        assert!(m.ends_with(" audit - {\"seq\":1}"), "{m}");
    }

    #[test]
    fn a_udp_collector_receives_each_record() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let target =
            SyslogTarget::parse(&format!("udp://{}", collector.local_addr().unwrap())).unwrap();
        let copies = Copies::start(false, Some(target), 7).unwrap();
        copies.send(
            "2026-11-30T02:33:00.1234567Z".into(),
            b"{\"seq\":1}".to_vec(),
        );
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(
            got.starts_with("<86>1 ") && got.ends_with("{\"seq\":1}"),
            "{got}"
        );
    }

    #[test]
    fn targets_parse_by_scheme() {
        assert_eq!(
            SyslogTarget::parse("tcp://127.0.0.1:601"),
            Ok(SyslogTarget::Tcp("127.0.0.1:601".into()))
        );
        assert_eq!(
            SyslogTarget::parse("unix:///dev/log"),
            Ok(SyslogTarget::Unix("/dev/log".into()))
        );
        assert!(SyslogTarget::parse("/dev/log").is_err());
    }
}
