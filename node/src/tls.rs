//! TLS: certificate generation (cluster CA, node certs) and rustls/tonic configs.
