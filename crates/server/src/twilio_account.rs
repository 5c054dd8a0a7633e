//! Proof, at Twilio, of what an organisation claims about its Twilio account.
//!
//! Without it, any organisation could store an auth token of its choosing and claim any E.164
//! number nobody had assigned yet: the number's real owner would then get 409 when assigning
//! it, its calls would be refused (403, wrong signing token), and the claimant could sign voice
//! webhooks for the number with the token it chose. So:
//!
//! - Twilio credentials are stored only once Twilio accepted them
//!   (`GET /Accounts/{sid}.json` with that SID and token);
//! - a number is assigned only when it is in the organisation's own Twilio account
//!   (`GET /Accounts/{sid}/IncomingPhoneNumbers.json?PhoneNumber=…` with the organisation's
//!   credentials; organisation `default` without credentials of its own uses
//!   `TWILIO_ACCOUNT_SID` / `TWILIO_AUTH_TOKEN`).
//!
//! Twilio failing or unreachable is a 502 and changes nothing.

use switchboard_telephony::rest::{
    AccountStatus, Credentials, IncomingPhoneNumber, RestConfig, RestError, TwilioRest,
};

use crate::error::ApiError;
use crate::state::AppState;

/// Where `PUT /api/v1/organization/telephony` is, for messages that tell the caller to fix
/// their credentials.
const SET_CREDENTIALS: &str = "PUT /api/v1/organization/telephony";

/// A 502 for a Twilio failure that is not the request's fault (5xx, 429, timeout, network,
/// unexpected body). Twilio's message is kept: it names no secret.
fn twilio_failed(what: &str, e: &RestError) -> ApiError {
    tracing::warn!(error = %e, "{what}");
    ApiError::BadGateway(format!("{what}: {e}; nothing was changed, try again later"))
}

/// Checks `creds` with Twilio before they are stored: Twilio must authenticate them and the
/// account must be usable. 422 naming the field when Twilio refuses them; 502 when Twilio cannot
/// answer.
pub async fn verify_credentials(state: &AppState, creds: Credentials) -> Result<(), ApiError> {
    let client = TwilioRest::with_http_client(
        state.http.clone(),
        creds,
        &state.settings.twilio.api_base,
        RestConfig::default().request_timeout,
    )
    .map_err(ApiError::internal)?;
    match client.fetch_account().await {
        Ok(account) => {
            let unusable = match account.status {
                Some(AccountStatus::Suspended) => Some("suspended"),
                Some(AccountStatus::Closed) => Some("closed"),
                _ => None,
            };
            match unusable {
                Some(status) => Err(ApiError::invalid(
                    "account_sid",
                    format!("the Twilio account is {status}; nothing was stored"),
                )),
                None => Ok(()),
            }
        }
        Err(e) if e.is_auth_failure() => Err(ApiError::invalid(
            "auth_token",
            "Twilio rejected these credentials (this account_sid and auth_token do not \
             authenticate); nothing was stored",
        )),
        Err(e) => Err(twilio_failed(
            "could not verify the credentials with Twilio",
            &e,
        )),
    }
}

/// Checks that `number` (E.164) is in the Twilio account of organisation `org_id` before it is
/// assigned, and returns Twilio's record of it. 422 when the organisation has no usable
/// credentials or the number is not in its account; 502 when Twilio cannot answer.
pub async fn require_number_in_account(
    state: &AppState,
    org_id: i64,
    number: &str,
) -> Result<IncomingPhoneNumber, ApiError> {
    match org_client(state, org_id)
        .await?
        .find_incoming_number(number)
        .await
    {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(ApiError::invalid(
            "phone_number",
            format!("number {number} is not in this organisation's Twilio account"),
        )),
        Err(e) => Err(org_request_failed(
            "could not check the number with Twilio",
            &e,
        )),
    }
}

/// Every number of organisation `org_id`'s Twilio account (sync). 422 when the organisation has
/// no usable credentials; 502 when Twilio cannot answer.
pub async fn list_account_numbers(
    state: &AppState,
    org_id: i64,
) -> Result<Vec<IncomingPhoneNumber>, ApiError> {
    org_client(state, org_id)
        .await?
        .list_incoming_numbers()
        .await
        .map_err(|e| org_request_failed("could not list the numbers with Twilio", &e))
}

/// The organisation's Twilio client; 422 when it has no credentials.
async fn org_client(state: &AppState, org_id: i64) -> Result<TwilioRest, ApiError> {
    crate::call::tools::twilio_client(state, org_id)
        .await
        .ok_or_else(|| {
            ApiError::invalid(
                "telephony",
                format!(
                    "this organisation has no Twilio credentials: set them first ({SET_CREDENTIALS})"
                ),
            )
        })
}

/// A failed request with the organisation's stored credentials: 422 when Twilio no longer
/// accepts them, 502 otherwise.
fn org_request_failed(what: &str, e: &RestError) -> ApiError {
    if e.is_auth_failure() {
        ApiError::invalid(
            "telephony",
            format!(
                "Twilio rejected this organisation's credentials; update them ({SET_CREDENTIALS})"
            ),
        )
    } else {
        twilio_failed(what, e)
    }
}
