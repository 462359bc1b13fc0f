//! The replication connection: the Postgres frontend/backend protocol on a
//! TCP socket, enough of it for a walsender (`replication=database`).
//!
//! tokio-postgres has no replication protocol (no CopyBoth), and the crates
//! that add it are forks or young. The part a walsender needs is small: the
//! startup and authentication exchange (cleartext, MD5 and SCRAM-SHA-256,
//! the last two through `postgres-protocol`, the same code tokio-postgres
//! uses), simple queries for the replication commands, and a CopyBoth
//! stream of `CopyData` frames. So it is written here, on `postgres-protocol`
//! for message serialization and authentication, and owns its buffers so
//! that reading is cancel safe.
//!
//! Session settings are sent in the startup packet so that the walsender's
//! text output (pgoutput sends values as text) is the one [`super::text`]
//! parses: ISO dates, UTC time zone, ISO 8601 intervals, hex bytea.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::TlsSettings;
use crate::sources::tls::{Policy, is_tls_refusal};

/// The byte stream under a connection: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Session settings every tidewater connection to Postgres uses, so values
/// come out in the one text form the parser reads.
pub const SESSION_SETTINGS: [(&str, &str); 6] = [
    ("DateStyle", "ISO, YMD"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "iso_8601"),
    ("bytea_output", "hex"),
    ("extra_float_digits", "1"),
    ("lc_monetary", "C"),
];

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("server error {code}: {message}")]
    Server { code: String, message: String },
    #[error("authentication: {0}")]
    Auth(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("the connection was closed by the server")]
    Closed,
}

impl WireError {
    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&str> {
        match self {
            WireError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub application_name: String,
    pub tls: TlsSettings,
}

impl std::fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

impl ConnectParams {
    /// Parses `postgres://user[:password]@host[:port]/database`. A password
    /// given separately wins over one in the URL.
    pub fn parse(url: &str, password: Option<&str>) -> Result<ConnectParams, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "scheme `{}` is not postgres:// or postgresql://",
                parsed.scheme()
            ));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let user = percent(parsed.username());
        if user.is_empty() {
            return Err("the URL has no user (postgres://user@host/db)".into());
        }
        let database = percent(parsed.path().trim_start_matches('/'));
        if database.is_empty() {
            return Err("the URL has no database (postgres://user@host/db)".into());
        }
        let password = password
            .map(str::to_string)
            .or_else(|| parsed.password().map(percent));
        Ok(ConnectParams {
            host,
            port: parsed.port().unwrap_or(5432),
            user,
            password,
            database,
            application_name: "tidewater".into(),
            tls: TlsSettings::disabled(),
        })
    }

    /// A tokio-postgres configuration for the same server, with the same
    /// session settings (catalog queries and snapshot reads).
    pub fn sql_config(&self) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.database)
            .application_name(&self.application_name)
            .ssl_mode(self.tls.sql_mode())
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        let options: Vec<String> = SESSION_SETTINGS
            .iter()
            .map(|(k, v)| format!("-c {k}={}", v.replace(' ', "\\ ")))
            .collect();
        cfg.options(options.join(" "));
        cfg
    }
}

