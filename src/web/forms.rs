//! What every hosted-page handler shares: reading a CSRF-checked form, the page layout (with
//! the CSRF and language cookies to set), the flow context, and turning a flow's outcome or
//! error into a redirect, a page or JSON.

use std::collections::HashMap;

use actix_web::cookie::Cookie;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::pages::{self, Layout};
use super::{wants_json, Gateway, Incoming, Worker, PREFIX};
use crate::error::GatewayError;
use crate::flow::store::Browser;
use crate::flows::{Ctx, FlowError, Outcome};
use crate::i18n::Lang;
use crate::session::manager::Loaded;

/// A posted or query form.
#[derive(Default)]
pub struct Form(HashMap<String, String>);

/// Only the field names: values may be passwords, codes or tickets.
impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Form {
    /// Parses `application/x-www-form-urlencoded` (a body or a query string).
    pub fn parse(raw: &[u8]) -> Form {
        Form(url::form_urlencoded::parse(raw).into_owned().collect())
    }

    /// The query of `req`.
    pub fn query(req: &HttpRequest) -> Form {
        Form::parse(req.query_string().as_bytes())
    }

    /// The field's value, or `""`.
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or_default()
    }

    /// A form of these fields.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Form {
        Form(pairs.into_iter().collect())
    }

    /// The fields, but the CSRF token (which belongs to one post).
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() != "csrf")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether the field is present.
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

/// This browser's CSRF cookie value, and the cookie to set when it had none.
pub fn csrf_cookie(gw: &Gateway, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    let cookies = gw.sessions.cookies();
    match req.cookie(cookies.csrf_name()) {
        Some(c) if !c.value().is_empty() && c.value().len() <= 64 => (c.value().to_string(), None),
        _ => {
            let (value, cookie) = cookies.new_csrf(gw.entropy.as_ref());
            (value, Some(cookie))
        }
    }
}

/// The browser as its existing CSRF cookie names it. Without one (or with a malformed one) it
/// is nobody: no flow record or state was ever bound to the hash of an empty value.
pub fn existing_browser(gw: &Gateway, req: &HttpRequest) -> Browser {
    match req.cookie(gw.sessions.cookies().csrf_name()) {
        Some(c) if !c.value().is_empty() && c.value().len() <= 64 => Browser::from_csrf(c.value()),
        _ => Browser::from_csrf(""),
    }
}

/// A posted form whose `csrf` field matches this browser's CSRF cookie, and the browser it
/// binds flows to.
///
/// The token is always required, even from our own origin: the application behind us shares
/// that origin and may show user content, and a plain HTML form there must not be able to
/// post to the gateway (the cookie is HttpOnly, so such a form cannot know the token).
///
/// Fails with [`GatewayError::Csrf`]. (The body's size and deadline were checked as it was
/// read, by [`super::body::Body`].)
pub fn csrf_form(
    gw: &Gateway,
    req: &HttpRequest,
    body: &[u8],
) -> Result<(Form, Browser), GatewayError> {
    let form = Form::parse(body);
    if post_origin(gw, req) == PostOrigin::Foreign {
        return Err(GatewayError::Csrf);
    }
    let cookies = gw.sessions.cookies();
    match req.cookie(cookies.csrf_name()) {
        Some(c) if cookies.csrf_ok(c.value(), form.get("csrf")) => {
            Ok((form, Browser::from_csrf(c.value())))
        }
        _ => Err(GatewayError::Csrf),
    }
}

/// The answer to a form post that [`csrf_form`] refused: the error page (JSON for API
/// callers), whose link for a refused token leads back to the very form, which a reload
/// gives a fresh token. That is the way on when two tabs opened at once in a fresh browser
/// each got a CSRF cookie and the later one replaced the first tab's.
pub fn refused_post(
    gw: &Gateway,
    req: &HttpRequest,
    inc: &Incoming,
    err: &GatewayError,
    body: &[u8],
) -> HttpResponse {
    let back = matches!(err, GatewayError::Csrf).then(|| {
        (
            form_page(gw, req.path(), &Form::parse(body)),
            "gwerr.back.form",
        )
    });
    pages::error_response_to(err, inc, back)
}

