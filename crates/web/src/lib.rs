//! # regiosync-web
//!
//! The web app of a regiosync node, in Dutch: the staff of a party sign in to their
//! own node over HTTPS and see the region, its plans and the dossiers their role
//! may open. `regiosync up` serves it in the same process as the sync service,
//! sharing its [`Node`](regiosync_node::Node) handle, on `https://127.0.0.1:8443` by
//! default, with a certificate generated at first start ([`tls`]).
//!
//! - [`tls`]: the certificate (generated or given) and its fingerprint.
//! - [`server`]: the TLS accept loop (bounded, timed, graceful stop).
//! - [`router`] and [`AppState`]: the routes, security headers, errors.
//! - [`auth`]: sessions, the role a handler requires ([`auth::Allowed`]), CSRF.
//! - [`throttle`]: sign-in throttling.
//! - [`live`]: live plan pages (server-sent events on the node's change channel).
//!
//! Staff accounts live in the node's store (`regiosync user add`, see
//! [`regiosync_node::staff`]). docs/WEB.md describes pages, roles and measures.
//!
//! ```no_run
//! use std::sync::Arc;
//! use regiosync_node::Node;
//! use regiosync_web::{AppState, WebConfig, router, tls};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! tls::install_crypto_provider();
//! let dir = std::path::Path::new("/srv/regiosync");
//! let node = Arc::new(tokio::sync::Mutex::new(Node::open(dir)?));
//! let setup = tls::setup(&tls::CertSource::Generated { dir: dir.to_owned() })?;
//! println!("certificate SHA-256 {}", setup.fingerprint);
//! let app = router(AppState::new(node, WebConfig::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let cancel = tokio_util::sync::CancellationToken::new();
//! regiosync_web::server::serve(listener, setup.config, app, cancel).await;
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

mod app;
pub mod auth;
mod beheer;
mod dossiers;
mod error;
pub mod form;
pub mod live;
mod pages;
mod plans;
pub mod server;
mod templates;
pub mod throttle;
pub mod tls;

pub use app::{AppState, WebConfig, router};
pub use error::WebError;

/// The default address of the web app: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
