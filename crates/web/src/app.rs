//! The router, its shared state, and what every response passes through: security
//! headers, no caching of pages, the body limit, and errors as JSON for JSON clients
//! or a sign-in redirect for a browser that is not signed in.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use regiosync_node::Node;
use regiosync_node::staff::SessionLimits;
use tokio::sync::{Mutex, Semaphore};

use crate::error::{ErrorInfo, WebError, see_other};
use crate::throttle::{Throttle, ThrottleLimits};
use crate::{pages, plans};

/// Settings of the web app.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Session idle timeout and absolute lifetime.
    pub session: SessionLimits,
    /// Sign-in throttling.
    pub throttle: ThrottleLimits,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Send `Strict-Transport-Security` (only with a real certificate: a browser
    /// would otherwise pin a self-signed one's warning to the host name).
    pub hsts: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            session: SessionLimits::default(),
            throttle: ThrottleLimits::default(),
            max_body: 256 * 1024,
            hsts: false,
        }
    }
}

/// Password checks run at once (each takes 19 MiB and tens of milliseconds).
const HASHING_SLOTS: usize = 2;

struct Inner {
    node: Arc<Mutex<Node>>,
    config: WebConfig,
    throttle: std::sync::Mutex<Throttle>,
    hashing: Semaphore,
    streams: crate::live::Streams,
}

/// What every handler shares: the node (the same handle the sync service uses), the
/// settings, the sign-in throttle.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// State over a node shared with the sync service.
    pub fn new(node: Arc<Mutex<Node>>, config: WebConfig) -> Self {
        let throttle = Throttle::new(config.throttle);
        Self(Arc::new(Inner {
            node,
            config,
            throttle: std::sync::Mutex::new(throttle),
            hashing: Semaphore::new(HASHING_SLOTS),
            streams: crate::live::Streams::default(),
        }))
    }

    /// The settings.
    pub fn config(&self) -> &WebConfig {
        &self.0.config
    }

    /// Runs `f` on the node on a blocking thread (SQLite calls block). `f` returns
    /// a [`WebError`] (a `NodeError` converts with `?`; it is boxed there, as it is
    /// large).
    pub async fn with_node<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node) -> Result<T, WebError> + Send + 'static,
    ) -> Result<T, WebError> {
        let node = self.0.node.clone();
        tokio::task::spawn_blocking(move || {
            let mut n = node.blocking_lock();
            f(&mut n)
        })
        .await
        .map_err(|e| WebError::Internal(format!("a node task failed: {e}")))?
    }

    /// Runs a CPU-heavy password check on a blocking thread, at most
    /// [`HASHING_SLOTS`] at once.
    pub(crate) async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WebError> {
        let _slot = self
            .0
            .hashing
            .acquire()
            .await
            .map_err(|_| WebError::Internal("stopping".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| WebError::Internal(format!("a hashing task failed: {e}")))
    }

    /// The open live streams ([`crate::live`]).
    pub(crate) fn streams(&self) -> &crate::live::Streams {
        &self.0.streams
    }

    /// The sign-in throttle.
    pub(crate) fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.0.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The web app's routes with every layer.
pub fn router(state: AppState) -> Router {
    let max_body = state.config().max_body;
    Router::new()
        .route("/", get(|| async { see_other("/overzicht") }))
        .route("/inloggen", get(pages::login_form).post(pages::login))
        .route("/uitloggen", post(pages::logout))
        .route(
            "/wachtwoord",
            get(pages::password_form).post(pages::change_password),
        )
        .route("/overzicht", get(pages::overview))
        .route("/plannen", get(pages::plans))
        .route("/plannen/{id}", get(plans::show))
        .merge(plans::routes())
        .route("/plannen/{id}/events", get(crate::live::events))
        .merge(crate::dossiers::routes())
        .merge(crate::beheer::routes())
        .route("/assets/app.css", get(pages::css))
        .route("/assets/live.js", get(crate::live::script))
        .fallback(|| async { WebError::NotFound })
        .layer(axum::middleware::from_fn_with_state(state.clone(), finish))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
        .with_state(state)
}

/// The Content-Security-Policy: only this origin's styles and scripts (files, never
/// inline), connections (the live stream, the page refetch) only to this origin, no
/// frames, forms only to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every response; errors as JSON for clients that ask for JSON;
/// a browser that is not signed in is sent to the sign-in page.
async fn finish(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    // A live stream (EventSource) cannot follow a redirect to a page: it gets 401.
    let wants_stream = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    let is_asset = req.uri().path().starts_with("/assets/");
    let mut resp = next.run(req).await;
    if let Some(info) = resp.extensions().get::<ErrorInfo>().cloned() {
        if wants_json {
            let body = serde_json::json!({
                "error": { "status": info.status.as_u16(), "code": info.code, "message": info.message }
            });
            let mut json = (info.status, axum::Json(body)).into_response();
            if let Some(r) = resp.headers().get(header::RETRY_AFTER) {
                json.headers_mut().insert(header::RETRY_AFTER, r.clone());
            }
            resp = json;
        } else if info.code == "not_signed_in" && is_get && !wants_stream {
            resp = see_other("/inloggen");
        }
    } else if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // From the body limit layer (a body longer than it said, or than allowed).
        resp = WebError::TooLarge.into_response();
    }
    let h = resp.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CSP);
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Not `no-referrer`: with it, browsers send `Origin: null` on form posts, and the
    // origin check could not tell our own forms from an opaque origin's.
    set(header::REFERRER_POLICY, "same-origin");
    set(
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    );
    if is_asset {
        set(header::CACHE_CONTROL, "private, max-age=300");
    } else {
        set(header::CACHE_CONTROL, "no-store");
        set(header::PRAGMA, "no-cache");
    }
    if state.config().hsts {
        set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    resp
}
