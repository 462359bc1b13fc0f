//! TLS to source databases (`source.tls`): what every source shares. Each
//! mode becomes one [`Policy`], the same for Postgres and MySQL/MariaDB;
//! the trusted roots are read once, before connecting; a refused handshake
//! is told apart from a lost connection and explained with its fix.
//!
//! The modes are libpq's `sslmode`:
//! - `disable`: plaintext;
//! - `prefer`: TLS when the server offers it, plaintext otherwise; the
//!   certificate is not checked (as libpq);
//! - `require`: TLS or no connection; the certificate is not checked,
//!   unless `ca_file` is given: then the chain is (as libpq does);
//! - `verify-ca`: TLS, and the server's chain must lead to `ca_file`
//!   (required: any public CA would vouch for any name), whatever host name
//!   it names;
//! - `verify-full`: as `verify-ca`, and the certificate must name the host
//!   of the URL (DNS name or IP address); `ca_file` or the system's roots.
//!
//! Handshake signatures are checked in every mode: without a certificate
//! check the connection is encrypted but not authenticated.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, RootCertStore};

use crate::config::model::{TlsConfig, TlsMode};

/// What a connection does about TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Plaintext (`disable`).
    Plain,
    /// TLS when the server offers it, plaintext otherwise; the certificate
    /// is not checked (`prefer`).
    Opportunistic,
    /// TLS or no connection, with this check of the server's certificate.
    Required(Check),
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing: encryption only (`require` without `ca_file`).
    Nothing,
    /// The chain leads to a trusted root; any host name (`verify-ca`, and
    /// `require` with `ca_file`).
    Chain,
    /// The chain, and the certificate names the host of the URL
    /// (`verify-full`).
    ChainAndName,
}

impl Policy {
    /// The policy of `source.tls` (absent: `prefer`). Fails for
    /// `verify-ca` without `ca_file`.
    pub fn from_config(tls: Option<&TlsConfig>) -> Result<Policy, String> {
        Policy::from_mode(
            tls.map(|t| t.mode).unwrap_or_default(),
            tls.and_then(|t| t.ca_file.as_deref()),
        )
    }

    pub fn from_mode(mode: TlsMode, ca_file: Option<&str>) -> Result<Policy, String> {
        Ok(match (mode, ca_file) {
            (TlsMode::Disable, _) => Policy::Plain,
            (TlsMode::Prefer, _) => Policy::Opportunistic,
            (TlsMode::Require, None) => Policy::Required(Check::Nothing),
            // As libpq: `require` with a CA file checks the chain.
            (TlsMode::Require | TlsMode::VerifyCa, Some(_)) => Policy::Required(Check::Chain),
            // Against the system's roots it would accept any publicly
            // trusted certificate for any name.
            (TlsMode::VerifyCa, None) => {
                return Err(
                    "source.tls: `verify-ca` needs `ca_file` (the CA that signed the server's certificate); with the system's roots use `verify-full`".into(),
                );
            }
            (TlsMode::VerifyFull, _) => Policy::Required(Check::ChainAndName),
        })
    }

    /// The certificate check (none without required TLS).
    pub fn check(self) -> Check {
        match self {
            Policy::Plain | Policy::Opportunistic => Check::Nothing,
            Policy::Required(check) => check,
        }
    }
}

/// The roots a certificate chain must lead to.
#[derive(Debug)]
pub struct Roots {
    pub store: RootCertStore,
    /// The certificates behind `store` (those rustls could parse).
    pub certs: Vec<CertificateDer<'static>>,
    /// Where they come from, for messages.
    pub origin: String,
}

/// The certificates of `ca_file` (PEM), or the system's roots without one.
/// Fails when the file cannot be read or holds no certificate.
pub fn roots(ca_file: Option<&str>) -> Result<Roots, String> {
    let mut store = RootCertStore::empty();
    let mut certs = Vec::new();
    let origin = match ca_file {
        Some(path) => {
            let found = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("source.tls.ca_file `{path}`: {e}"))?;
            for cert in found {
                let cert = cert.map_err(|e| format!("source.tls.ca_file `{path}`: {e}"))?;
                store
                    .add(cert.clone())
                    .map_err(|e| format!("source.tls.ca_file `{path}`: {e}"))?;
                certs.push(cert);
            }
            if store.is_empty() {
                return Err(format!(
                    "source.tls.ca_file `{path}` holds no PEM certificate"
                ));
            }
            format!("`{path}`")
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot parse is skipped, as curl does.
                if store.add(cert.clone()).is_ok() {
                    certs.push(cert);
                }
            }
            if store.is_empty() {
                return Err(
                    "source.tls: no system CA certificates found; set `ca_file`".to_string()
                );
            }
            "the system's roots".to_string()
        }
    };
    Ok(Roots {
        store,
        certs,
        origin,
    })
}

