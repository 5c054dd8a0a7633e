//! The check of a streaming STT provider that has no REST endpoint of its own for keys and
//! models: open its realtime socket exactly as a call would (the registry's protocol builds URL,
//! headers and start messages from the call's configuration), send no audio, end the stream at
//! once, and read the answer. The handshake proves the key (a 401 refuses it); the provider's
//! answer to the configuration proves the model (`RecognitionStarted`, `session_started`, a
//! clean end of stream) or refuses it (an error naming it). Nothing is transcribed.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::error::ProviderError;
use crate::stt::SttConfig;
use crate::stt::protocol::Parsed;

/// Opens, configures and ends one session of `cfg`'s provider within `timeout`; `Ok` when the
/// provider accepted the key and the configuration.
pub(super) async fn probe(cfg: &SttConfig, timeout: Duration) -> Result<(), ProviderError> {
    let mut protocol = crate::stt::protocol_for(cfg)?;
    let provider = protocol.provider();
    let headers = protocol.headers();
    let headers: Vec<(&'static str, &str)> =
        headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut ws = crate::ws::connect(
        provider,
        protocol.url(),
        &headers,
        protocol.error_header(),
        timeout,
        &cfg.outbound,
    )
    .await?;
    let send_failed = |e: tokio_tungstenite::tungstenite::Error| ProviderError::Connect {
        provider,
        message: e.to_string(),
    };
    let exchange = async {
        for message in protocol.start_messages() {
            ws.send(message).await.map_err(send_failed)?;
        }
        let mut closing = false;
        if !protocol.waits_for_ready()
            && let Some(close) = protocol.close()
        {
            ws.send(close).await.map_err(send_failed)?;
            closing = true;
        }
        let mut events = Vec::new();
        while let Some(message) = ws.next().await {
            let parsed = match message {
                Ok(Message::Text(text)) => protocol.parse_text(text.as_str(), 0.0, &mut events),
                Ok(Message::Binary(data)) => protocol.parse_binary(&data, 0.0, &mut events),
                Ok(Message::Close(frame)) => {
                    let refused = frame
                        .and_then(|f| protocol.close_error(u16::from(f.code), f.reason.as_str()));
                    return refused.map_or(Ok(()), Err);
                }
                Ok(_) => continue,
                Err(_) if closing => return Ok(()),
                Err(e) => return Err(send_failed(e)),
            };
            events.clear();
            match parsed {
                Parsed::Fatal(error) => return Err(error),
                Parsed::EndOfStream => return Ok(()),
                Parsed::Ready | Parsed::Transcription if !closing => match protocol.close() {
                    Some(close) => {
                        ws.send(close).await.map_err(send_failed)?;
                        closing = true;
                    }
                    // Ends by closing the socket (ElevenLabs): accepted is all we wanted.
                    None => return Ok(()),
                },
                _ => {}
            }
        }
        Ok(())
    };
    let result = match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError::Timeout {
            provider,
            waiting_for: "the answer to the session's configuration",
            after: timeout,
        }),
    };
    let _ = ws.close(None).await;
    result
}