/// The page showing the form that posts to `path` (with its return URL or flow id).
fn form_page(gw: &Gateway, path: &str, form: &Form) -> String {
    let rd = || enc(&return_url(gw, form));
    let flow = || {
        let f = form.get("flow");
        let ok = !f.is_empty()
            && f.len() <= 64
            && f.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            f.to_string()
        } else {
            String::new()
        }
    };
    match path.strip_prefix(PREFIX).unwrap_or_default() {
        "/sign_in/password" => format!("{PREFIX}/?method=password&rd={}", rd()),
        "/sign_in/email" => format!("{PREFIX}/?method=email&rd={}", rd()),
        "/sign_in/sms" => format!("{PREFIX}/?method=sms&rd={}", rd()),
        rest @ ("/sign_up" | "/forgot" | "/sign_out") => format!("{PREFIX}{rest}?rd={}", rd()),
        "/code" | "/code/resend" if !flow().is_empty() => format!("{PREFIX}/code?flow={}", flow()),
        "/captcha" if !flow().is_empty() => format!("{PREFIX}/captcha?flow={}", flow()),
        rest if rest.starts_with("/account") || rest == "/start" => format!("{PREFIX}/account"),
        _ => format!("{PREFIX}/?rd={}", rd()),
    }
}

/// Where a form post says it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostOrigin {
    /// A page of `public_url`'s origin.
    Ours,
    /// A page of the origin the request went to, which is not `public_url`'s (another name
    /// for this gateway, or another host it serves).
    ThisHost,
    /// Another origin.
    Foreign,
    /// The browser did not say (no `Origin`; browsers send one on every form post).
    Unknown,
}

/// Where a form post came from, by `Origin` and `Sec-Fetch-Site` (both set by the browser,
/// not by pages). Checked behind the CSRF token, for cookies a sibling subdomain could plant.
///
/// `Origin: null` is what a browser sends from a page whose referrer policy is `no-referrer`
/// (a proxy in front may add that header). With `Sec-Fetch-Site: same-origin` it is a page
/// of the origin the request went to, which is ours only when that is `public_url`'s;
/// otherwise (sandboxed pages, cross-site redirects) it is foreign.
pub fn post_origin(gw: &Gateway, req: &HttpRequest) -> PostOrigin {
    let public = gw.config.public_url.origin().ascii_serialization();
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return PostOrigin::Unknown;
    };
    let inc = gw.incoming(req);
    let requested = format!("{}://{}", inc.proto, inc.authority);
    let same_origin_fetch = req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"same-origin");
    let origin = match origin.to_str() {
        Ok("null") if same_origin_fetch => requested.as_str(),
        Ok("null") | Err(_) => return PostOrigin::Foreign,
        Ok(o) => o,
    };
    if origin.eq_ignore_ascii_case(&public) {
        PostOrigin::Ours
    } else if origin.eq_ignore_ascii_case(&requested) {
        PostOrigin::ThisHost
    } else {
        PostOrigin::Foreign
    }
}

/// The return URL from `rd`, or CloudBase's `redirect_uri`, validated (`/` when refused).
pub fn return_url(gw: &Gateway, form: &Form) -> String {
    let raw = if form.has("rd") {
        form.get("rd")
    } else if form.has("redirect_uri") {
        form.get("redirect_uri")
    } else {
        "/"
    };
    gw.return_urls.validate(raw)
}

/// A page's layout and the cookies it sets (CSRF when the browser has none; the language when
/// `?lang=` chose one).
pub struct View {
    /// The layout.
    pub layout: Layout,
    /// The language.
    pub lang: Lang,
    cookies: Vec<Cookie<'static>>,
}

impl View {
    /// The view of a page at `here` (path and query of its GET form).
    pub fn new(gw: &Gateway, req: &HttpRequest, here: &str) -> View {
        let lang = gw.lang_of(req);
        let (csrf, set_csrf) = csrf_cookie(gw, req);
        let mut cookies: Vec<Cookie<'static>> = set_csrf.into_iter().collect();
        let chosen = Form::query(req);
        if chosen.has("lang") && Lang::parse(chosen.get("lang")).is_some() {
            cookies.push(gw.sessions.cookies().lang(lang.tag()));
        }
        let token = gw.sessions.cookies().csrf_token(&csrf);
        View {
            layout: Layout::new(lang, &gw.brand, token, here),
            lang,
            cookies,
        }
    }

