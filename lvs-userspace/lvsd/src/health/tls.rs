//! SSL_GET's TLS: rustls with ring. keepalived never asks OpenSSL to
//! verify the server (check_ssl.c sets no SSL_VERIFY_PEER, even when its
//! `SSL` block names a CA), so neither does this: a health check asks
//! whether the server answers, not whom to trust. The handshake's
//! signature is still checked against the certificate's key, as TLS
//! requires. SNI is sent only when configured (keepalived's `enable_sni`).

use std::sync::{Arc, OnceLock};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::probe::ProbeFailure;
use lvs_state::model::Endpoint;

/// Accepts any certificate; checks handshake signatures with the
/// provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One client configuration for every SSL_GET (TLS 1.2 and 1.3).
fn connector() -> TlsConnector {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        // ring, deprecated by rustls for lacking post-quantum key exchange,
        // which a health check's handshake does without.
        #[allow(deprecated)]
        let provider = Arc::new(ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Arc::new(config)
    });
    TlsConnector::from(config.clone())
}

/// The TLS handshake over `stream`, sending `sni` as the server name if
/// given. Without one the server is named by its address, which rustls
/// never sends as SNI.
pub async fn handshake(
    stream: TcpStream,
    addr: Endpoint,
    sni: Option<&str>,
) -> Result<TlsStream<TcpStream>, ProbeFailure> {
    let failed = |source| ProbeFailure::Tls { addr, source };
    let name = match sni {
        Some(name) => ServerName::try_from(name.to_string()).map_err(|e| {
            failed(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("SNI {name:?}: {e}"),
            ))
        })?,
        None => ServerName::IpAddress(addr.addr.into()),
    };
    connector().connect(name, stream).await.map_err(failed)
}
