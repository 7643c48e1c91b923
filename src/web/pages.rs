//! The gateway's pages (askama templates under `templates/gateway/`) and the one place error
//! responses are built: a page for navigations, JSON for everything else.

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;

use super::{Incoming, PREFIX};
use crate::error::GatewayError;
use crate::i18n::{Lang, Tr};

/// What every page's layout shows: language, brand, the CSRF token for its forms and the link
/// to the same page in the other language.
#[derive(Clone)]
pub struct Layout {
    /// Texts in the page's language.
    pub tr: Tr,
    /// The page's language tag.
    pub lang: &'static str,
    /// Product name.
    pub brand: String,
    /// Logo URL; empty when none.
    pub logo: String,
    /// Primary colour, `#rrggbb`.
    pub color: String,
    /// Text on the primary colour (black or white, whichever reads better).
    pub color_text: &'static str,
    /// Links: the primary colour, darkened until it reads on white.
    pub color_link: String,
    /// CSRF token for the page's forms.
    pub csrf: String,
    /// This page in the other language.
    pub switch_url: String,
    /// The other language's tag.
    pub switch_lang: &'static str,
    /// Endpoint prefix.
    pub prefix: &'static str,
}

/// Branding from the configuration.
#[derive(Debug, Clone)]
pub struct Brand {
    /// Product name.
    pub name: String,
    /// Logo URL; empty when none.
    pub logo: String,
    /// Primary colour.
    pub color: String,
    /// Text on the primary colour.
    pub text: &'static str,
    /// Link colour (readable on white).
    pub link: String,
}

impl Brand {
    /// Branding with colours derived from `color` (`#rrggbb`) so that button text and links
    /// keep a contrast of at least 4.5:1 (WCAG AA) whatever colour is configured.
    pub fn new(name: String, logo: String, color: String) -> Brand {
        let rgb = parse_hex(&color).unwrap_or((0x00, 0x52, 0xd9));
        let text = if contrast(rgb, (255, 255, 255)) >= 4.5 {
            "#ffffff"
        } else {
            "#000000"
        };
        let mut link = rgb;
        for _ in 0..40 {
            if contrast(link, (255, 255, 255)) >= 4.5 {
                break;
            }
            link = (
                (link.0 as f32 * 0.9) as u8,
                (link.1 as f32 * 0.9) as u8,
                (link.2 as f32 * 0.9) as u8,
            );
        }
        Brand {
            name,
            logo,
            color,
            text,
            link: format!("#{:02x}{:02x}{:02x}", link.0, link.1, link.2),
        }
    }
}

fn parse_hex(c: &str) -> Option<(u8, u8, u8)> {
    let h = c.strip_prefix('#')?;
    if h.len() != 6 {
        return None;
    }
    let v = u32::from_str_radix(h, 16).ok()?;
    Some(((v >> 16) as u8, (v >> 8) as u8, v as u8))
}

fn luminance((r, g, b): (u8, u8, u8)) -> f32 {
    let ch = |c: u8| {
        let c = c as f32 / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b)
}

/// The WCAG contrast ratio of two colours.
fn contrast(a: (u8, u8, u8), b: (u8, u8, u8)) -> f32 {
    let (la, lb) = (luminance(a), luminance(b));
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    (hi + 0.05) / (lo + 0.05)
}

impl Layout {
    /// The layout of a page at `here` (path and query, used for the language switch link)
    /// in `lang`, with `csrf` as its forms' token.
    pub fn new(lang: Lang, brand: &Brand, csrf: String, here: &str) -> Layout {
        let other = lang.other();
        Layout {
            tr: Tr::new(lang),
            lang: lang.tag(),
            brand: brand.name.clone(),
            logo: brand.logo.clone(),
            color: brand.color.clone(),
            color_text: brand.text,
            color_link: brand.link.clone(),
            csrf,
            // A page reached by a form post has no GET address of its own: its switch link
            // goes to the login page.
            switch_url: with_lang(if here.is_empty() { "/__auth/" } else { here }, other),
            switch_lang: other.tag(),
            prefix: PREFIX,
        }
    }
}