    /// Text for `key` in the page's language.
    pub fn t(&self, key: &str) -> &'static str {
        self.layout.tr.t(key)
    }

    /// The name shown for provider `id`: its configured label, our own name for WeChat's
    /// providers, the name CloudBase gave (`from_cloudbase`, may be empty), else the id.
    pub fn provider_name(&self, gw: &Gateway, id: &str, from_cloudbase: &str) -> String {
        match (
            gw.config.login.provider(id).and_then(|p| p.label.as_ref()),
            id,
        ) {
            (Some(label), _) => label.clone(),
            (None, "wx_open" | "wx_mp") => self.t(&format!("provider.{id}")).to_string(),
            (None, _) if !from_cloudbase.is_empty() => from_cloudbase.to_string(),
            (None, _) => id.to_string(),
        }
    }

    /// A message for a flow error, with the wait filled in.
    pub fn message(&self, e: &FlowError) -> String {
        let secs = e.retry_after().unwrap_or(0);
        self.layout.tr.with_wait(e.message(), secs)
    }

    /// Renders `page` (built with [`View::take`]'s layout) with `status` and this view's
    /// cookies.
    pub fn respond(self, status: StatusCode, page: &impl Template) -> HttpResponse {
        let mut resp = pages::html(status, page);
        for c in &self.cookies {
            let _ = resp.add_cookie(c);
        }
        resp
    }

    /// The layout for building the page (the view keeps the cookies).
    pub fn take(&mut self) -> Layout {
        self.layout.clone()
    }
}

/// The browser's session, fresh; `None` when it has none, it just ended, or CloudBase cannot
/// refresh it right now (a sign-in page still works then).
pub async fn current_session(gw: &Gateway, req: &HttpRequest, worker: &Worker) -> Option<Loaded> {
    gw.session(req, worker).await.ok().and_then(|l| l.session)
}

/// The flow context for a request.
pub fn ctx<'a>(
    gw: &'a Gateway,
    worker: &'a Worker,
    inc: &Incoming,
    browser: Browser,
    lang: Lang,
    current: Option<&'a Loaded>,
) -> Ctx<'a> {
    Ctx {
        cloudbase: &worker.cloudbase,
        sessions: &gw.sessions,
        flows: &gw.flows,
        limits: &gw.limits,
        accounts: &gw.accounts,
        metrics: &gw.metrics,
        browser,
        client_ip: inc
            .client_ip
            .map(crate::ratelimit::client_key)
            .unwrap_or_else(|| "unknown".into()),
        lang,
        current,
        sign_up: gw.config.login.sign_up,
        captcha: None,
        states: &gw.states,
        captcha_tokens: &gw.captcha_tokens,
        allow_http_pages: gw.config.cookie.insecure,
    }
}

/// Where an outcome sends the browser: a redirect (with the new session cookie after a
/// sign-in).
pub fn outcome_response(gw: &Gateway, outcome: Outcome) -> HttpResponse {
    match outcome {
        Outcome::SignedIn { started, rd } => pages::redirect(&rd)
            .cookie(
                gw.sessions
                    .cookies()
                    .session(started.cookie_value, started.max_age_secs),
            )
            .finish(),
        Outcome::Continue { rd } => pages::redirect(&rd).finish(),
        Outcome::CodeSent { flow } => {
            pages::redirect(&format!("{PREFIX}/code?flow={flow}")).finish()
        }
        Outcome::Elevated { flow } => {
            pages::redirect(&format!("{PREFIX}/account/change?flow={flow}")).finish()
        }
        Outcome::AccountUpdated { notice } => {
            let done = notice.rsplit('.').next().unwrap_or_default();
            pages::redirect(&format!("{PREFIX}/account?done={done}")).finish()
        }
    }
}

/// The facts about a form post or hosted page: like [`Gateway::incoming`], but anything that
/// does not ask for JSON gets pages (a form post from a browser need not carry Fetch metadata).
pub fn incoming(gw: &Gateway, req: &HttpRequest) -> Incoming {
    let mut inc = gw.incoming(req);
    if !inc.navigation && !wants_json(req.headers()) {
        inc.navigation = true;
        inc.lang = gw.lang_of(req);
    }
    if req.method() != actix_web::http::Method::GET {
        // A form post's address is no page: error pages link the language switch elsewhere.
        inc.here = String::new();
    }
    inc
}