fn percent(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Asks for TLS (SSLRequest) unless it is disabled, and wraps the stream
/// when the server agrees. A refusal is fine only for `prefer`.
async fn negotiate_tls(
    params: &ConnectParams,
    mut tcp: TcpStream,
) -> Result<Box<dyn Io>, WireError> {
    if params.tls.policy == Policy::Plain {
        return Ok(Box::new(tcp));
    }
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await?;
    let answer = tcp.read_u8().await?;
    match answer {
        b'S' => {
            let tls = params.tls.handshake(&params.host, tcp).await.map_err(|e| {
                // A certificate or protocol refusal needs an operator; a
                // broken connection is retried.
                if is_tls_refusal(&e) {
                    WireError::Tls(format!("TLS handshake with {}: {e}", params.host))
                } else {
                    WireError::Io(e)
                }
            })?;
            Ok(Box::new(tls))
        }
        b'N' if params.tls.policy == Policy::Opportunistic => Ok(Box::new(tcp)),
        b'N' => Err(WireError::Tls(format!(
            "the server at {}:{} does not accept TLS and `source.tls.mode` requires it",
            params.host, params.port
        ))),
        other => Err(WireError::Protocol(format!(
            "unexpected answer `{}` to the TLS request",
            char::from(other)
        ))),
    }
}

/// One backend message: its tag and body.
struct Frame {
    tag: u8,
    body: Bytes,
}

/// A connection to a walsender.
pub struct ReplicationConnection {
    stream: Box<dyn Io>,
    read: BytesMut,
    write: BytesMut,
    /// The server's `server_version_num`.
    pub server_version: u32,
}

/// What arrives on the CopyBoth stream.
#[derive(Debug)]
pub enum CopyMessage {
    /// `w`: WAL data starting at `start`; `data` is one pgoutput message.
    XLogData { start: u64, end: u64, data: Bytes },
    /// `k`: the server's WAL end, and whether it wants an answer now.
    Keepalive { wal_end: u64, reply: bool },
}

impl ReplicationConnection {
    pub async fn connect(params: &ConnectParams) -> Result<ReplicationConnection, WireError> {
        let addr = format!("{}:{}", params.host, params.port);
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr))
            .await
            .map_err(|_| WireError::Connect {
                addr: addr.clone(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
            })?
            .map_err(|source| WireError::Connect {
                addr: addr.clone(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let stream = tokio::time::timeout(Duration::from_secs(10), negotiate_tls(params, stream))
            .await
            .map_err(|_| {
                WireError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer to the TLS request",
                ))
            })??;
        let mut conn = ReplicationConnection {
            stream,
            read: BytesMut::with_capacity(1 << 16),
            write: BytesMut::with_capacity(1024),
            server_version: 0,
        };
        let mut startup: Vec<(&str, &str)> = vec![
            ("user", &params.user),
            ("database", &params.database),
            ("replication", "database"),
            ("application_name", &params.application_name),
            ("client_encoding", "UTF8"),
        ];
        startup.extend(SESSION_SETTINGS.iter().copied());
        frontend::startup_message(startup, &mut conn.write)?;
        conn.flush().await?;
        conn.authenticate(params).await?;
        // ParameterStatus, BackendKeyData, ... until ReadyForQuery.
        loop {
            let frame = conn.frame().await?;
            match frame.tag {
                b'Z' => break,
                b'S' => {
                    let mut parts = frame.body.split(|b| *b == 0);
                    if parts.next() == Some(b"server_version".as_slice()) {
                        let text = String::from_utf8_lossy(parts.next().unwrap_or_default());
                        conn.server_version = version_num(&text);
                    }
                }
                b'E' => return Err(server_error(&frame.body)),
                _ => {}
            }
        }
        Ok(conn)
    }

    async fn authenticate(&mut self, params: &ConnectParams) -> Result<(), WireError> {
        let password = || {
            params.password.clone().ok_or_else(|| {
                WireError::Auth(format!(
                    "the server asks for a password for user `{}` and none is configured",
                    params.user
                ))
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            let frame = self.frame().await?;
            match frame.tag {
                b'R' => {}
                b'E' => return Err(server_error(&frame.body)),
                other => {
                    return Err(WireError::Protocol(format!(
                        "expected authentication, got message `{}`",
                        char::from(other)
                    )));
                }
            }
            let mut body = frame.body;
            if body.len() < 4 {
                return Err(WireError::Protocol("short authentication message".into()));
            }
            match body.get_i32() {
                0 => return Ok(()),
                3 => {
                    frontend::password_message(password()?.as_bytes(), &mut self.write)?;
                    self.flush().await?;
                }
                5 => {
                    let salt: [u8; 4] = body
                        .get(..4)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| WireError::Protocol("short MD5 salt".into()))?;
                    let hash = postgres_protocol::authentication::md5_hash(
                        params.user.as_bytes(),
                        password()?.as_bytes(),
                        salt,
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.write)?;
                    self.flush().await?;
                }
                10 => {
                    let mechanisms: Vec<&[u8]> =
                        body.split(|b| *b == 0).filter(|m| !m.is_empty()).collect();
                    if !mechanisms.contains(&b"SCRAM-SHA-256".as_slice()) {
                        return Err(WireError::Auth(
                            "the server offers no SASL mechanism tidewater knows (SCRAM-SHA-256)"
                                .into(),
                        ));
                    }
                    let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut self.write)?;
                    self.flush().await?;
                    scram = Some(s);
                }
                11 => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| WireError::Protocol("SASL continue before start".into()))?;
                    s.update(&body)
                        .map_err(|e| WireError::Auth(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut self.write)?;
                    self.flush().await?;
                }
                12 => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| WireError::Protocol("SASL final before start".into()))?;
                    s.finish(&body)
                        .map_err(|e| WireError::Auth(format!("SCRAM server proof: {e}")))?;
                }
                other => {
                    return Err(WireError::Auth(format!(
                        "authentication method {other} is not supported (use scram-sha-256, md5, password or trust)"
                    )));
                }
            }
        }
    }

    async fn flush(&mut self) -> Result<(), WireError> {
        self.stream.write_all(&self.write).await?;
        // TLS: `write_all` may leave the record in rustls's buffer.
        self.stream.flush().await?;
        self.write.clear();
        Ok(())
    }

    /// The next backend message.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes read stay in the buffer until a whole frame is there.
    async fn frame(&mut self) -> Result<Frame, WireError> {
        loop {
            if let Some(frame) = self.parse_frame()? {
                return Ok(frame);
            }
            let n = self.stream.read_buf(&mut self.read).await?;
            if n == 0 {
                return Err(WireError::Closed);
            }
        }
    }

    fn parse_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let Some(header) = self.read.get(..5) else {
            return Ok(None);
        };
        let tag = header.first().copied().unwrap_or_default();
        let len_bytes: [u8; 4] = header
            .get(1..5)
            .and_then(|s| s.try_into().ok())
            .unwrap_or_default();
        let len = i32::from_be_bytes(len_bytes);
        if len < 4 {
            return Err(WireError::Protocol(format!("message length {len}")));
        }
        let total = 1 + len as usize;
        if self.read.len() < total {
            self.read.reserve(total - self.read.len());
            return Ok(None);
        }
        let mut frame = self.read.split_to(total);
        frame.advance(5);
        Ok(Some(Frame {
            tag,
            body: frame.freeze(),
        }))
    }

    /// Runs a simple query and returns its rows as text (NULL as `None`).
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WireError> {
        frontend::query(sql, &mut self.write)?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let frame = self.frame().await?;
            match frame.tag {
                b'D' => rows.push(data_row(&frame.body)?),
                b'E' => error = Some(server_error(&frame.body)),
                b'Z' => break,
                _ => {}
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// Sends `START_REPLICATION` and waits for the CopyBoth answer.
    pub async fn start_replication(
        &mut self,
        slot: &str,
        start: u64,
        options: &[(&str, &str)],
    ) -> Result<(), WireError> {
        let opts: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("\"{k}\" '{}'", v.replace('\'', "''")))
            .collect();
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {} ({})",
            quote_ident(slot),
            lsn_text(start),
            opts.join(", ")
        );
        frontend::query(&sql, &mut self.write)?;
        self.flush().await?;
        loop {
            let frame = self.frame().await?;
            match frame.tag {
                b'W' => return Ok(()),
                b'E' => return Err(server_error(&frame.body)),
                b'N' | b'S' => {}
                other => {
                    return Err(WireError::Protocol(format!(
                        "unexpected message `{}` after START_REPLICATION",
                        char::from(other)
                    )));
                }
            }
        }
    }

    /// The next message of the replication stream.
    ///
    /// # Cancel safety
    /// Cancel safe (see [`Self::frame`]).
    pub async fn next_copy(&mut self) -> Result<CopyMessage, WireError> {
        loop {
            let frame = self.frame().await?;
            match frame.tag {
                b'd' => {
                    let mut body = frame.body;
                    if body.is_empty() {
                        continue;
                    }
                    match body.get_u8() {
                        b'w' if body.len() >= 24 => {
                            let start = body.get_u64();
                            let end = body.get_u64();
                            let _time = body.get_i64();
                            return Ok(CopyMessage::XLogData {
                                start,
                                end,
                                data: body,
                            });
                        }
                        b'k' if body.len() >= 17 => {
                            let wal_end = body.get_u64();
                            let _time = body.get_i64();
                            let reply = body.get_u8() == 1;
                            return Ok(CopyMessage::Keepalive { wal_end, reply });
                        }
                        other => {
                            return Err(WireError::Protocol(format!(
                                "unknown replication message `{}`",
                                char::from(other)
                            )));
                        }
                    }
                }
                b'E' => return Err(server_error(&frame.body)),
                b'c' => return Err(WireError::Closed),
                b'N' => {}
                other => {
                    return Err(WireError::Protocol(format!(
                        "unexpected message `{}` in the replication stream",
                        char::from(other)
                    )));
                }
            }
        }
    }

    /// A standby status update: everything up to `flush` is durable on our
    /// side (the slot's `confirmed_flush_lsn` moves there).
    pub async fn send_status(&mut self, flush: u64, reply: bool) -> Result<(), WireError> {
        let mut body = BytesMut::with_capacity(34);
        body.put_u8(b'r');
        body.put_u64(flush);
        body.put_u64(flush);
        body.put_u64(flush);
        body.put_i64(pg_now_micros());
        body.put_u8(u8::from(reply));
        frontend::CopyData::new(body.freeze())?.write(&mut self.write);
        self.flush().await
    }
}