/// `here` with its `lang` query parameter set to `lang` (other parameters kept).
pub fn with_lang(here: &str, lang: Lang) -> String {
    let (path, query) = here.split_once('?').unwrap_or((here, ""));
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k != "lang" {
            out.append_pair(&k, &v);
        }
    }
    out.append_pair("lang", lang.tag());
    let path = if path.starts_with('/') && !path.starts_with("//") {
        path
    } else {
        "/"
    };
    format!("{path}?{}", out.finish())
}

/// The error page.
#[derive(Template)]
#[template(path = "gateway/error.html")]
pub struct ErrorPage<'a> {
    /// Layout.
    pub p: Layout,
    /// Heading.
    pub title: &'a str,
    /// What happened, for a person.
    pub message: &'a str,
    /// Where the link goes.
    pub back: &'a str,
    /// The link's text.
    pub back_label: &'a str,
    /// For support.
    pub request_id: &'a str,
}

/// One method tab of the login page.
pub struct Tab {
    /// Text key of its label.
    pub label: &'static str,
    /// Its URL.
    pub url: String,
    /// Whether it is the one shown.
    pub active: bool,
}

/// The hosted login page.
#[derive(Template)]
#[template(path = "gateway/login.html")]
pub struct LoginPage<'a> {
    /// Layout.
    pub p: Layout,
    /// Validated return URL.
    pub rd: &'a str,
    /// The method tabs (shown when more than one).
    pub tabs: Vec<Tab>,
    /// The method shown: `password`, `email`, `sms` or empty.
    pub active: &'a str,
    /// Values typed before (never a password).
    pub username: &'a str,
    /// E-mail typed before.
    pub email: &'a str,
    /// Phone typed before.
    pub phone: &'a str,
    /// A message for the person, empty when none.
    pub error: &'a str,
    /// Who is signed in already (registered users), empty when nobody.
    pub who: &'a str,
    /// Whether the browser has a guest session.
    pub guest: bool,
    /// Show the guest button.
    pub anonymous: bool,
    /// Show the sign-up link.
    pub sign_up: bool,
    /// Sign-up page URL.
    pub sign_up_url: &'a str,
    /// Show the forgot-password link.
    pub forgot: bool,
    /// Forgot-password page URL.
    pub forgot_url: &'a str,
    /// The provider buttons.
    pub providers: Vec<ProviderLink>,
}

/// The code-entry page.
#[derive(Template)]
#[template(path = "gateway/code.html")]
pub struct CodePage<'a> {
    /// Layout.
    pub p: Layout,
    /// Text key of the heading.
    pub title: &'static str,
    /// The flow id.
    pub flow: &'a str,
    /// Where the code went.
    pub contact: &'a str,
    /// `sign_in`, `sign_up`, `reset`, `sudo` or `bind`: which extra fields show.
    pub purpose: &'a str,
    /// Whether the code was already accepted (only the last step is left).
    pub verified: bool,
    /// User name typed before.
    pub username: &'a str,
    /// Name typed before.
    pub name: &'a str,
    /// A notice (new code sent), empty when none.
    pub notice: &'a str,
    /// A message for the person, empty when none.
    pub error: &'a str,
    /// The way back.
    pub back: &'a str,
    /// Text key of the way back.
    pub back_label: &'static str,
}

/// The sign-up and forgot-password pages: an e-mail or phone to send a code to.
#[derive(Template)]
#[template(path = "gateway/contact_form.html")]
pub struct ContactFormPage<'a> {
    /// Layout.
    pub p: Layout,
    /// Text key of the heading.
    pub title: &'static str,
    /// Text key of the introduction.
    pub intro: &'static str,
    /// Text key of the button.
    pub submit: &'static str,
    /// Where the form posts.
    pub action: &'a str,
    /// Validated return URL.
    pub rd: &'a str,
    /// Contact typed before.
    pub contact: &'a str,
    /// Text key of the field's label (e-mail, phone, or either).
    pub label: &'static str,
    /// The input's `type`.
    pub input_type: &'static str,
    /// The input's `autocomplete`.
    pub autocomplete: &'static str,
    /// Whether phone numbers are accepted (shows the +86 hint).
    pub phone: bool,
    /// Whether the browser has a guest session (its data stays).
    pub guest: bool,
    /// A message for the person, empty when none.
    pub error: &'a str,
    /// The sign-in page.
    pub login_url: &'a str,
}

