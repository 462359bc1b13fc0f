//! Connections to a MySQL/MariaDB server: every one tidewater makes (the
//! query and snapshot connections, the binlog dump, the preflight of
//! `tidewater check --connect`) comes from one [`Connections`], with the
//! URL's options and TLS as `source.tls` says ([`crate::sources::tls`]: the
//! same modes as for Postgres).
//!
//! mysql_async does the handshake with rustls; it asks for TLS (the
//! SSLRequest after the server's greeting) when its options hold
//! [`SslOpts`], and it cannot take tidewater's own certificate verifier.
//! Each [`Policy`] becomes mysql_async options like this:
//! - `Plain` (`disable`): no `SslOpts`;
//! - `Opportunistic` (`prefer`): `SslOpts` that accept any certificate.
//!   When the server's greeting does not offer TLS, mysql_async stops
//!   before sending anything (`NoClientSslFlagFromServer`) and the
//!   connection is made again without TLS;
//! - `Required(Nothing)` (`require`): `SslOpts` that accept any
//!   certificate; a server without TLS is an error;
//! - `Required(ChainAndName)` (`verify-full`): trusted roots are `ca_file`
//!   or the system's (mysql_async's built-in webpki roots switched off);
//!   the certificate must name the URL's host;
//! - `Required(Chain)` (`verify-ca`, `require` with `ca_file`): the same
//!   roots, any host name. mysql_async 0.37.1 cannot skip only the name
//!   check: its `skip_domain_validation` looks for `NotValidForName` in
//!   the error's text, which rustls 0.23 no longer prints
//!   (blackbeam/mysql_async#404; its fix, #408, is in no release up to
//!   0.37.1). So the
//!   first connection checks chain and name; when rustls refuses the
//!   certificate for its name only (webpki checks the chain first, so the
//!   chain was trusted), the connection is made again with the name
//!   checked set to one the certificate holds (`tls_hostname_override`).
//!   That connection checks the chain to `ca_file` and that name: it
//!   accepts a certificate of the CA, whatever host the URL names. The name
//!   is kept for the next connections.
//!
//! Handshake signatures are checked in every mode. A refused certificate,
//! or a server without TLS when TLS is required, is an error for an
//! operator (not retried) naming the host, the mode and the cause.

use std::sync::{Arc, Mutex};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, IoError, Opts, OptsBuilder, SslOpts, TlsError};
use rustls::pki_types::CertificateDer;

use crate::config::model::{MysqlSource, TlsMode};
use crate::sources::CaptureError;
use crate::sources::tls::{Check, Policy, explain_refusal, names_in_refused_certificate, roots};

/// URL parameters of mysql_async that would ask for TLS behind
/// `source.tls`'s back.
const URL_TLS_PARAMETERS: [&str; 4] = [
    "require_ssl",
    "verify_ca",
    "verify_identity",
    "built_in_roots",
];

/// Makes the connections of one source. Clones share what was learned
/// about the server (see the module doc).
#[derive(Clone)]
pub struct Connections {
    inner: Arc<Inner>,
}

struct Inner {
    /// The options of a first attempt.
    opts: Opts,
    mode: TlsMode,
    policy: Policy,
    /// Where the trusted roots come from, for messages.
    roots: String,
    /// The options of a second attempt (plaintext for `prefer` against a
    /// server without TLS; the name learned for `verify-ca`), tried first
    /// from then on.
    settled: Mutex<Option<Opts>>,
}

