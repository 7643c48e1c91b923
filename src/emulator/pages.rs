//! The emulator's own HTML: the fake provider consent page, the fake captcha page, and the
//! image captcha picture.

use askama::Template;
use base64::Engine;

use crate::entropy::Entropy;

/// The provider consent page: approve or deny, with the provider-side account name.
#[derive(Template)]
#[template(path = "emulator/consent.html")]
pub struct ConsentPage<'a> {
    /// Provider id.
    pub provider_id: &'a str,
    /// Where the decision is sent.
    pub redirect_uri: &'a str,
    /// The caller's state, returned untouched.
    pub state: &'a str,
    /// Suggested provider account.
    pub login: &'a str,
}

/// The redirect captcha page: pass or cancel.
#[derive(Template)]
#[template(path = "emulator/captcha.html")]
pub struct CaptchaPage<'a> {
    /// The captcha session.
    pub id: &'a str,
}

/// A short page for refused requests.
#[derive(Template)]
#[template(path = "emulator/message.html")]
pub struct MessagePage<'a> {
    /// Heading.
    pub title: &'a str,
    /// Explanation.
    pub message: &'a str,
}

/// An SVG picture of `answer` with some noise, as a `data:` URI.
pub fn captcha_svg(answer: &str, entropy: &dyn Entropy) -> String {
    let mut svg = String::from(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40" viewBox="0 0 120 40"><rect width="120" height="40" fill="#f3f3f3"/>"##,
    );
    for _ in 0..4 {
        svg.push_str(&format!(
            r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#9aa" stroke-width="1"/>"##,
            entropy.below(120),
            entropy.below(40),
            entropy.below(120),
            entropy.below(40)
        ));
    }
    for (i, ch) in answer.chars().enumerate() {
        let rotate = entropy.below(30) as i32 - 15;
        let x = 14 + i * 26;
        svg.push_str(&format!(
            r##"<text x="{x}" y="28" font-family="monospace" font-size="24" font-weight="bold" fill="#223" transform="rotate({rotate} {x} 20)">{ch}</text>"##
        ));
    }
    svg.push_str("</svg>");
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    )
}
