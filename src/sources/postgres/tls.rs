//! TLS to Postgres (`source.tls`), with rustls (already in the binary for
//! S3), for both the replication connection ([`super::wire`]) and the SQL
//! connections (tokio-postgres). What each mode means is shared with the
//! other sources ([`crate::sources::tls`]); here it becomes a rustls
//! configuration whose verifier does exactly that check.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::model::TlsConfig;
use crate::sources::tls::{Check, Policy, is_name_mismatch, roots};

/// The TLS side of a Postgres connection.
#[derive(Clone)]
pub struct TlsSettings {
    pub policy: Policy,
    config: Option<Arc<ClientConfig>>,
}

impl TlsSettings {
    /// Plaintext.
    pub fn disabled() -> TlsSettings {
        TlsSettings {
            policy: Policy::Plain,
            config: None,
        }
    }

    /// From the pipeline's `source.tls` (absent: `prefer`). Fails when the
    /// CA file cannot be read or holds no certificate.
    pub fn from_config(tls: Option<&TlsConfig>) -> Result<TlsSettings, String> {
        let policy = Policy::from_config(tls)?;
        if policy == Policy::Plain {
            return Ok(TlsSettings::disabled());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = match policy.check() {
            Check::Nothing => None,
            Check::Chain | Check::ChainAndName => Some(
                WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots(tls.and_then(|t| t.ca_file.as_deref()))?.store),
                    provider.clone(),
                )
                .build()
                .map_err(|e| format!("source.tls: {e}"))?,
            ),
        };
        let verifier = Arc::new(Verifier {
            provider: provider.clone(),
            webpki,
            any_name: policy.check() == Check::Chain,
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("source.tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(TlsSettings {
            policy,
            config: Some(Arc::new(config)),
        })
    }

    /// tokio-postgres's own mode: it asks for TLS and handles the refusal.
    pub fn sql_mode(&self) -> tokio_postgres::config::SslMode {
        match self.policy {
            Policy::Plain => tokio_postgres::config::SslMode::Disable,
            Policy::Opportunistic => tokio_postgres::config::SslMode::Prefer,
            Policy::Required(_) => tokio_postgres::config::SslMode::Require,
        }
    }

    /// Wraps `stream` in TLS for `host`.
    pub async fn handshake<S>(
        &self,
        host: &str,
        stream: S,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self
            .config
            .clone()
            .ok_or_else(|| std::io::Error::other("TLS is disabled for this connection"))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{host}` is not a host name for TLS: {e}"),
            )
        })?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
    }
}

/// The server check of each mode: none (`prefer`, `require` without a CA
/// file: encryption only), the chain only (`verify-ca`), or chain and name
/// (`verify-full`). Handshake signatures are checked in every mode.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    /// `None`: the certificate is not checked.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// Accept a certificate that names another host.
    any_name: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain before the name: a name error means the
        // chain was trusted.
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(e) if self.any_name && is_name_mismatch(&e) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// tokio-postgres's TLS hook over [`TlsSettings`].
#[derive(Clone)]
pub struct MakeRustls(pub TlsSettings);

pub struct RustlsConnect {
    settings: TlsSettings,
    host: String,
}

/// A TLS stream as tokio-postgres wants it (no channel binding: SCRAM runs
/// without `-PLUS`).
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, std::io::Error> {
        Ok(RustlsConnect {
            settings: self.0.clone(),
            host: domain.to_string(),
        })
    }
}

impl<S> tokio_postgres::tls::TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.settings.handshake(&self.host, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