impl Connections {
    /// From `source.url`, `source.password` and `source.tls`. Fails when the
    /// URL is not valid, asks for TLS itself, or the CA file cannot be read.
    pub fn new(source: &MysqlSource) -> Result<Connections, CaptureError> {
        if let Ok(url) = url::Url::parse(&source.url)
            && let Some((name, _)) = url
                .query_pairs()
                .find(|(name, _)| URL_TLS_PARAMETERS.contains(&name.as_ref()))
        {
            return Err(CaptureError::Config(format!(
                "source.url: parameter `{name}` in the URL is not read; use `source.tls` for TLS"
            )));
        }
        let opts = Opts::from_url(&source.url)
            .map_err(|e| CaptureError::Config(format!("source.url: {e}")))?;
        let mut builder = OptsBuilder::from_opts(opts).prefer_socket(Some(false));
        if let Some(p) = &source.password {
            builder = builder.pass(Some(p.expose().to_string()));
        }
        let policy = Policy::from_config(source.tls.as_ref()).map_err(CaptureError::Config)?;
        let (certs, origin) = match policy.check() {
            Check::Nothing => (Vec::new(), String::new()),
            Check::Chain | Check::ChainAndName => {
                let roots = roots(source.tls.as_ref().and_then(|t| t.ca_file.as_deref()))
                    .map_err(CaptureError::Config)?;
                (roots.certs, roots.origin)
            }
        };
        // mysql_async builds its rustls configuration with the process's
        // default provider: make it ring, the one tidewater uses everywhere,
        // rather than whatever the dependency tree's rustls features select
        // (two would make rustls panic).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Connections {
            inner: Arc::new(Inner {
                opts: builder.ssl_opts(ssl_opts(policy, &certs)).into(),
                mode: source.tls.as_ref().map(|t| t.mode).unwrap_or_default(),
                policy,
                roots: origin,
                settled: Mutex::new(None),
            }),
        })
    }

    pub fn host(&self) -> &str {
        self.inner.opts.ip_or_hostname()
    }

    pub fn port(&self) -> u16 {
        self.inner.opts.tcp_port()
    }

    pub fn user(&self) -> &str {
        self.inner.opts.user().unwrap_or_default()
    }

    /// The configured `source.tls.mode`.
    pub fn mode(&self) -> TlsMode {
        self.inner.mode
    }

    /// A new connection, TLS as `source.tls` says.
    pub async fn connect(&self) -> Result<Conn, CaptureError> {
        let first = self.settled().unwrap_or_else(|| self.inner.opts.clone());
        let e = match Conn::new(first.clone()).await {
            Ok(conn) => return Ok(conn),
            Err(e) => e,
        };
        let Some(again) = self.second_attempt(&first, &e) else {
            return Err(self.error(e));
        };
        // What the first attempt learned holds whatever the second's
        // outcome (a refused login, say).
        if let Ok(mut settled) = self.inner.settled.lock() {
            *settled = Some(again.clone());
        }
        Conn::new(again).await.map_err(|e| self.error(e))
    }

    fn settled(&self) -> Option<Opts> {
        self.inner.settled.lock().ok().and_then(|s| s.clone())
    }

    /// The options of a second attempt after `e`, when the mode allows one:
    /// plaintext for `prefer` when the server offers no TLS; for a chain
    /// check without the name, a name the (trusted) certificate holds.
    fn second_attempt(&self, first: &Opts, e: &mysql_async::Error) -> Option<Opts> {
        let ssl = first.ssl_opts()?;
        match self.inner.policy {
            Policy::Opportunistic if no_tls_offered(e) => {
                Some(OptsBuilder::from_opts(first.clone()).ssl_opts(None).into())
            }
            Policy::Required(Check::Chain) => {
                let names = names_in_refused_certificate(tls_refusal(e)?);
                let tried = ssl.tls_hostname_override().unwrap_or(self.host());
                let name = names.into_iter().find(|n| n != tried)?;
                tracing::debug!(host = %self.host(), certificate_name = %name, "mysql: verify-ca checks the certificate for a name it holds");
                let ssl = ssl.clone().with_danger_tls_hostname_override(Some(name));
                Some(OptsBuilder::from_opts(first.clone()).ssl_opts(ssl).into())
            }
            _ => None,
        }
    }

    /// A failed connection as the operator needs to see it: TLS problems
    /// name the host, the mode and the cause, and are not retried.
    fn error(&self, e: mysql_async::Error) -> CaptureError {
        let at = format!(
            "TLS to the MySQL server at {}:{} (`source.tls.mode: {}`)",
            self.host(),
            self.port(),
            self.inner.mode.name()
        );
        if no_tls_offered(&e) {
            return CaptureError::Operator(format!(
                "{at}: the server does not offer TLS and the mode requires it. Fix: enable TLS on the server (`ssl_cert`, `ssl_key`) or set `source.tls.mode: prefer`"
            ));
        }
        if let Some(refusal) = tls_refusal(&e) {
            return CaptureError::Operator(format!(
                "{at}: {}",
                explain_refusal(refusal, self.host(), &self.inner.roots)
            ));
        }
        match e {
            mysql_async::Error::Io(IoError::Tls(tls)) => {
                CaptureError::Config(format!("{at}: {tls}"))
            }
            e => CaptureError::Mysql(e),
        }
    }
}