/// The page after signing out.
#[derive(Template)]
#[template(path = "gateway/signed_out.html")]
pub struct SignedOutPage {
    /// Layout.
    pub p: Layout,
    /// "Sign out everywhere" ended this site's sessions, but CloudBase did not confirm ending
    /// the others.
    pub partial: bool,
}

/// The sign-out confirmation page.
#[derive(Template)]
#[template(path = "gateway/sign_out.html")]
pub struct SignOutPage<'a> {
    /// Layout.
    pub p: Layout,
    /// Validated return URL (empty: the signed-out page).
    pub rd: &'a str,
    /// Where "stay signed in" goes.
    pub stay: &'a str,
    /// Who is signed in (empty when nobody).
    pub who: &'a str,
}

/// One identity source on the account page.
pub struct ProviderRow {
    /// Provider id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The user's name there, when linked.
    pub user: String,
    /// Whether it is linked.
    pub bound: bool,
    /// Whether the gateway offers linking it (a configured provider not linked yet).
    pub linkable: bool,
}

/// A provider button of the login page.
pub struct ProviderLink {
    /// The label.
    pub label: String,
    /// `/__auth/start?provider=…&rd=…`.
    pub url: String,
}

/// The image-captcha page.
#[derive(Template)]
#[template(path = "gateway/captcha.html")]
pub struct CaptchaPage<'a> {
    /// Layout.
    pub p: Layout,
    /// The flow id.
    pub flow: &'a str,
    /// The picture, a `data:image/…` URL.
    pub image: &'a str,
    /// A message, empty when none.
    pub error: &'a str,
}

/// The account page.
#[derive(Template)]
#[template(path = "gateway/account.html")]
pub struct AccountPage<'a> {
    /// Layout.
    pub p: Layout,
    /// A notice (a change done), empty when none.
    pub notice: &'a str,
    /// A message for the person, empty when none.
    pub error: &'a str,
    /// Whether the user is a guest.
    pub guest: bool,
    /// Sign-up page (for guests).
    pub sign_up_url: &'a str,
    /// User id.
    pub uid: &'a str,
    /// Display name.
    pub name: &'a str,
    /// User name.
    pub username: &'a str,
    /// E-mail.
    pub email: &'a str,
    /// Phone.
    pub phone: &'a str,
    /// Whether a password is set.
    pub has_password: bool,
    /// Identity sources.
    pub providers: Vec<ProviderRow>,
    /// Whether CloudBase could not list them.
    pub providers_failed: bool,
}

/// "Confirm it's you" before an account change.
#[derive(Template)]
#[template(path = "gateway/sudo.html")]
pub struct SudoPage<'a> {
    /// Layout.
    pub p: Layout,
    /// `email`, `phone`, `password` or `link`.
    pub change: &'a str,
    /// For a link: the provider id, and its name as shown.
    pub provider: &'a str,
    /// The provider's name, for the page's introduction.
    pub provider_name: &'a str,
    /// Whether the password form shows.
    pub has_password: bool,
    /// The user's own e-mail or phone for a code; empty when none.
    pub own_contact: &'a str,
    /// A message for the person, empty when none.
    pub error: &'a str,
}

/// The new e-mail, phone or password, after sudo.
#[derive(Template)]
#[template(path = "gateway/change.html")]
pub struct ChangePage<'a> {
    /// Layout.
    pub p: Layout,
    /// Text key of the heading.
    pub title: &'static str,
    /// The flow id.
    pub flow: &'a str,
    /// `email`, `phone` or `password`.
    pub change: &'a str,
    /// Value typed before.
    pub value: &'a str,
    /// A message for the person, empty when none.
    pub error: &'a str,
}

/// A rendered page with the security headers every gateway page carries.
pub fn html(status: actix_web::http::StatusCode, page: &impl Template) -> HttpResponse {
    let body = page
        .render()
        .unwrap_or_else(|_| "<!doctype html><title>Error</title><p>Error</p>".into());
    let mut b = HttpResponse::build(status);
    no_store(&mut b);
    b.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(body)
}