/// Microseconds since 2000-01-01, the Postgres epoch.
pub fn pg_now_micros() -> i64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    unix - PG_EPOCH_OFFSET_MICROS
}

/// 2000-01-01 minus 1970-01-01, in microseconds.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

fn data_row(body: &[u8]) -> Result<Vec<Option<String>>, WireError> {
    let mut buf = body;
    let short = || WireError::Protocol("short data row".into());
    if buf.len() < 2 {
        return Err(short());
    }
    let n = buf.get_i16();
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        if buf.len() < 4 {
            return Err(short());
        }
        let len = buf.get_i32();
        if len < 0 {
            out.push(None);
            continue;
        }
        let value = buf.get(..len as usize).ok_or_else(short)?;
        out.push(Some(String::from_utf8_lossy(value).into_owned()));
        buf.advance(len as usize);
    }
    Ok(out)
}

fn server_error(body: &[u8]) -> WireError {
    let mut code = String::new();
    let mut message = String::new();
    let mut detail = String::new();
    let mut hint = String::new();
    for field in body.split(|b| *b == 0) {
        let Some((&kind, text)) = field.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(text).into_owned();
        match kind {
            b'C' => code = text,
            b'M' => message = text,
            b'D' => detail = text,
            b'H' => hint = text,
            _ => {}
        }
    }
    if !detail.is_empty() {
        message = format!("{message} ({detail})");
    }
    if !hint.is_empty() {
        message = format!("{message}; hint: {hint}");
    }
    WireError::Server { code, message }
}

