//! Who the `send_sms` tool may text, and how often.
//!
//! The LLM writes the tool's arguments, and a caller can talk an LLM into anything, so the
//! number it asks for is not trusted on its own: texting any number the LLM names would turn
//! every assistant into a free SMS relay (spam, toll fraud on premium numbers) paid for by the
//! operator. A recipient other than the caller is accepted only when a person with the right
//! to choose it chose it:
//! - the caller's own number (the default when the LLM names none);
//! - a number the operator listed in the record (`transfer_call.transfer_numbers`);
//! - a number the caller gave during this call, spoken or keyed: its national digits (at least
//!   [`MIN_SPOKEN_DIGITS`]) appear as one run in what the caller said, so "text it to my
//!   mobile, 415 555 0199" lets the LLM send to `+14155550199`.
//!
//! And at most [`MAX_SMS_PER_CALL`] messages leave one call, whoever they go to.

use thiserror::Error;

/// Messages one call may send through `send_sms`.
pub const MAX_SMS_PER_CALL: u32 = 3;

/// Fewest digits of a number the caller said that may name a recipient: a national number
/// is at least this long in every numbering plan the engine calls (E.164 allows up to 15
/// digits, country code included, and national numbers of 7 and more are the norm).
pub const MIN_SPOKEN_DIGITS: usize = 7;

/// Longest E.164 country code, in digits: what a spoken national number may lack.
const MAX_COUNTRY_CODE_DIGITS: usize = 3;

/// Why a recipient the LLM asked for was refused. The text goes back to the LLM as the tool's
/// error, so it can tell the caller what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecipientRefused {
    /// Not `+` and 8-15 digits.
    #[error("`to` must be a phone number in E.164 form, like +14155550123")]
    NotE164,
    /// Neither the caller's, nor listed by the operator, nor given by the caller.
    #[error(
        "messages go only to the caller's number, a number listed by the operator or a number \
         the caller said during this call; ask the caller for the number"
    )]
    NotChosenByCaller,
    /// [`MAX_SMS_PER_CALL`] messages were sent already.
    #[error("no more than {MAX_SMS_PER_CALL} text messages may be sent during one call")]
    TooMany,
}

/// The number to text: the caller's when `requested` is `None` or empty, else `requested`
/// if the rules of this module allow it. `caller_said` is everything the caller said (and
/// keyed) during the call so far, in any form the STT wrote it.
pub fn choose(
    requested: Option<&str>,
    caller: &str,
    listed: &[String],
    caller_said: &str,
) -> Result<String, RecipientRefused> {
    let Some(requested) = requested.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(caller.to_owned());
    };
    let digits = e164_digits(requested).ok_or(RecipientRefused::NotE164)?;
    let same = |other: &str| e164_digits(other).is_some_and(|d| d == digits);
    let caller_digits = e164_digits(caller).unwrap_or("");
    if same(caller)
        || listed.iter().any(|n| same(n))
        || said_by_caller(digits, caller_digits, caller_said)
    {
        Ok(format!("+{digits}"))
    } else {
        Err(RecipientRefused::NotChosenByCaller)
    }
}

/// The digits of an E.164 number (`+` then 8-15 digits; spaces, dashes, dots and brackets
/// between them are tolerated), or `None`.
fn e164_digits(number: &str) -> Option<&str> {
    let rest = number.strip_prefix('+')?;
    let ok = (8..=15).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(rest)
}

/// Whether `digits` (an E.164 number without its `+`) was said by the caller: some run of
/// digits in `said` (digits joined across spaces, dashes, dots and brackets), of at least
/// [`MIN_SPOKEN_DIGITS`] digits, is the whole number, or the number without its country code
/// (at most three digits) when that is the caller's own country code (`caller`: the caller's
/// digits) — a national number means the caller's country.
fn said_by_caller(digits: &str, caller: &str, said: &str) -> bool {
    digit_runs(said).any(|run| {
        let Some(country) = digits.strip_suffix(run.as_str()) else {
            return false;
        };
        run.len() >= MIN_SPOKEN_DIGITS
            && (country.is_empty()
                || (country.len() <= MAX_COUNTRY_CODE_DIGITS && caller.starts_with(country)))
    })
}

/// Runs of digits in `text`, joined across the separators people and STT engines put inside a
/// phone number (`415 555-0199`, `(415) 555.0199`, `+1 415…`). A leading national trunk `0`
/// is dropped from a run (`07700 900123` → `7700900123`), since E.164 never carries it.
fn digit_runs(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_ascii_digit() || " -.()+".contains(c)))
        .map(|piece| {
            let run: String = piece.chars().filter(char::is_ascii_digit).collect();
            match run.strip_prefix('0') {
                Some(national) if !national.starts_with('0') => national.to_owned(),
                _ => run,
            }
        })
        .filter(|run| !run.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: &str = "+14155550100";

    fn pick(requested: Option<&str>, said: &str) -> Result<String, RecipientRefused> {
        choose(requested, CALLER, &["+14155550123".to_owned()], said)
    }

    #[test]
    fn no_number_means_the_callers() {
        assert_eq!(pick(None, "").unwrap(), CALLER);
        assert_eq!(pick(Some("  "), "").unwrap(), CALLER);
    }

    #[test]
    fn the_callers_and_the_listed_numbers_are_allowed() {
        assert_eq!(pick(Some(CALLER), "").unwrap(), CALLER);
        assert_eq!(pick(Some("+14155550123"), "").unwrap(), "+14155550123");
    }

    #[test]
    fn a_number_the_caller_said_is_allowed_in_the_forms_stt_writes_it() {
        for said in [
            "Text it to my mobile, 415 555 0199 please.",
            "it's (415) 555-0199",
            "my cell is 415.555.0199",
            "plus 1 4155550199",
            "+1 415 555 0199",
        ] {
            assert_eq!(
                pick(Some("+14155550199"), said).as_deref(),
                Ok("+14155550199"),
                "{said}"
            );
        }
        // A number of another country, given whole.
        assert_eq!(
            pick(Some("+447700900123"), "it's +44 7700 900123").as_deref(),
            Ok("+447700900123")
        );
        // A UK caller gives a UK number with its trunk prefix.
        assert_eq!(
            choose(Some("+447700900123"), "+447700900001", &[], "07700 900123").as_deref(),
            Ok("+447700900123")
        );
    }

    #[test]
    fn a_number_nobody_chose_is_refused() {
        assert_eq!(
            pick(Some("+14155550199"), "I'd like the address please"),
            Err(RecipientRefused::NotChosenByCaller)
        );
        // A few digits in common are not the number.
        assert_eq!(
            pick(Some("+14155550199"), "my order is 0199"),
            Err(RecipientRefused::NotChosenByCaller)
        );
        // A national number means the caller's country, not any country code the LLM adds.
        assert_eq!(
            pick(Some("+444155550199"), "415 555 0199"),
            Err(RecipientRefused::NotChosenByCaller)
        );
        assert_eq!(
            choose(Some("+447700900123"), CALLER, &[], "07700 900123"),
            Err(RecipientRefused::NotChosenByCaller)
        );
    }

    #[test]
    fn malformed_numbers_are_refused() {
        for bad in [
            "4155550199",
            "+1",
            "+1415555019912345",
            "+1-415-abc",
            "tel:+14155550199",
        ] {
            assert_eq!(
                pick(Some(bad), "4155550199"),
                Err(RecipientRefused::NotE164),
                "{bad}"
            );
        }
    }
}
