//! The hosted pages' languages: zh-CN and en. [`Lang::negotiate`] picks one from `?lang=`, the
//! language cookie, `Accept-Language` and the configured default, in that order; [`Tr`] looks
//! texts up by key for the templates and the flows' messages. Every key exists in both
//! languages (a test reads the templates and the code to check).

use std::collections::HashMap;
use std::sync::LazyLock;

/// A supported language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Simplified Chinese.
    ZhCn,
}

impl Lang {
    /// The BCP 47 tag used in `lang=""`, `?lang=` and the language cookie.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The `Accept-Language` sent to CloudBase, as the SDK sends it.
    pub fn cloudbase_tag(self) -> &'static str {
        match self {
            Lang::En => "en-US",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The other language (for the switcher link).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::ZhCn,
            Lang::ZhCn => Lang::En,
        }
    }

    /// A tag such as `zh`, `zh-Hans-CN`, `EN-gb` → the language, or `None` when unsupported.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::ZhCn),
            _ => None,
        }
    }

    /// The language of a page: an explicit `?lang=` wins, then the cookie a previous `?lang=`
    /// set, then the best-weighted supported entry of `Accept-Language`, then `default`.
    pub fn negotiate(
        query: Option<&str>,
        cookie: Option<&str>,
        accept_language: Option<&str>,
        default: Lang,
    ) -> Lang {
        if let Some(l) = query.and_then(Lang::parse) {
            return l;
        }
        if let Some(l) = cookie.and_then(Lang::parse) {
            return l;
        }
        let mut best: Option<(f32, Lang)> = None;
        for range in accept_language.unwrap_or_default().split(',').take(32) {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or_default();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q <= 0.0 {
                continue;
            }
            if let Some(l) = Lang::parse(tag) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, l));
                }
            }
        }
        best.map(|(_, l)| l).unwrap_or(default)
    }
}

/// Looks texts up in one language. Templates call `tr.t("key")`.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    /// The language.
    pub lang: Lang,
}

impl Tr {
    /// A translator for `lang`.
    pub fn new(lang: Lang) -> Tr {
        Tr { lang }
    }

    /// The text for `key`; the key itself when it is unknown (a test keeps that from happening).
    pub fn t(&self, key: &str) -> &'static str {
        match TEXTS.get(key) {
            Some((en, zh)) => match self.lang {
                Lang::En => en,
                Lang::ZhCn => zh,
            },
            None => {
                debug_assert!(false, "missing text {key}");
                // Leak-free fallback: unknown keys render as a generic message.
                match self.lang {
                    Lang::En => "Something went wrong. Try again.",
                    Lang::ZhCn => "出错了，请重试。",
                }
            }
        }
    }

    /// The text for `key` with `{wait}` replaced by a person-readable duration.
    pub fn with_wait(&self, key: &str, secs: u64) -> String {
        self.t(key).replace("{wait}", &self.duration(secs))
    }

    /// `secs` as "45 seconds", "3 minutes", "2 hours" (rounded up), in this language.
    pub fn duration(&self, secs: u64) -> String {
        let secs = secs.max(1);
        let (n, en, zh) = if secs < 120 {
            (secs, "seconds", "秒")
        } else if secs < 2 * 3600 {
            (secs.div_ceil(60), "minutes", "分钟")
        } else {
            (secs.div_ceil(3600), "hours", "小时")
        };
        match self.lang {
            Lang::En if n == 1 => format!("1 {}", en.trim_end_matches('s')),
            Lang::En => format!("{n} {en}"),
            Lang::ZhCn => format!("{n} {zh}"),
        }
    }
}

static TEXTS: LazyLock<HashMap<&'static str, (&'static str, &'static str)>> =
    LazyLock::new(|| ENTRIES.iter().map(|(k, en, zh)| (*k, (*en, *zh))).collect());