/// The TLS options of `policy`, trusting `certs` when it checks the chain.
fn ssl_opts(policy: Policy, certs: &[CertificateDer<'static>]) -> Option<SslOpts> {
    let trusting = || {
        SslOpts::default()
            .with_disable_built_in_roots(true)
            .with_root_certs(certs.iter().map(|c| c.as_ref().to_vec().into()).collect())
    };
    match policy {
        Policy::Plain => None,
        // The built-in roots stay only because mysql_async builds its
        // (unused) verifier from them, and an empty set fails.
        Policy::Opportunistic | Policy::Required(Check::Nothing) => {
            Some(SslOpts::default().with_danger_accept_invalid_certs(true))
        }
        // Without effect in mysql_async 0.37.1 (see the module doc), but
        // what the mode means.
        Policy::Required(Check::Chain) => Some(trusting().with_danger_skip_domain_validation(true)),
        Policy::Required(Check::ChainAndName) => Some(trusting()),
    }
}

fn no_tls_offered(e: &mysql_async::Error) -> bool {
    matches!(
        e,
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)
    )
}

/// The rustls error of a refused handshake.
fn tls_refusal(e: &mysql_async::Error) -> Option<&rustls::Error> {
    match e {
        mysql_async::Error::Io(IoError::Io(io)) => crate::sources::tls::tls_refusal(io),
        mysql_async::Error::Io(IoError::Tls(TlsError::Tls(e))) => Some(e),
        _ => None,
    }
}

