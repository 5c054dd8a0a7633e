//! A minimal websocket client for the strict STT fakes' tests, written from the providers'
//! documentation: connect with headers (and optionally a subprotocol), read JSON messages with a
//! bound on each wait, and read the close frame.

#![allow(dead_code)] // each test file uses a different part

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The client socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Upper bound on any single wait, so a broken fake fails the test instead of hanging it.
pub const GUARD: Duration = Duration::from_secs(10);

/// A refused handshake: status and body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

/// Opens `url` with `headers`.
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, Refused> {
    let mut request = url.into_client_request().expect("request");
    for (k, v) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(Refused {
            status: response.status().as_u16(),
            body: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned(),
        }),
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// Sends a JSON text message.
pub async fn send_json(ws: &mut Ws, value: &Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("send");
}

/// Sends a raw text message.
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.expect("send");
}

/// Sends a binary message.
pub async fn send_binary(ws: &mut Ws, data: &[u8]) {
    ws.send(Message::binary(data.to_vec())).await.expect("send");
}

/// The next JSON text message, or `None` when the socket closed first.
pub async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("a message within the guard")?;
        match message {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).expect("json")),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Reads JSON messages until one satisfies `pred`; returns it and everything read before.
pub async fn until(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let v = next_json(ws).await.expect("socket open");
        if pred(&v) {
            return (v, before);
        }
        before.push(v);
    }
}

/// Reads until the server's close frame; returns its code and reason (and any JSON read).
pub async fn close_frame(ws: &mut Ws) -> (Option<(u16, String)>, Vec<Value>) {
    let mut seen = Vec::new();
    loop {
        let message = tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("close within the guard");
        match message {
            Some(Ok(Message::Text(t))) => {
                seen.push(serde_json::from_str(t.as_str()).expect("json"));
            }
            Some(Ok(Message::Close(frame))) => {
                return (
                    frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                    seen,
                );
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (None, seen),
        }
    }
}

/// `ms` of 8 kHz µ-law voice-like audio starting at sample `start`.
pub fn voice(start_ms: u64, ms: u64) -> Vec<u8> {
    switchboard_testkit::deepgram::mulaw::voice_like(start_ms * 8, (ms * 8) as usize)
}

/// `ms` of 8 kHz µ-law silence.
pub fn silence(ms: u64) -> Vec<u8> {
    vec![0xFF; (ms * 8) as usize]
}
