//! What a request that cannot be served gets: a Dutch page with the right status, or
//! the same as JSON for a client that asks for JSON ([`crate::app`] decides, from the
//! request's `Accept`). Every refusal is logged with its kind and path, never with
//! names, passwords, tokens or field contents.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use regiosync_node::NodeError;

use crate::templates::{Chrome, ErrorPage, render};

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// No valid session (none, expired, forged, or its account disabled).
    #[error("not signed in")]
    NotSignedIn,
    /// The account's password was set by someone else and must be changed first.
    #[error("the password must be changed first")]
    MustChangePassword,
    /// The signed-in person's role may not do this.
    #[error("the role may not do this: {what}")]
    Forbidden {
        /// What was refused, in Dutch ("accounts beheren").
        what: &'static str,
        /// The roles that may, in Dutch.
        roles: String,
    },
    /// The form's CSRF token is missing or wrong, or the request came from another
    /// site.
    #[error("CSRF check failed: {0}")]
    Csrf(&'static str),
    /// Nothing at this address (or an id that names nothing here).
    #[error("not found")]
    NotFound,
    /// The request is malformed: a missing field, malformed UTF-8, a field too long.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The input is well-formed but refused (a title too long, a status change
    /// that is not allowed, a quote not in the section); the reason, in Dutch.
    #[error("refused input: {0}")]
    Invalid(String),
    /// A form based on a version of a plan this node does not have, or no longer
    /// the current one where that matters (an approval).
    #[error("stale or unknown version")]
    Stale,
    /// The body is larger than the limit.
    #[error("request body too large")]
    TooLarge,
    /// The request is well-formed but cannot be done as asked (an empty purpose, a
    /// date that is not one, a refusal of the node such as a grant by a party that
    /// does not own the dossier); the message says what to do. Nothing changed.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// Too many failed sign-ins for this name or address.
    #[error("too many failed sign-ins")]
    Throttled {
        /// Seconds until a new try is accepted.
        retry_after: u64,
    },
    /// Too many live streams open, for this session or in all.
    #[error("too many live streams")]
    TooManyStreams,
    /// A node operation failed.
    #[error(transparent)]
    Node(Box<NodeError>),
    /// A page could not be rendered, or a blocking task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<NodeError> for WebError {
    fn from(e: NodeError) -> Self {
        Self::Node(Box::new(e))
    }
}

/// The error as a response carries this, so the app can turn it into JSON.
#[derive(Clone, Debug)]
pub(crate) struct ErrorInfo {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl WebError {
    /// The status, a stable code for JSON clients, a heading and an explanation.
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            Self::NotSignedIn => (
                StatusCode::UNAUTHORIZED,
                "not_signed_in",
                "Niet ingelogd",
                "U bent niet (meer) ingelogd. Log opnieuw in.".into(),
            ),
            Self::MustChangePassword => (
                StatusCode::FORBIDDEN,
                "must_change_password",
                "Wachtwoord wijzigen",
                "Kies eerst uw eigen wachtwoord (Wachtwoord wijzigen); daarna kunt u verder.".into(),
            ),
            Self::Forbidden { what, roles } => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Geen toegang",
                format!(
                    "Uw rol mag dit niet: {what}. Dat mag alleen de rol {roles}. Vraag een beheerder van uw organisatie als u dit voor uw werk nodig hebt."
                ),
            ),
            Self::Csrf(_) => (
                StatusCode::FORBIDDEN,
                "csrf",
                "Formulier niet geaccepteerd",
                "Het formulier kwam niet van deze pagina, of de beveiligingscode ontbreekt of klopt niet. Er is niets gewijzigd. Laad de pagina opnieuw en probeer het nog eens.".into(),
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Niet gevonden",
                "Op dit adres staat niets, of het document bestaat niet op deze node.".into(),
            ),
            Self::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Ongeldige invoer",
                format!("{m} Er is niets gewijzigd."),
            ),
            Self::Invalid(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "Niet opgeslagen",
                format!("{m} Er is niets gewijzigd."),
            ),
            Self::Stale => (
                StatusCode::CONFLICT,
                "stale_version",
                "Versie verouderd",
                "Het formulier hoort bij een versie van het plan die op deze node onbekend is, of het plan is intussen gewijzigd. Er is niets gewijzigd. Open het plan opnieuw en probeer het nog eens.".into(),
            ),
            Self::Unprocessable(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "Niet uitgevoerd",
                format!("{m} Er is niets gewijzigd."),
            ),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "Te veel gegevens",
                "Het formulier bevat meer gegevens dan deze node aanneemt. Er is niets gewijzigd.".into(),
            ),
            Self::Throttled { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "Te veel pogingen",
                format!(
                    "Er is te vaak een verkeerd wachtwoord gegeven. Probeer het over {} minuten opnieuw.",
                    retry_after.div_ceil(60).max(1)
                ),
            ),
            Self::TooManyStreams => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                "Te veel open pagina's",
                "Er staan te veel pagina's open die live worden bijgewerkt. Sluit er een paar; herlaad deze pagina om de laatste wijzigingen te zien.".into(),
            ),
            Self::Node(e)
                if matches!(
                    **e,
                    NodeError::UnknownDocument(_)
                        | NodeError::NotAPlan(..)
                        | NodeError::NotAReader(_)
                ) =>
            {
                (
                StatusCode::NOT_FOUND,
                "not_found",
                "Niet gevonden",
                "Dit document bestaat niet op deze node.".into(),
            )
            }
            Self::Node(e) if matches!(**e, NodeError::NotInRegion) => (
                StatusCode::CONFLICT,
                "not_in_region",
                "Geen regio",
                "Deze node is nog geen lid van een regio.".into(),
            ),
            Self::Node(_) | Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Er ging iets mis",
                "De node kon dit verzoek niet uitvoeren. Er is niets gewijzigd. De beheerder vindt de oorzaak in het logboek van de node.".into(),
            ),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, code, title, message) = self.parts();
        match &self {
            Self::Node(e) if status == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = %e, "web request failed");
            }
            Self::Internal(e) => tracing::error!(error = %e, "web request failed"),
            Self::Csrf(why) => {
                tracing::info!(
                    status = status.as_u16(),
                    kind = code,
                    why,
                    "web request refused"
                );
            }
            _ => tracing::info!(status = status.as_u16(), kind = code, "web request refused"),
        }
        if let Self::MustChangePassword = self {
            return see_other("/wachtwoord");
        }
        let page = ErrorPage {
            chrome: Chrome::anonymous(title),
            title,
            message: &message,
            sign_in: matches!(self, Self::NotSignedIn),
        };
        let mut resp = (status, render(&page)).into_response();
        if let Self::Throttled { retry_after } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp.extensions_mut().insert(ErrorInfo {
            status,
            code,
            message,
        });
        resp
    }
}

/// A redirect after a form (303: the browser follows with GET).
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}