/// The rustls error inside an I/O error, if a handshake refused the peer
/// (bad certificate, protocol mismatch) rather than the connection failing.
pub fn tls_refusal(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether an I/O error from a handshake is TLS refusing the peer.
pub fn is_tls_refusal(e: &std::io::Error) -> bool {
    tls_refusal(e).is_some()
}

/// Whether rustls refused a certificate only for its name (webpki checks
/// the chain before the name, so the chain was trusted).
pub fn is_name_mismatch(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// A refused handshake with `host`, in words an operator acts on: the
/// cause and its fix. `roots` says which roots the chain was checked
/// against.
pub fn explain_refusal(e: &rustls::Error, host: &str, roots: &str) -> String {
    match e {
        _ if is_name_mismatch(e) => format!(
            "the server's certificate does not name `{host}` (host name mismatch: {e}). Fix: put a name the certificate holds in the URL, or use `verify-ca`"
        ),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate is not signed by a CA of {roots} ({e}). Fix: set `ca_file` to the CA that signed it"
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!("the server's certificate is refused: {e}")
        }
        _ => format!("TLS handshake refused: {e}"),
    }
}

/// A name rustls can check a certificate against (DNS name or IP address),
/// from a certificate's subject alternative name as rustls-webpki prints it
/// in a name mismatch (`DnsName("db.example")`, `IpAddress(10.0.0.5)`). A
/// wildcard (`*.example`) gives a name under it. `None` for other kinds.
pub fn name_from_presented(presented: &str) -> Option<String> {
    let name = if let Some(dns) = presented
        .strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
    {
        match dns.strip_prefix("*.") {
            Some(parent) => format!("tidewater.{parent}"),
            None => dns.to_string(),
        }
    } else {
        let ip = presented
            .strip_prefix("IpAddress(")
            .and_then(|r| r.strip_suffix(')'))?;
        ip.parse::<std::net::IpAddr>().ok()?.to_string()
    };
    ServerName::try_from(name.as_str()).ok()?;
    Some(name)
}

/// The names a certificate refused for its name holds, as
/// [`name_from_presented`] reads them.
pub fn names_in_refused_certificate(e: &rustls::Error) -> Vec<String> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        }) => presented
            .iter()
            .filter_map(|p| name_from_presented(p))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_maps_to_one_policy() {
        let ca = Some("/ca.pem");
        let cases = [
            (TlsMode::Disable, None, Ok(Policy::Plain)),
            (TlsMode::Disable, ca, Ok(Policy::Plain)),
            (TlsMode::Prefer, None, Ok(Policy::Opportunistic)),
            // `prefer` never checks the certificate, as libpq.
            (TlsMode::Prefer, ca, Ok(Policy::Opportunistic)),
            (TlsMode::Require, None, Ok(Policy::Required(Check::Nothing))),
            (TlsMode::Require, ca, Ok(Policy::Required(Check::Chain))),
            (TlsMode::VerifyCa, ca, Ok(Policy::Required(Check::Chain))),
            (TlsMode::VerifyCa, None, Err("needs `ca_file`")),
            (
                TlsMode::VerifyFull,
                None,
                Ok(Policy::Required(Check::ChainAndName)),
            ),
            (
                TlsMode::VerifyFull,
                ca,
                Ok(Policy::Required(Check::ChainAndName)),
            ),
        ];
        for (mode, ca_file, want) in cases {
            let got = Policy::from_mode(mode, ca_file);
            match want {
                Ok(policy) => assert_eq!(got, Ok(policy), "{mode:?} {ca_file:?}"),
                Err(part) => {
                    let e = got.unwrap_err();
                    assert!(e.contains(part), "{mode:?} {ca_file:?}: {e}");
                }
            }
        }
        assert_eq!(Policy::from_config(None), Ok(Policy::Opportunistic));
        assert_eq!(Policy::Opportunistic.check(), Check::Nothing);
        assert_eq!(
            Policy::Required(Check::Chain).check(),
            Check::Chain,
            "the check of required TLS"
        );
    }

    #[test]
    fn names_are_read_from_a_name_mismatch() {
        assert_eq!(
            name_from_presented("DnsName(\"localhost\")").as_deref(),
            Some("localhost")
        );
        assert_eq!(
            name_from_presented("DnsName(\"*.db.example\")").as_deref(),
            Some("tidewater.db.example")
        );
        assert_eq!(
            name_from_presented("IpAddress(10.0.0.5)").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            name_from_presented("IpAddress(2001:db8::1)").as_deref(),
            Some("2001:db8::1")
        );
        for other in [
            "DirectoryName",
            "UniformResourceIdentifier(\"https://x\")",
            "Unsupported(0x88)",
            "DnsName(\"not a name\")",
            "IpAddress(nonsense)",
        ] {
            assert_eq!(name_from_presented(other), None, "{other}");
        }
        let mismatch =
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("127.0.0.1").unwrap().to_owned(),
                presented: vec!["DnsName(\"localhost\")".into(), "DirectoryName".into()],
            });
        assert!(is_name_mismatch(&mismatch));
        assert_eq!(names_in_refused_certificate(&mismatch), ["localhost"]);
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(!is_name_mismatch(&unknown));
        assert!(names_in_refused_certificate(&unknown).is_empty());
    }

    #[test]
    fn refusals_are_explained_with_their_fix() {
        let mismatch = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        let text = explain_refusal(&mismatch, "127.0.0.1", "`/ca.pem`");
        assert!(
            text.contains("does not name `127.0.0.1`") && text.contains("verify-ca"),
            "{text}"
        );
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let text = explain_refusal(&unknown, "db", "`/ca.pem`");
        assert!(
            text.contains("not signed by a CA of `/ca.pem`") && text.contains("ca_file"),
            "{text}"
        );
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(explain_refusal(&expired, "db", "x").contains("certificate is refused"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("empty.pem");
        std::fs::write(&file, "not a certificate\n").unwrap();
        let e = roots(Some(file.to_str().unwrap())).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = roots(Some("/nonexistent/ca.pem")).unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
