//! Who is asking, and may they: the session cookie, the role a handler requires,
//! and the CSRF checks of every state-changing request.
//!
//! CSRF is hand-written (no crate): the checks are few and must be bound to our own
//! sessions in the store. Three layers, each enough on its own against a classic
//! cross-site form post: the cookie is `SameSite=Strict`; a request whose `Origin`
//! names another origin or whose `Sec-Fetch-Site` says `cross-site`/`same-site` is
//! refused; and the synchronizer token (random, 256 bits, stored with the session)
//! must come back in the form field `csrf` or the `X-CSRF-Token` header, compared in
//! constant time. The sign-in form, before there is a session, uses the same token
//! scheme with a short-lived pre-session cookie (double submit).

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use regiosync_node::staff::{StaffRole, StaffSession};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::error::WebError;
use crate::form::Fields;

/// The session cookie. `__Host-`: the browser accepts it only with `Secure`, from
/// this host, for path `/`, so no other site or subdomain can set or shadow it.
pub const SESSION_COOKIE: &str = "__Host-regiosync";
/// The pre-session cookie of the sign-in form (its CSRF token).
pub const LOGIN_COOKIE: &str = "__Host-regiosync-login";

/// The `Set-Cookie` value of a session cookie (no `Max-Age`: it ends with the
/// browser; the server ends it sooner by its own limits).
pub(crate) fn session_cookie(token: &str) -> String {
    format!("{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that deletes a cookie.
pub(crate) fn expired_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The `Set-Cookie` value of the sign-in form's pre-session cookie.
pub(crate) fn login_cookie(token: &str) -> String {
    format!("{LOGIN_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=3600")
}

/// A cookie's value from the request (the first one of that name).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Equal in constant time (for tokens of the same public length).
pub(crate) fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The client's address (from the TLS server; unspecified when there is none, as in
/// tests that call the router directly).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

/// A signed-in person: a valid, unexpired session of an enabled account. An
/// account whose password must be changed reaches only the password page and
/// sign-out; everything else sends it there.
#[derive(Clone, Debug)]
pub struct Staff {
    /// The session (account, CSRF token).
    pub session: StaffSession,
    /// The session token from the cookie (to end it at sign-out).
    pub(crate) token: String,
}

impl Staff {
    /// The role.
    pub fn role(&self) -> StaffRole {
        self.session.account.role
    }

    /// The sign-in name.
    pub fn name(&self) -> &str {
        &self.session.account.name
    }
}

/// Paths an account that must change its password may still use.
const PASSWORD_CHANGE_PATHS: [&str; 2] = ["/wachtwoord", "/uitloggen"];

impl FromRequestParts<AppState> for Staff {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        if let Some(s) = parts.extensions.get::<Staff>() {
            return Ok(s.clone());
        }
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .ok_or(WebError::NotSignedIn)?
            .to_owned();
        let limits = state.config().session;
        let t = token.clone();
        let session = state
            .with_node(move |n| Ok(n.staff_session(&t, limits)?))
            .await?
            .ok_or(WebError::NotSignedIn)?;
        if session.account.must_change && !PASSWORD_CHANGE_PATHS.contains(&parts.uri.path()) {
            return Err(WebError::MustChangePassword);
        }
        let staff = Staff { session, token };
        parts.extensions.insert(staff.clone());
        Ok(staff)
    }
}

/// Something a role may do; the server checks it on every request of a handler that
/// takes [`Allowed`] of it.
pub trait Permission: Send + Sync + 'static {
    /// The roles that may.
    const ROLES: &'static [StaffRole];
    /// What it is, in Dutch, for the refusal page ("accounts beheren").
    const WHAT: &'static str;
}

/// Reading the region's plans and the overview: every role (plans are shared
/// regional documents, not personal data).
#[derive(Debug)]
pub struct ReadPlans;
impl Permission for ReadPlans {
    const ROLES: &'static [StaffRole] = &[
        StaffRole::Lezer,
        StaffRole::Beleid,
        StaffRole::Dossier,
        StaffRole::Beheerder,
    ];
    const WHAT: &'static str = "plannen lezen";
}

/// Editing and approving plans: `beleid`.
#[derive(Debug)]
pub struct EditPlans;
impl Permission for EditPlans {
    const ROLES: &'static [StaffRole] = &[StaffRole::Beleid];
    const WHAT: &'static str = "plannen bewerken en goedkeuren";
}

/// Working with dossiers: `dossier`.
#[derive(Debug)]
pub struct WorkWithDossiers;
impl Permission for WorkWithDossiers {
    const ROLES: &'static [StaffRole] = &[StaffRole::Dossier];
    const WHAT: &'static str = "met dossiers werken";
}

/// Managing staff accounts, invitations and devices: `beheerder`.
#[derive(Debug)]
pub struct ManageNode;
impl Permission for ManageNode {
    const ROLES: &'static [StaffRole] = &[StaffRole::Beheerder];
    const WHAT: &'static str = "accounts, uitnodigingen en apparaten beheren";
}

/// A signed-in person whose role has permission `P`; anyone else gets 403 with a
/// page that says what was refused and which role may.
#[derive(Debug)]
pub struct Allowed<P: Permission> {
    /// Who.
    pub staff: Staff,
    _p: PhantomData<P>,
}

impl<P: Permission> Allowed<P> {
    /// Checks `staff` against `P`.
    pub fn check(staff: Staff) -> Result<Self, WebError> {
        if P::ROLES.contains(&staff.role()) {
            Ok(Self {
                staff,
                _p: PhantomData,
            })
        } else {
            Err(WebError::Forbidden {
                what: P::WHAT,
                roles: P::ROLES
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" of "),
            })
        }
    }
}

impl<P: Permission> FromRequestParts<AppState> for Allowed<P> {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        Self::check(Staff::from_request_parts(parts, state).await?)
    }
}

/// Refuses a state-changing request that a browser says comes from another site.
pub(crate) fn check_origin(parts: &Parts) -> Result<(), WebError> {
    if let Some(site) = parts.headers.get("sec-fetch-site") {
        let site = site.as_bytes();
        if site != b"same-origin" && site != b"none" {
            return Err(WebError::Csrf("sec-fetch-site"));
        }
    }
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()));
        let ok = match (origin.to_str().ok(), host) {
            (Some(o), Some(h)) => o.strip_prefix("https://") == Some(h),
            _ => false,
        };
        if !ok {
            return Err(WebError::Csrf("origin"));
        }
    }
    Ok(())
}

/// A state-changing form of a signed-in person: the origin checks passed, the body
/// is within the limit and well-formed, and its CSRF token is the session's.
#[derive(Debug)]
pub struct CheckedForm {
    /// Who sent it.
    pub staff: Staff,
    /// Its fields.
    pub fields: Fields,
}

impl FromRequest<AppState> for CheckedForm {
    type Rejection = WebError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, WebError> {
        let (mut parts, body) = req.into_parts();
        if parts.method != Method::POST {
            return Err(WebError::BadRequest("Alleen POST wordt aangenomen.".into()));
        }
        check_origin(&parts)?;
        let staff = Staff::from_request_parts(&mut parts, state).await?;
        let header_token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let fields = Fields::from_body(&parts.headers, body, state.config().max_body).await?;
        let given = header_token
            .as_deref()
            .or_else(|| fields.get("csrf"))
            .ok_or(WebError::Csrf("missing token"))?;
        if !tokens_match(given, &staff.session.csrf) {
            return Err(WebError::Csrf("wrong token"));
        }
        Ok(Self { staff, fields })
    }
}
