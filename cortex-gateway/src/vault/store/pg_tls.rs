//! TLS for the PostgreSQL connection, with the gateway's own stack
//! (rustls on aws-lc-rs, the platform's trust roots).
//!
//! tokio-postgres takes its TLS through two small traits; this is that
//! glue over tokio-rustls. The server certificate and host name are
//! verified by rustls. SCRAM channel binding (`tls-server-end-point`) is
//! not offered: it would need the certificate's signature hash, and the
//! verified TLS session already rules out the man in the middle it guards
//! against. `channel_binding=require` in the URL therefore fails to
//! connect.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::{
    Socket,
    tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream},
};

use crate::vault::VaultError;

/// Makes a TLS connector per host.
#[derive(Clone)]
pub(crate) struct RustlsConnect(Arc<rustls::ClientConfig>);

impl RustlsConnect {
    /// Trusting exactly `roots`, or the platform's when there are none.
    pub(crate) fn for_roots(
        roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Self, VaultError> {
        if roots.is_empty() {
            Self::platform()
        } else {
            Self::with_roots(roots)
        }
    }

    /// Trusting the platform's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` on
    /// Linux add a private authority).
    pub(crate) fn platform() -> Result<Self, VaultError> {
        use rustls_platform_verifier::BuilderVerifierExt as _;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| VaultError::Storage(format!("cannot load the TLS trust roots: {e}")))?
        .with_no_client_auth();
        Ok(Self(Arc::new(config)))
    }

    /// Trusting exactly `roots` (a private authority).
    pub(crate) fn with_roots(
        roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Self, VaultError> {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store
                .add(root.clone())
                .map_err(|e| VaultError::Storage(format!("a TLS root was refused: {e}")))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| VaultError::Storage(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
        Ok(Self(Arc::new(config)))
    }
}

impl MakeTlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnector;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnector> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnector {
            config: self.0.clone(),
            name,
        })
    }
}

/// Connects one socket.
pub(crate) struct RustlsConnector {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for RustlsConnector {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, socket)
                .await?;
            Ok(RustlsStream(Box::new(stream)))
        })
    }
}

/// An established TLS connection.
pub(crate) struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}
