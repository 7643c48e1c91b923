//! How people type the names they sign in with, read one way each: e-mail addresses, phone
//! numbers (every spelling of one number becomes the SDK's `+86 13800000000`), user names.
//! Invisible characters (zero-width spaces, direction marks, soft hyphens…), which make one
//! name look like another, are refused with a message saying so. [`limit_key`] gives the form
//! the rate limits count a name under.

use super::FlowError;
use crate::cloudbase::types::Contact;

/// Whether `c` is invisible or zero-width: Unicode format characters (`Cf`: zero-width
/// spaces and joiners, direction marks and isolates, the BOM, tags), variation selectors, the
/// soft hyphen, the combining grapheme joiner and the Hangul and Khmer fillers.
pub fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// Fails with `err.invisible` when `s` has an invisible character.
fn visible(s: &str) -> Result<(), FlowError> {
    if s.chars().any(is_invisible) {
        Err(FlowError::Input("err.invisible"))
    } else {
        Ok(())
    }
}

/// Parses an e-mail address as typed: trimmed, one `@`, no spaces or invisible characters, at
/// most 254 characters. The address is kept as typed (CloudBase decides about case); the rate
/// limits count it case-folded.
///
/// Fails with `err.invisible` or `err.enter_email`.
pub fn parse_email(raw: &str) -> Result<Contact, FlowError> {
    let s = raw.trim();
    visible(s)?;
    let ok = s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(s.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.contains('@') && !domain.starts_with('.') && !domain.ends_with('.'));
    if ok {
        Ok(Contact::Email(s.to_string()))
    } else {
        Err(FlowError::Input("err.enter_email"))
    }
}