/// The TLS protocol and cipher of `conn` as the server sees them; `None`
/// when it is plaintext.
pub async fn tls_in_use(conn: &mut Conn) -> Result<Option<(String, String)>, mysql_async::Error> {
    let rows: Vec<(String, String)> = conn
        .query("SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')")
        .await?;
    let value = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let cipher = value("Ssl_cipher");
    Ok((!cipher.is_empty()).then(|| (value("Ssl_version"), cipher)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str, tls: serde_json::Value) -> MysqlSource {
        serde_json::from_value(serde_json::json!({"url": url, "tls": tls, "tables": []})).unwrap()
    }

    #[test]
    fn each_policy_becomes_mysql_async_options() {
        let cert = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        assert_eq!(ssl_opts(Policy::Plain, &[]), None);
        for policy in [Policy::Opportunistic, Policy::Required(Check::Nothing)] {
            let o = ssl_opts(policy, &[]).unwrap();
            assert!(o.accept_invalid_certs(), "{policy:?}");
            assert!(o.root_certs().is_empty(), "{policy:?}");
        }
        let chain = ssl_opts(Policy::Required(Check::Chain), std::slice::from_ref(&cert)).unwrap();
        assert!(!chain.accept_invalid_certs());
        assert!(chain.skip_domain_validation());
        assert!(chain.disable_built_in_roots());
        assert_eq!(chain.root_certs(), [cert.to_vec().into()]);
        let full = ssl_opts(Policy::Required(Check::ChainAndName), &[cert]).unwrap();
        assert!(!full.accept_invalid_certs());
        assert!(!full.skip_domain_validation());
        assert!(full.disable_built_in_roots());
        assert_eq!(full.root_certs().len(), 1);
    }

    /// A stand-in for a server without TLS (the test MariaDB has TLS): to
    /// each connection it sends a greeting that does not offer TLS, then
    /// refuses the login. It reports, per connection, the capability flags
    /// of the client's answer, or `None` when the client left first.
    async fn server_without_tls(
        connections: usize,
    ) -> (String, tokio::task::JoinHandle<Vec<Option<u32>>>) {
        use mysql_common::constants::{CapabilityFlags, StatusFlags};
        use mysql_common::packets::HandshakePacket;
        use mysql_common::proto::MySerialize;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..connections {
                let (mut stream, _) = listener.accept().await.unwrap();
                let greeting = HandshakePacket::new(
                    10,
                    &b"8.0.99-stub"[..],
                    7,
                    *b"abcdefgh",
                    Some(&b"ijklmnopqrst\0"[..]),
                    CapabilityFlags::CLIENT_PROTOCOL_41
                        | CapabilityFlags::CLIENT_SECURE_CONNECTION
                        | CapabilityFlags::CLIENT_PLUGIN_AUTH
                        | CapabilityFlags::CLIENT_LONG_PASSWORD
                        | CapabilityFlags::CLIENT_TRANSACTIONS,
                    45,
                    StatusFlags::SERVER_STATUS_AUTOCOMMIT,
                    Some(&b"mysql_native_password"[..]),
                );
                let mut payload = Vec::new();
                greeting.serialize(&mut payload);
                let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
                packet.push(0);
                packet.extend(payload);
                stream.write_all(&packet).await.unwrap();
                let mut header = [0u8; 4];
                if stream.read_exact(&mut header).await.is_err() {
                    seen.push(None);
                    continue;
                }
                let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
                let mut answer = vec![0u8; len];
                stream.read_exact(&mut answer).await.unwrap();
                seen.push(Some(u32::from_le_bytes(answer[..4].try_into().unwrap())));
                let mut err = vec![0xff, 0x15, 0x04, b'#'];
                err.extend(b"28000stub refuses every login");
                let mut packet = (err.len() as u32).to_le_bytes()[..3].to_vec();
                packet.push(header[3] + 1);
                packet.extend(err);
                stream.write_all(&packet).await.unwrap();
            }
            seen
        });
        (addr, task)
    }

    const CLIENT_SSL: u32 = 0x800;

    #[tokio::test]
    async fn prefer_falls_back_to_plaintext_only_when_the_server_offers_no_tls() {
        let (addr, server) = server_without_tls(3).await;
        let url = format!("mysql://u:pw@{addr}");
        let prefer =
            Connections::new(&source(&url, serde_json::json!({"mode": "prefer"}))).unwrap();
        // First the TLS request, which the greeting makes the client drop
        // before sending anything; then a plaintext login.
        let e = prefer.connect().await.err().unwrap();
        assert!(e.to_string().contains("stub refuses every login"), "{e}");
        // The next connection goes plaintext at once.
        let e = prefer.connect().await.err().unwrap();
        assert!(e.to_string().contains("stub refuses every login"), "{e}");
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], None, "nothing sent on the TLS attempt");
        for answer in &seen[1..] {
            let flags = answer.unwrap();
            assert_eq!(flags & CLIENT_SSL, 0, "a plaintext login: {flags:x}");
        }
    }

    #[tokio::test]
    async fn required_tls_stops_at_a_server_without_it() {
        for tls in [
            serde_json::json!({"mode": "require"}),
            serde_json::json!({"mode": "verify-full"}),
        ] {
            let (addr, server) = server_without_tls(1).await;
            let url = format!("mysql://u:pw@{addr}");
            let e = Connections::new(&source(&url, tls.clone()))
                .unwrap()
                .connect()
                .await
                .err()
                .unwrap();
            assert!(!e.is_retryable(), "{tls}: {e}");
            let text = e.to_string();
            let mode = tls["mode"].as_str().unwrap();
            for part in [
                addr.as_str(),
                &format!("`source.tls.mode: {mode}`"),
                "does not offer TLS",
            ] {
                assert!(text.contains(part), "{tls}: {part:?} in {text}");
            }
            assert_eq!(
                server.await.unwrap(),
                [None],
                "{tls}: the password was not sent"
            );
        }
    }

    #[test]
    fn tls_asked_for_in_the_url_is_refused() {
        let e = Connections::new(&source(
            "mysql://u@db:3306?require_ssl=true",
            serde_json::json!({"mode": "disable"}),
        ))
        .err()
        .unwrap();
        assert!(e.to_string().contains("`require_ssl`"), "{e}");
        let plain = Connections::new(&source(
            "mysql://u@db:3307",
            serde_json::json!({"mode": "disable"}),
        ))
        .unwrap();
        assert_eq!(
            (plain.host(), plain.port(), plain.user()),
            ("db", 3307, "u")
        );
        assert_eq!(plain.inner.opts.ssl_opts(), None);
        let e = Connections::new(&source(
            "mysql://u@db",
            serde_json::json!({"mode": "verify-ca"}),
        ))
        .err()
        .unwrap();
        assert!(e.to_string().contains("needs `ca_file`"), "{e}");
    }
}