/// Every text: key, English, Simplified Chinese.
pub const ENTRIES: &[(&str, &str, &str)] = &[
    // Shared
    ("lang.switch", "中文", "English"),
    ("common.back_to_sign_in", "Back to sign-in", "返回登录"),
    ("common.request_id", "Request id", "请求 ID"),
    ("common.or", "or", "或"),
    ("common.continue", "Continue", "继续"),
    ("common.cancel", "Cancel", "取消"),
    ("common.to_account", "Back to your account", "返回我的账号"),
    ("common.optional", "optional", "可选"),
    // Login page
    ("login.title", "Sign in", "登录"),
    ("login.methods", "Sign-in methods", "登录方式"),
    ("login.tab.password", "Password", "密码登录"),
    ("login.tab.email", "E-mail code", "邮箱验证码"),
    ("login.tab.sms", "SMS code", "短信验证码"),
    ("login.username", "User name, e-mail or phone", "用户名、邮箱或手机号"),
    ("login.password", "Password", "密码"),
    ("login.submit", "Sign in", "登录"),
    ("login.email", "E-mail address", "邮箱地址"),
    ("login.phone", "Phone number", "手机号"),
    ("login.phone_hint", "Numbers in mainland China need no +86.", "中国大陆手机号无需填写 +86。"),
    ("login.send_code", "Send code", "发送验证码"),
    ("login.code_hint", "New here? The code also creates your account.", "首次使用？验证后将自动创建账号。"),
    ("login.anonymous", "Continue as a guest", "以访客身份继续"),
    ("login.no_account", "No account yet?", "还没有账号？"),
    ("login.sign_up", "Create an account", "注册账号"),
    ("login.forgot", "Forgot your password?", "忘记密码？"),
    ("login.signed_in_as", "You are signed in as", "当前登录身份："),
    ("login.continue_to_app", "Continue to the application", "继续访问应用"),
    ("login.providers", "Or continue with", "或使用以下方式继续"),
    ("provider.wx_open", "WeChat", "微信"),
    ("provider.wx_mp", "WeChat (Official Account)", "微信公众号"),
    ("captcha.title", "Security check", "安全验证"),
    ("captcha.intro", "Type the characters in the picture to continue.", "请输入图片中的字符以继续。"),
    ("captcha.image_alt", "Security check picture", "验证码图片"),
    ("captcha.answer", "Characters", "字符"),
    ("captcha.submit", "Continue", "继续"),
    ("captcha.cancel", "Cancel", "取消"),
    ("login.guest", "You are browsing as a guest. Create an account or sign in to keep your data.", "您正在以访客身份浏览。注册或登录即可保留您的数据。"),
    ("login.no_methods", "No sign-in method is enabled. Contact the site's administrator.", "未启用任何登录方式，请联系网站管理员。"),
    // Code page
    ("code.title", "Enter the code", "输入验证码"),
    ("code.sent_to", "We sent a 6-digit code to", "验证码已发送至"),
    ("code.code", "Verification code", "验证码"),
    ("code.submit", "Continue", "继续"),
    ("code.resend", "Send a new code", "重新发送验证码"),
    ("code.resent", "A new code is on its way.", "新的验证码已发送。"),
    ("code.verified", "Code confirmed. Finish the form below.", "验证码已确认，请完成下方表单。"),
    ("code.username", "User name", "用户名"),
    ("code.name", "Display name", "昵称"),
    ("code.password", "Password", "密码"),
    ("code.new_password", "New password", "新密码"),
    ("code.password_hint", "6 to 64 characters.", "6 到 64 个字符。"),
    ("code.start_over", "Use another e-mail or phone", "使用其他邮箱或手机号"),
    // Sign-up
    ("signup.title", "Create an account", "注册账号"),
    ("signup.contact", "E-mail or phone number", "邮箱或手机号"),
    ("signup.email", "E-mail address", "邮箱地址"),
    ("signup.phone", "Phone number", "手机号"),
    ("signup.intro", "We will send a code to confirm it is yours. You choose your user name and password next.", "我们将发送验证码确认归属，下一步设置用户名和密码。"),
    ("signup.submit", "Send code", "发送验证码"),
    ("signup.have_account", "Already have an account?", "已有账号？"),
    ("signup.upgrade", "Everything you did as a guest stays with your new account.", "访客期间的数据将保留到新账号中。"),
    // Forgot password
    ("forgot.title", "Reset your password", "重置密码"),
    ("forgot.intro", "Enter the e-mail or phone number of your account. We will send a code, then you choose a new password.", "请输入账号绑定的邮箱或手机号。我们将发送验证码，然后您可以设置新密码。"),
    ("forgot.submit", "Send code", "发送验证码"),
    // Account
    ("account.title", "Your account", "我的账号"),
    ("account.uid", "User id", "用户 ID"),
    ("account.name", "Name", "昵称"),
    ("account.username", "User name", "用户名"),
    ("account.email", "E-mail", "邮箱"),
    ("account.phone", "Phone", "手机号"),
    ("account.password", "Password", "密码"),
    ("account.password_is_set", "Set", "已设置"),
    ("account.not_set", "Not set", "未设置"),
    ("account.change", "Change", "修改"),
    ("account.add", "Add", "绑定"),
    ("account.change_email", "Change e-mail", "修改邮箱"),
    ("account.change_phone", "Change phone", "修改手机号"),
    ("account.set_password", "Set a password", "设置密码"),
    ("account.change_password", "Change password", "修改密码"),
    ("account.providers", "Linked sign-in methods", "已关联的登录方式"),
    ("account.linked", "Linked", "已关联"),
    ("account.not_linked", "Not linked", "未关联"),
    ("account.unlink", "Unlink", "解除关联"),
    ("account.link", "Link", "关联"),
    ("account.no_providers", "No third-party sign-in method is available.", "暂无可用的第三方登录方式。"),
    ("account.providers_unavailable", "The linked sign-in methods cannot be shown right now.", "暂时无法显示已关联的登录方式。"),
    ("account.guest", "You are signed in as a guest.", "您当前以访客身份登录。"),
    ("account.upgrade", "Create an account to keep your data", "注册账号以保留数据"),
    ("account.sign_out", "Sign out", "退出登录"),
    ("account.sign_out_everywhere", "Sign out everywhere (every device and app)", "在所有设备和应用上退出登录"),
    ("change.sign_out_others", "Sign out of my other devices", "退出我在其他设备上的登录"),
    ("account.done.email", "Your e-mail address is updated.", "邮箱已更新。"),
    ("account.done.phone", "Your phone number is updated.", "手机号已更新。"),
    ("account.done.password", "Your password is set.", "密码已设置。"),
    ("account.done.password_partial", "Your password is set, but your other devices could not be signed out right now. Use “Sign out everywhere” in a moment.", "密码已设置，但暂时无法退出您在其他设备上的登录，请稍后使用“在所有设备和应用上退出登录”。"),
    ("account.done.unlinked", "The sign-in method is unlinked.", "已解除关联。"),
    ("account.done.linked", "The sign-in method is linked.", "已关联该登录方式。"),
    // Sudo (confirm it's you)
    ("sudo.title", "Confirm it's you", "验证身份"),
    ("sudo.intro", "To keep your account safe, confirm who you are before changing it.", "为保障账号安全，修改前请先验证身份。"),
    ("sudo.intro_link", "Linking {provider} adds a way to sign in to your account, so confirm who you are first.", "关联{provider}会为账号增加一种登录方式，请先验证身份。"),
    ("sudo.with_password", "Confirm with your password", "使用密码验证"),
    ("sudo.with_code", "Or get a code at", "或获取验证码，发送至"),
    ("sudo.send_code", "Send code", "发送验证码"),
    ("sudo.no_method", "Your account has no password, e-mail or phone to confirm with.", "您的账号没有可用于验证的密码、邮箱或手机号。"),
    // Change (after sudo)
    ("change.email", "New e-mail address", "新邮箱"),
    ("change.phone", "New phone number", "新手机号"),
    ("change.password", "New password", "新密码"),
    ("change.send_code", "Send code", "发送验证码"),
    ("change.save_password", "Save password", "保存密码"),
    // Signed out / sign out
    ("signed_out.title", "You are signed out", "您已退出登录"),
    ("signed_out.again", "Sign in again", "重新登录"),
    ("signed_out.partial", "You are signed out of this site on every device, but your other apps could not be signed out right now. Sign in and try “Sign out everywhere” again in a moment.", "您已在所有设备上退出本站，但暂时无法退出您的其他应用。请稍后登录并再次尝试“在所有设备和应用上退出登录”。"),
    ("signout.title", "Sign out?", "确定退出登录？"),
    ("signout.as", "You are signed in as", "当前登录身份："),
    ("signout.submit", "Sign out", "退出登录"),
    ("signout.stay", "Stay signed in", "保持登录"),
    ("signout.guest", "a guest", "访客"),
    // Messages for people (errors of the flows)
    ("err.no_user", "There is no account with this user name, e-mail or phone.", "该用户名、邮箱或手机号没有对应的账号。"),
    ("err.wrong_password", "The password is wrong.", "密码错误。"),
    ("err.password_not_set", "This account has no password. Sign in with a code instead.", "该账号未设置密码，请使用验证码登录。"),
    ("err.blocked", "This account is blocked. Contact the site's administrator.", "该账号已被停用，请联系网站管理员。"),
    ("err.pending", "This account is not activated yet.", "该账号尚未激活。"),
    ("err.too_many", "Too many attempts. Try again later.", "尝试次数过多，请稍后再试。"),
    ("err.too_many_wait", "Too many attempts. Try again in {wait}.", "尝试次数过多，请 {wait}后再试。"),
    ("err.rate_limited", "Too many requests. Try again in {wait}.", "操作过于频繁，请 {wait}后再试。"),
    ("err.code_cooldown", "A code was sent a moment ago. You can ask for another in {wait}.", "验证码刚刚已发送，请 {wait}后再获取。"),
    ("err.code_wrong", "The code is wrong or has expired.", "验证码错误或已过期。"),
    ("err.code_attempts", "Too many wrong codes. Ask for a new code.", "验证码错误次数过多，请重新获取。"),
    ("err.already_registered", "This e-mail or phone is already registered. Sign in instead.", "该邮箱或手机号已注册，请直接登录。"),
    ("err.contact_taken", "This e-mail or phone belongs to another account.", "该邮箱或手机号已绑定其他账号。"),
    ("err.username_taken", "This user name is taken. Choose another.", "该用户名已被占用，请换一个。"),
    ("err.captcha", "The sign-in service asks for a security check (captcha) first. Try again in a moment.", "登录服务要求先完成安全验证（验证码），请稍后重试。"),
    ("err.captcha_failed", "The security check could not be completed. Wait a moment and try again.", "安全验证未能完成，请稍后重试。"),
    ("err.captcha_cancelled", "The security check was cancelled, so nothing was sent. Try again when you are ready.", "安全验证已取消，未执行任何操作。准备好后请重试。"),
    ("err.captcha_wrong", "Those characters do not match the picture. Try this new one.", "输入的字符与图片不符，请看新图片重试。"),
    ("err.unknown_provider", "This sign-in option is not available.", "该登录方式不可用。"),
    ("err.provider_denied", "Signing in with that account was cancelled or refused. Nothing was changed; you can try again.", "第三方账号登录已取消或被拒绝，未做任何更改，可以重试。"),
    ("err.provider_failed", "The other service could not confirm who you are. Try again.", "第三方服务未能确认您的身份，请重试。"),
    ("err.provider_no_user", "No account uses this sign-in yet, and this site does not create accounts by itself.", "尚无账号使用该登录方式，且本站不会自动创建账号。"),
    ("err.provider_taken", "This sign-in is already linked to another account.", "该登录方式已关联到其他账号。"),
    ("err.method_disabled", "This sign-in method is not enabled.", "此登录方式未启用。"),
    ("err.signup_disabled", "New accounts cannot be created here.", "当前不支持注册新账号。"),
    ("err.invalid_input", "Check what you entered and try again.", "请检查输入内容后重试。"),
    ("err.enter_credentials", "Enter your user name and password.", "请输入用户名和密码。"),
    ("err.invisible", "What you entered has invisible characters (often copied along with the text). Type it in again.", "输入内容包含不可见字符（常随复制的文字一起带入），请重新输入。"),
    ("err.enter_email", "Enter a valid e-mail address.", "请输入有效的邮箱地址。"),
    ("err.enter_phone", "Enter a valid phone number.", "请输入有效的手机号。"),
    ("err.enter_contact", "Enter an e-mail address or a phone number.", "请输入邮箱或手机号。"),
    ("err.enter_code", "Enter the 6-digit code.", "请输入 6 位验证码。"),
    ("err.enter_password", "Enter a password.", "请输入密码。"),
    ("err.password_rules", "The password must have 6 to 64 characters.", "密码长度须为 6 到 64 个字符。"),
    ("err.username_rules", "A user name has 2 to 48 letters, digits or - _ . : + @, and starts with a letter or digit.", "用户名为 2 到 48 个字母、数字或 - _ . : + @，并以字母或数字开头。"),
    ("err.session_expired", "Your session has ended. Sign in again.", "登录状态已失效，请重新登录。"),
    ("err.ticket", "The sign-in ticket is invalid, expired, already used or for another environment.", "登录凭证无效、已过期、已被使用或不属于当前环境。"),
    ("err.no_password_sudo", "Your account has no password. Confirm with a code instead.", "您的账号未设置密码，请使用验证码验证。"),
    ("err.last_method", "This is the only way to sign in to your account. Add a password, an e-mail or a phone first.", "这是您账号唯一的登录方式，请先设置密码、邮箱或手机号。"),
    ("err.sudo_needed", "Confirm who you are first.", "请先验证身份。"),
    ("err.not_linked", "This sign-in method is not linked to your account.", "该登录方式未关联到您的账号。"),
    ("err.env_mismatch", "This sign-in link is for another CloudBase environment.", "该登录链接属于其他云开发环境。"),
    ("err.unavailable", "The sign-in service cannot be reached right now. Try again in a moment.", "暂时无法连接登录服务，请稍后再试。"),
    ("err.generic", "The sign-in service refused the request. Try again.", "登录服务拒绝了请求，请重试。"),
    // Error pages (one per gateway error code)
    ("gwerr.unauthenticated.title", "Sign-in needed", "需要登录"),
    ("gwerr.unauthenticated.desc", "You need to sign in to see this.", "请登录后查看此内容。"),
    ("gwerr.forbidden.title", "Access denied", "无权访问"),
    ("gwerr.forbidden.desc", "You are signed in, but your account may not open this page.", "您已登录，但当前账号无权打开此页面。"),
    ("gwerr.csrf_failed.title", "Form expired", "表单已过期"),
    ("gwerr.csrf_failed.desc", "This form is no longer valid: it may have been opened before another tab of this browser started a sign-in. Open it again and submit it once more.", "此表单已失效：可能是在本浏览器的其他标签页开始登录之前打开的。请重新打开表单后再提交。"),
    ("gwerr.bad_request.title", "Bad request", "请求无效"),
    ("gwerr.bad_request.desc", "The request is not valid.", "请求无效。"),
    ("gwerr.not_found.title", "Not found", "页面不存在"),
    ("gwerr.not_found.desc", "There is nothing at this address.", "此地址没有内容。"),
    ("gwerr.headers_too_large.title", "Request headers too large", "请求头过大"),
    ("gwerr.headers_too_large.desc", "The request's headers are too large. Clearing this site's cookies may help.", "请求头过大，清除本站 Cookie 可能有帮助。"),
    ("gwerr.body_too_large.title", "Request too large", "请求过大"),
    ("gwerr.body_too_large.desc", "The request's body is larger than this site accepts.", "请求内容超过了本站允许的大小。"),
    ("gwerr.upstream_unreachable.title", "Application unreachable", "无法连接应用"),
    ("gwerr.upstream_unreachable.desc", "The application behind the gateway cannot be reached. Try again in a moment.", "无法连接网关后的应用，请稍后再试。"),
    ("gwerr.upstream_timeout.title", "Application timed out", "应用响应超时"),
    ("gwerr.upstream_timeout.desc", "The application behind the gateway did not answer in time. Try again in a moment.", "网关后的应用未及时响应，请稍后再试。"),
    ("gwerr.unknown_host.title", "Unknown site", "未知站点"),
    ("gwerr.unknown_host.desc", "This gateway does not serve this site name. Check the address.", "本网关不服务此站点名称，请检查地址。"),
    ("gwerr.body_timeout.title", "Request timed out", "请求超时"),
    ("gwerr.body_timeout.desc", "The request's body did not arrive in time. Check the connection and try again.", "请求内容未能及时送达，请检查网络后重试。"),
    ("gwerr.method_not_allowed.title", "Method not allowed", "不允许的请求方法"),
    ("gwerr.method_not_allowed.desc", "This method is not allowed here.", "此处不允许该请求方法。"),
    ("gwerr.untrusted_proxy.title", "Untrusted proxy", "不受信任的代理"),
    ("gwerr.untrusted_proxy.desc", "Forward-auth answers only the proxies listed in trusted_proxies.", "转发认证只响应 trusted_proxies 中列出的代理。"),
    ("gwerr.cloudbase_unavailable.title", "Temporarily unavailable", "暂时不可用"),
    ("gwerr.cloudbase_unavailable.desc", "The sign-in service cannot be reached right now. Try again in a moment.", "暂时无法连接登录服务，请稍后再试。"),
    ("gwerr.store_unavailable.title", "Temporarily unavailable", "暂时不可用"),
    ("gwerr.store_unavailable.desc", "The sign-in service cannot be reached right now. Try again in a moment.", "暂时无法连接登录服务，请稍后再试。"),
    ("gwerr.cloudbase_error.title", "Sign-in service refused", "登录服务拒绝了请求"),
    ("gwerr.cloudbase_error.desc", "The sign-in service refused the request. Start again from the sign-in page.", "登录服务拒绝了请求，请从登录页重新开始。"),
    ("gwerr.rate_limited.title", "Too many requests", "操作过于频繁"),
    ("gwerr.rate_limited.desc", "Too many requests. Wait a moment and try again.", "操作过于频繁，请稍后再试。"),
    ("gwerr.flow_expired.title", "Start again", "请重新开始"),
    ("gwerr.flow_expired.desc", "This sign-in step expired or was already used. Start again.", "此登录步骤已过期或已被使用，请重新开始。"),
    ("gwerr.state_invalid.title", "Start again", "请重新开始"),
    ("gwerr.state_invalid.desc", "This sign-in link expired or was already used — start again.", "此登录链接已过期或已被使用，请重新开始。"),
    ("gwerr.wrong_environment.title", "Wrong environment", "环境不匹配"),
    ("gwerr.wrong_environment.desc", "This sign-in link is for another CloudBase environment.", "该登录链接属于其他云开发环境。"),
    ("gwerr.back.sign_in", "Go to the sign-in page", "前往登录页"),
    ("gwerr.back.form", "Open the form again", "重新打开表单"),
    ("gwerr.back.start", "Go to the start page", "返回首页"),
    ("gwerr.back.switch_user", "Sign in as someone else", "切换账号登录"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_negotiated_in_order() {
        assert_eq!(
            Lang::negotiate(Some("zh-CN"), Some("en"), Some("en"), Lang::En),
            Lang::ZhCn
        );
        assert_eq!(
            Lang::negotiate(Some("fr"), Some("zh"), None, Lang::En),
            Lang::ZhCn
        );
        assert_eq!(
            Lang::negotiate(None, None, Some("fr-FR,zh-CN;q=0.8,en;q=0.5"), Lang::En),
            Lang::ZhCn
        );
        assert_eq!(
            Lang::negotiate(None, None, Some("zh;q=0.3, en-GB"), Lang::ZhCn),
            Lang::En
        );
        assert_eq!(
            Lang::negotiate(None, None, Some("de, zh;q=0"), Lang::En),
            Lang::En
        );
        assert_eq!(Lang::negotiate(None, None, None, Lang::ZhCn), Lang::ZhCn);
        assert_eq!(Lang::parse("zh_Hans_CN"), Some(Lang::ZhCn));
    }

    #[test]
    fn durations_read_naturally() {
        let en = Tr::new(Lang::En);
        assert_eq!(en.duration(1), "1 second");
        assert_eq!(en.duration(59), "59 seconds");
        assert_eq!(en.duration(300), "5 minutes");
        assert_eq!(en.duration(3601), "61 minutes");
        assert_eq!(en.duration(7300), "3 hours");
        assert_eq!(Tr::new(Lang::ZhCn).duration(300), "5 分钟");
        assert_eq!(
            en.with_wait("err.too_many_wait", 900),
            "Too many attempts. Try again in 15 minutes."
        );
    }

    /// Every `tr.t("…")` in the templates and every text key in the code exists, once, in both
    /// languages.
    #[test]
    fn every_key_used_exists_in_both_languages() {
        let mut seen = std::collections::HashSet::new();
        for (k, en, zh) in ENTRIES {
            assert!(seen.insert(*k), "duplicate key {k}");
            assert!(!en.is_empty() && !zh.is_empty(), "empty text for {k}");
            assert_eq!(en.contains("{wait}"), zh.contains("{wait}"), "{k}");
        }
        let mut used = Vec::new();
        let mut scan = |dir: &str, ext: &str| {
            let mut stack = vec![std::path::PathBuf::from(dir)];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == ext) {
                        let text = std::fs::read_to_string(&p).unwrap();
                        for part in text.split("t(\"").skip(1) {
                            let key = part.split('"').next().unwrap();
                            let text_key = key.contains('.')
                                && key
                                    .chars()
                                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
                            if text_key {
                                used.push((p.display().to_string(), key.to_string()));
                            }
                        }
                    }
                }
            }
        };
        scan(concat!(env!("CARGO_MANIFEST_DIR"), "/templates"), "html");
        scan(concat!(env!("CARGO_MANIFEST_DIR"), "/src"), "rs");
        assert!(used.len() > 50, "the scan found the keys in use");
        for (file, key) in used {
            assert!(
                TEXTS.contains_key(key.as_str()),
                "{file}: missing text {key}"
            );
        }
    }
}