/// The answer to a flow error: the "start again" page, a redirect to sign in, an outage page,
/// JSON for API callers, or else `page` (the form again, showing [`message`]) with the error's
/// status; without a form to show, an error page with the message. `Retry-After` goes with
/// every wait.
pub fn error_response(inc: &Incoming, err: &FlowError, page: Option<HttpResponse>) -> HttpResponse {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = match err {
        FlowError::StartAgain => return pages::error_response(&GatewayError::FlowExpired, inc),
        FlowError::BadState => return pages::error_response(&GatewayError::StateInvalid, inc),
        FlowError::Unavailable => {
            return pages::error_response(&GatewayError::CloudBaseUnavailable, inc)
        }
        FlowError::Store => {
            return pages::error_response(
                &GatewayError::Store(crate::store::StoreError("flow".into())),
                inc,
            )
        }
        FlowError::SignInNeeded if inc.navigation => {
            let rd: String =
                url::form_urlencoded::byte_serialize(format!("{PREFIX}/account").as_bytes())
                    .collect();
            return pages::redirect(&format!("{PREFIX}/?rd={rd}")).finish();
        }
        _ if !inc.navigation => {
            let mut b = HttpResponse::build(status);
            pages::no_store(&mut b);
            if matches!(err, FlowError::SignInNeeded) {
                b.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            let english = crate::i18n::Tr::new(Lang::En)
                .with_wait(err.message(), err.retry_after().unwrap_or(0));
            b.json(serde_json::json!({
                "error": err.code(),
                "error_description": english,
            }))
        }
        _ => match page {
            Some(mut page) => {
                *page.status_mut() = status;
                page
            }
            None => {
                let tr = crate::i18n::Tr::new(inc.lang);
                let message = tr.with_wait(err.message(), err.retry_after().unwrap_or(0));
                let back = format!("{PREFIX}/");
                pages::html(
                    status,
                    &pages::ErrorPage {
                        p: pages::Layout::new(inc.lang, &inc.brand, String::new(), &inc.here),
                        title: tr.t("gwerr.bad_request.title"),
                        message: &message,
                        back: &back,
                        back_label: tr.t("gwerr.back.sign_in"),
                        request_id: &inc.request_id,
                    },
                )
            }
        },
    };
    if let Some(secs) = err.retry_after() {
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// What every form post starts with: the request's facts, the CSRF-checked form, the browser
/// it binds flows to, the page language and the browser's current session.
pub struct Posted {
    /// The request's facts.
    pub inc: Incoming,
    /// The form.
    pub form: Form,
    /// The browser (its CSRF cookie).
    pub browser: Browser,
    /// The page language.
    pub lang: Lang,
    /// The browser's session, fresh, if any.
    pub current: Option<Loaded>,
    /// A captcha token for the step's calls (a replay after a captcha).
    pub captcha: Option<crate::secret::Secret>,
}

impl Posted {
    /// Reads a form post.
    ///
    /// Fails with the error page or JSON for a missing or wrong CSRF token (the body's size and
    /// deadline were checked as it was read).
    pub async fn read(
        gw: &Gateway,
        req: &HttpRequest,
        worker: &Worker,
        body: &[u8],
    ) -> Result<Posted, HttpResponse> {
        let inc = incoming(gw, req);
        let (form, browser) = match csrf_form(gw, req, body) {
            Ok(f) => f,
            Err(e) => return Err(refused_post(gw, req, &inc, &e, body)),
        };
        Ok(Posted {
            current: current_session(gw, req, worker).await,
            lang: gw.lang_of(req),
            inc,
            form,
            browser,
            captcha: None,
        })
    }

    /// A page that shows a flow of this browser (a GET): a navigation, bound to the browser's
    /// CSRF cookie (a new one, matching no flow, when it has none), with `current` as its
    /// session.
    pub fn page(gw: &Gateway, req: &HttpRequest, current: Option<Loaded>) -> Posted {
        let mut inc = incoming(gw, req);
        inc.navigation = true;
        let (csrf, _) = csrf_cookie(gw, req);
        Posted {
            browser: Browser::from_csrf(&csrf),
            lang: gw.lang_of(req),
            form: Form::query(req),
            inc,
            current,
            captcha: None,
        }
    }

    /// A step coming back from a captcha or a provider (a GET carrying no form of its own): the
    /// browser's CSRF cookie, which the step's state or flow id is bound to, and `form`.
    pub async fn returning(gw: &Gateway, req: &HttpRequest, worker: &Worker, form: Form) -> Posted {
        let mut inc = incoming(gw, req);
        inc.navigation = true;
        // The query carries codes, tokens and states: no page links back to it.
        inc.here = String::new();
        Posted {
            current: current_session(gw, req, worker).await,
            lang: gw.lang_of(req),
            browser: existing_browser(gw, req),
            inc,
            form,
            captcha: None,
        }
    }

    /// The flow context for this post.
    pub fn ctx<'a>(&'a self, gw: &'a Gateway, worker: &'a Worker) -> Ctx<'a> {
        let mut c = ctx(
            gw,
            worker,
            &self.inc,
            self.browser,
            self.lang,
            self.current.as_ref(),
        );
        c.captcha = self.captcha.clone();
        c
    }
}

/// The person-readable message for `e` in the request's language.
pub fn message(gw: &Gateway, req: &HttpRequest, e: &FlowError) -> String {
    crate::i18n::Tr::new(gw.lang_of(req)).with_wait(e.message(), e.retry_after().unwrap_or(0))
}

/// A URL-encoded query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
