//! The pages' templates (askama: checked at compile time, HTML-escaped by default;
//! the only unescaped value is a plan's body, which the plan's HTML export built and
//! escaped). Every page extends `templates/base.html`.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// The frame of every page: title, who is signed in, which menu item is current.
pub(crate) struct Chrome {
    pub(crate) title: String,
    pub(crate) user: Option<UserChrome>,
    pub(crate) active: &'static str,
}

/// The signed-in person, as the frame shows them.
pub(crate) struct UserChrome {
    pub(crate) name: String,
    pub(crate) role: &'static str,
    /// For the sign-out form.
    pub(crate) csrf: String,
    /// Whether the Beheer menu item is shown (the server checks again).
    pub(crate) manage: bool,
    /// Whether the Dossiers menu item is shown (the server checks again).
    pub(crate) dossiers: bool,
}

impl Chrome {
    /// A frame without a signed-in person.
    pub(crate) fn anonymous(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            user: None,
            active: "",
        }
    }
}

/// Renders a template; a template that fails (it cannot, short of a bug) is a plain
/// 500 page.
pub(crate) fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Er ging iets mis bij het opbouwen van de pagina.",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage<'a> {
    pub(crate) chrome: Chrome,
    pub(crate) title: &'a str,
    pub(crate) message: &'a str,
    pub(crate) sign_in: bool,
}

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage<'a> {
    pub(crate) chrome: Chrome,
    pub(crate) csrf: &'a str,
    pub(crate) name: &'a str,
    pub(crate) error: Option<&'a str>,
    pub(crate) notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "password.html")]
pub(crate) struct PasswordPage<'a> {
    pub(crate) chrome: Chrome,
    pub(crate) csrf: &'a str,
    pub(crate) forced: bool,
    pub(crate) error: Option<&'a str>,
    pub(crate) min_chars: usize,
}

/// A party of the region, for the overview.
pub(crate) struct PartyView {
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) admin: bool,
    pub(crate) devices: usize,
    pub(crate) this_node: bool,
}

/// A member device as this node sees it.
pub(crate) struct PeerView {
    pub(crate) short_id: String,
    pub(crate) party: String,
    pub(crate) state: String,
    pub(crate) last_sync: String,
    pub(crate) docs: String,
}

/// A document line.
pub(crate) struct DocView {
    pub(crate) id: String,
    pub(crate) short: String,
    pub(crate) title: String,
    pub(crate) kind: String,
    pub(crate) last_change: String,
    pub(crate) last_by: String,
}

#[derive(Template)]
#[template(path = "overzicht.html")]
pub(crate) struct OverviewPage {
    pub(crate) chrome: Chrome,
    pub(crate) region: Option<String>,
    pub(crate) party: String,
    pub(crate) node_id: String,
    pub(crate) parties: Vec<PartyView>,
    pub(crate) running: bool,
    pub(crate) peers: Vec<PeerView>,
    pub(crate) docs: Vec<DocView>,
    pub(crate) docs_more: usize,
}

#[derive(Template)]
#[template(path = "plannen.html")]
pub(crate) struct PlansPage {
    pub(crate) chrome: Chrome,
    pub(crate) plans: Vec<DocView>,
}

#[derive(Template)]
#[template(path = "plan.html")]
pub(crate) struct PlanPage {
    pub(crate) chrome: Chrome,
    /// The plan (section texts rendered and escaped by the plan's HTML rendering).
    pub(crate) plan: crate::plans::PlanView,
    pub(crate) last_change: String,
}

/// A section save that clashed with a rewrite of the same lines (409).
#[derive(Template)]
#[template(path = "plan_clash.html")]
pub(crate) struct PlanClashPage {
    pub(crate) chrome: Chrome,
    pub(crate) id: String,
    pub(crate) plan_title: String,
    pub(crate) section_title: String,
    pub(crate) section: String,
    pub(crate) by: String,
    /// (yours, theirs) per clash.
    pub(crate) lines: Vec<(String, String)>,
    pub(crate) with_yours: String,
    pub(crate) with_theirs: String,
    pub(crate) heads: String,
    pub(crate) csrf: String,
}

/// A changed section in a diff.
pub(crate) struct DiffSection {
    pub(crate) title: String,
    pub(crate) what: &'static str,
    pub(crate) renamed_from: Option<String>,
    pub(crate) by: String,
    /// (css class, tag, line).
    pub(crate) lines: Vec<(&'static str, char, String)>,
}

/// A changed agreement in a diff.
pub(crate) struct DiffAgreement {
    pub(crate) title: String,
    pub(crate) what: &'static str,
    pub(crate) by: String,
    pub(crate) fields: Vec<(String, String, String)>,
}

/// What changed since a party's approval.
#[derive(Template)]
#[template(path = "plan_diff.html")]
pub(crate) struct PlanDiffPage {
    pub(crate) chrome: Chrome,
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) party: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) empty: bool,
    pub(crate) plan_title: Option<(String, String)>,
    pub(crate) sections: Vec<DiffSection>,
    pub(crate) agreements: Vec<DiffAgreement>,
}

/// An option of a `<select>`.
pub(crate) struct SelectOption {
    pub(crate) value: String,
    pub(crate) label: String,
}