fn version_num(text: &str) -> u32 {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    major * 10_000 + minor
}

/// `X/Y` text of an LSN.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Parses `X/Y`.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= 0xffff_ffff && lo <= 0xffff_ffff).then_some((hi << 32) | lo)
}

/// `"name"` with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B_3748));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(lsn_text(0x1_0000_00A0), "1/A0");
        assert_eq!(parse_lsn("x/1"), None);
        assert_eq!(parse_lsn("16B3748"), None);
    }

    #[test]
    fn urls_parse_without_leaking_the_password() {
        let p = ConnectParams::parse("postgres://cdc:s%40cret@db.local:6543/shop", None).unwrap();
        assert_eq!(
            (
                p.host.as_str(),
                p.port,
                p.user.as_str(),
                p.database.as_str()
            ),
            ("db.local", 6543, "cdc", "shop")
        );
        assert_eq!(p.password.as_deref(), Some("s@cret"));
        assert!(!format!("{p:?}").contains("s@cret"));
        let p = ConnectParams::parse("postgres://cdc@h/db", Some("x")).unwrap();
        assert_eq!(p.password.as_deref(), Some("x"));
        assert!(ConnectParams::parse("mysql://cdc@h/db", None).is_err());
        assert!(ConnectParams::parse("postgres://h/db", None).is_err());
        assert!(ConnectParams::parse("postgres://u@h", None).is_err());
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(version_num("15.18 (Debian 15.18-0+deb12u1)"), 150_018);
    }
}
