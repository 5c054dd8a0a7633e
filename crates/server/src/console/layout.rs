//! The page shell: head (the one stylesheet, the page's scripts), the navigation bar (Live,
//! Calls, Analytics, Assistants, Organisation, Sign out) and the main area.
//!
//! Pages put their content in [`page`]; forms include [`csrf_field`]. The session's CSRF token is
//! also in `<meta name="csrf-token">`, where `app.js` reads it for `X-CSRF-Token` headers.

use maud::{DOCTYPE, Markup, html};

use crate::console::assets::{self, Asset};
use crate::console::csrf::CSRF_FIELD;
use crate::console::session::{ConsoleUser, LOGOUT_PATH};

/// The sections of the navigation bar; the current page's one is highlighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Calls in progress, as they happen (`/console/live`).
    Live,
    /// Past and current calls, one call's timeline (`/console/calls`).
    Calls,
    /// Trends across calls: turn latency per hour or day (`/console/analytics`).
    Analytics,
    /// The organisation's assistants (`/console/assistants`).
    Assistants,
    /// API keys, provider keys, Twilio credentials (`/console/org`).
    Organisation,
}

impl Nav {
    const ALL: [Nav; 5] = [
        Nav::Live,
        Nav::Calls,
        Nav::Analytics,
        Nav::Assistants,
        Nav::Organisation,
    ];

    /// The link target of the section.
    pub fn path(self) -> &'static str {
        match self {
            Nav::Live => "/console/live",
            Nav::Calls => "/console/calls",
            Nav::Analytics => "/console/analytics",
            Nav::Assistants => "/console/assistants",
            Nav::Organisation => "/console/org",
        }
    }

    /// The section's label.
    pub fn label(self) -> &'static str {
        match self {
            Nav::Live => "Live",
            Nav::Calls => "Calls",
            Nav::Analytics => "Analytics",
            Nav::Assistants => "Assistants",
            Nav::Organisation => "Organisation",
        }
    }
}

/// The hidden field carrying the session's CSRF token: put it in every `<form method="post">`.
pub fn csrf_field(user: &ConsoleUser) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(user.csrf_token()); }
}

/// A signed-in page: `title`, the navigation with `active` highlighted, `body`, and the
/// page's `scripts` (after the shared `app.js`).
pub fn page(
    title: &str,
    user: &ConsoleUser,
    active: Nav,
    scripts: &[&Asset],
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(user.csrf_token());
                title { (title) " · Switchboard" }
                link rel="stylesheet" href=(assets::CONSOLE_CSS.url());
                script src=(assets::APP_JS.url()) defer {}
                @for script in scripts {
                    script src=(script.url()) defer {}
                }
            }
            body {
                header.top {
                    a.brand href="/console" { "Switchboard" }
                    nav {
                        @for item in Nav::ALL {
                            a href=(item.path())
                                class=[(item == active).then_some("active")]
                                aria-current=[(item == active).then_some("page")] { (item.label()) }
                        }
                    }
                    span.who {
                        "org " (user.auth().organization_id) " · "
                        (if user.is_admin() { "admin" } else { "member" }) " key"
                    }
                    form.signout method="post" action=(LOGOUT_PATH) {
                        (csrf_field(user))
                        button #sign-out type="submit" { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page without navigation (sign-in, errors for a signed-out browser).
pub fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Switchboard" }
                link rel="stylesheet" href=(assets::CONSOLE_CSS.url());
            }
            body.bare { (body) }
        }
    }
}