/// A phone number as typed, in one form per number: the SDK's `+86 13800000000` for
/// mainland China (`13800000000`, `+86 138 0000 0000`, `+8613800000000`, `008613800000000`,
/// `8613800000000`, the trunk `0` in `+86 013800000000`), `+<digits>` for other countries.
/// Spaces, dashes, dots and brackets are dropped. `None` for anything else.
pub fn canonical_phone(raw: &str) -> Option<String> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let (international, digits) = match compact.strip_prefix('+') {
        Some(d) => (true, d),
        None => match compact.strip_prefix("00") {
            Some(d) => (true, d),
            None => (false, compact.as_str()),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let national = if international {
        match digits.strip_prefix("86") {
            Some(n) => n,
            None => {
                return (6..=15)
                    .contains(&digits.len())
                    .then(|| format!("+{digits}"))
            }
        }
    } else if digits.len() == 13 && digits.starts_with("861") {
        // The country code typed without its `+`, before a mainland mobile number.
        &digits[2..]
    } else {
        digits
    };
    // A trunk `0` is not part of the number (E.164).
    let national = national.strip_prefix('0').unwrap_or(national);
    (5..=12)
        .contains(&national.len())
        .then(|| format!("+86 {national}"))
}

/// Parses a phone number as typed into its one form ([`canonical_phone`]).
///
/// Fails with `err.invisible` or `err.enter_phone`.
pub fn parse_phone(raw: &str) -> Result<Contact, FlowError> {
    visible(raw)?;
    canonical_phone(raw)
        .map(Contact::PhoneNumber)
        .ok_or(FlowError::Input("err.enter_phone"))
}

/// An e-mail address when the input has an `@`, else a phone number.
///
/// Fails with `err.invisible`, `err.enter_email` or `err.enter_contact`.
pub fn parse_contact(raw: &str) -> Result<Contact, FlowError> {
    if raw.trim().is_empty() {
        return Err(FlowError::Input("err.enter_contact"));
    }
    visible(raw)?;
    if raw.contains('@') {
        parse_email(raw)
    } else {
        parse_phone(raw).map_err(|_| FlowError::Input("err.enter_contact"))
    }
}

/// The login name CloudBase expects for a password sign-in: a phone number in its one form
/// ([`canonical_phone`], as the SDK sends it); user names and e-mail addresses as typed. A
/// phone number is one with a `+` or `00` country code, or an all-digit mainland mobile number
/// (`1` and ten digits, with `86` or a trunk `0` in front or not); other all-digit names are
/// user names.
///
/// Fails with `err.invisible`.
pub fn login_name(input: &str) -> Result<String, FlowError> {
    let s = input.trim();
    visible(s)?;
    let compact: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let international = compact.starts_with('+') || compact.starts_with("00");
    let digits = compact.trim_start_matches('+');
    let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let mobile = |d: &str| d.len() == 11 && d.starts_with('1');
    let mainland = mobile(digits)
        || digits.strip_prefix("86").is_some_and(mobile)
        || digits.strip_prefix('0').is_some_and(mobile);
    let phone = all_digits && ((international && digits.len() >= 6) || mainland);
    Ok(match phone.then(|| canonical_phone(&compact)).flatten() {
        Some(p) => p,
        None => s.to_string(),
    })
}

/// The form a rate limit counts a sign-in name or contact under, once read by
/// [`login_name`] or [`parse_contact`]: a phone number in E.164 (`+8613800000001`), anything
/// else case-folded, so that spellings of one name share a count.
pub fn limit_key(name: &str) -> String {
    let name = name.trim();
    if name.starts_with('+') {
        if let Some(p) = canonical_phone(name) {
            return p.replace(' ', "");
        }
    }
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_are_parsed_as_typed() {
        assert_eq!(
            parse_contact(" 138 0000 0001 ").unwrap(),
            Contact::PhoneNumber("+86 13800000001".into())
        );
        assert_eq!(
            parse_contact("Ann@Example.com").unwrap(),
            Contact::Email("Ann@Example.com".into())
        );
        for bad in ["", "a@", "@b.c", "a b@c.d", "a@b", "12ab", "+1"] {
            assert!(parse_contact(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_spelling_of_a_mainland_number_is_one_number() {
        for spelling in [
            "13800000001",
            "138 0000 0001",
            "138-0000-0001",
            "+8613800000001",
            "+86 138 0000 0001",
            "+86013800000001",
            "008613800000001",
            "8613800000001",
            "(+86) 138.0000.0001",
        ] {
            assert_eq!(
                parse_phone(spelling).unwrap(),
                Contact::PhoneNumber("+86 13800000001".into()),
                "{spelling}"
            );
            let read = parse_phone(spelling).unwrap();
            assert_eq!(limit_key(read.value()), "+8613800000001", "{spelling}");
            assert_eq!(limit_key(&login_name(spelling).unwrap()), "+8613800000001");
        }
        assert_eq!(
            canonical_phone("+1 555 123 4567").as_deref(),
            Some("+15551234567")
        );
        for bad in ["", "+", "+86", "12ab", "+1", "1"] {
            assert!(parse_phone(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invisible_characters_are_refused_with_a_message_that_says_so() {
        let invisible = FlowError::Input("err.invisible");
        for raw in [
            "alice@example.com\u{200b}",
            "al\u{200d}ice@example.com",
            "\u{feff}alice@example.com",
            "alice@exa\u{00ad}mple.com",
            "alice@example.com\u{202e}",
        ] {
            assert_eq!(parse_email(raw).unwrap_err(), invisible, "{raw:?}");
            assert_eq!(parse_contact(raw).unwrap_err(), invisible, "{raw:?}");
            assert_eq!(login_name(raw).unwrap_err(), invisible, "{raw:?}");
        }
        assert_eq!(parse_phone("138\u{200b}00000001").unwrap_err(), invisible);
        assert_eq!(login_name("ali\u{2060}ce").unwrap_err(), invisible);
        assert_eq!(
            parse_email("用户@例子.广告").unwrap().value(),
            "用户@例子.广告"
        );
    }

    #[test]
    fn login_names_send_phones_in_the_sdk_form_and_keep_the_rest() {
        let l = |s: &str| login_name(s).unwrap();
        assert_eq!(l("13800000001"), "+86 13800000001");
        assert_eq!(l("+8613800000001"), "+86 13800000001");
        assert_eq!(l("008613800000001"), "+86 13800000001");
        assert_eq!(l("8613800000001"), "+86 13800000001");
        assert_eq!(l("013800000001"), "+86 13800000001");
        assert_eq!(l("138-0000-0001"), "+86 13800000001");
        assert_eq!(l("+86 138 0000 0001"), "+86 13800000001");
        assert_eq!(l(" alice "), "alice");
        assert_eq!(l("alice@example.com"), "alice@example.com");
        assert_eq!(l("12345"), "12345");
        assert_eq!(l("20231234"), "20231234", "an all-digit user name");
        assert_eq!(l("+1 555 123 4567"), "+15551234567");
    }

    #[test]
    fn limit_keys_fold_case_and_phone_spellings() {
        assert_eq!(limit_key("Alice@Example.COM"), "alice@example.com");
        assert_eq!(limit_key("ALICE"), "alice");
        assert_eq!(limit_key("+86 13800000001"), "+8613800000001");
        assert_eq!(limit_key("20231234"), "20231234");
    }
}