/// Marks a response as never to be cached (pages with tokens, redirects that set cookies).
pub fn no_store(b: &mut HttpResponseBuilder) {
    b.insert_header((header::CACHE_CONTROL, "no-store"))
        // A page's path and query (return URLs, flow ids) never leave it, not even for the
        // application behind us, while our own form posts keep a real `Origin` (under
        // `no-referrer` browsers send `Origin: null`).
        .insert_header((header::REFERRER_POLICY, "strict-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
}

/// The response for `err`: a page for navigations (in the request's language), JSON
/// otherwise. Logged here, once.
pub fn error_response(err: &GatewayError, inc: &Incoming) -> HttpResponse {
    error_response_to(err, inc, None)
}

/// [`error_response`] whose page links to `back` (a path and the text key of its label)
/// instead of the way back that follows from the error.
pub fn error_response_to(
    err: &GatewayError,
    inc: &Incoming,
    back: Option<(String, &'static str)>,
) -> HttpResponse {
    if err.is_server_side() {
        tracing::warn!(error = err.code(), request_id = %inc.request_id, "request failed");
    } else {
        tracing::info!(error = err.code(), request_id = %inc.request_id, "request refused");
    }
    let status = err.status();
    if !inc.navigation {
        return json_error(err);
    }
    let p = Layout::new(inc.lang, &inc.brand, String::new(), &inc.here);
    let tr = p.tr;
    let (back, label) = back.unwrap_or_else(|| match err {
        GatewayError::Forbidden => (format!("{PREFIX}/sign_out"), "gwerr.back.switch_user"),
        GatewayError::Unauthenticated
        | GatewayError::Csrf
        | GatewayError::CloudBase(_)
        | GatewayError::FlowExpired
        | GatewayError::StateInvalid
        | GatewayError::WrongEnvironment => (format!("{PREFIX}/"), "gwerr.back.sign_in"),
        _ => ("/".to_string(), "gwerr.back.start"),
    });
    let code = err.code();
    let mut resp = html(
        status,
        &ErrorPage {
            p,
            title: tr.t(&format!("gwerr.{code}.title")),
            message: tr.t(&format!("gwerr.{code}.desc")),
            back: &back,
            back_label: tr.t(label),
            request_id: &inc.request_id,
        },
    );
    decorate(err, &mut resp);
    resp
}

/// `{"error", "error_description"}` with the error's status.
pub fn json_error(err: &GatewayError) -> HttpResponse {
    let mut b = HttpResponse::build(err.status());
    no_store(&mut b);
    if matches!(err, GatewayError::Unauthenticated) {
        b.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    let mut resp = b.json(serde_json::json!({
        "error": err.code(),
        "error_description": err.description(),
    }));
    decorate(err, &mut resp);
    resp
}

/// The headers that go with an error whatever its body: `Retry-After` with every wait, `Allow`
/// with a refused method, and `Connection: close` after a body that never arrived (the rest of
/// it cannot be told from a next request).
fn decorate(err: &GatewayError, resp: &mut HttpResponse) {
    let h = resp.headers_mut();
    if let Some(secs) = err.retry_after() {
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            h.insert(header::RETRY_AFTER, v);
        }
    }
    match err {
        GatewayError::MethodNotAllowed => {
            h.insert(
                header::ALLOW,
                header::HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        GatewayError::BodyTimeout => {
            h.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        _ => {}
    }
}

/// A 302 to `location` that is never cached.
pub fn redirect(location: &str) -> HttpResponseBuilder {
    let mut b = HttpResponse::Found();
    no_store(&mut b);
    b.insert_header((header::LOCATION, location.to_string()));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brand_colours_keep_their_contrast() {
        let b = Brand::new("x".into(), String::new(), "#0052d9".into());
        assert_eq!((b.text, b.link.as_str()), ("#ffffff", "#0052d9"));
        let light = Brand::new("x".into(), String::new(), "#ffe066".into());
        assert_eq!(light.text, "#000000", "dark text on a light colour");
        let link = parse_hex(&light.link).unwrap();
        assert!(contrast(link, (255, 255, 255)) >= 4.5, "{}", light.link);
        assert!((contrast((0, 0, 0), (255, 255, 255)) - 21.0).abs() < 0.01);
    }

    #[test]
    fn the_language_link_keeps_the_query() {
        assert_eq!(
            with_lang("/__auth/?rd=%2Fx&lang=en", Lang::ZhCn),
            "/__auth/?rd=%2Fx&lang=zh-CN"
        );
        assert_eq!(with_lang("//evil.example/", Lang::En), "/?lang=en");
    }
}
