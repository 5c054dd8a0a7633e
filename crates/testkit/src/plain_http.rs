//! Plain HTTP requests on a raw-TCP websocket fake's port. The real services answer their small
//! REST endpoints (`GET /v1/voices/{id}`, `GET /v1/projects`…) on the same host as their
//! websockets, and `switchboard providers check` uses them with the same base URL; so the
//! websocket fakes (Deepgram, ElevenLabs, Cartesia) take a request that is not a websocket
//! upgrade off the socket here and answer it themselves, with one response and a close.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head read (bytes); a bigger one is left to the websocket handshake.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// One plain HTTP request (a GET: no body is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRequest {
    /// `GET`, `POST`…
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query parameters in order.
    pub query: Vec<(String, String)>,
    /// Headers, names lower-case, in order.
    pub headers: Vec<(String, String)>,
}

impl PlainRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// First value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A plain request a fake answered, with its status: what tests assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRecord {
    /// The request.
    pub request: PlainRequest,
    /// The status the fake answered.
    pub status: u16,
}

/// Looks at the request head without consuming it: a websocket upgrade (or anything that is
/// not a complete HTTP head) is left on the socket for the handshake and gives `None`; a plain
/// request is read off the socket and returned.
pub(crate) async fn take_plain(stream: &mut TcpStream) -> Option<PlainRequest> {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let head_len = loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if n == buf.len() {
            return None;
        }
        // The rest of the head is on its way (peek does not wait for more bytes).
        tokio::task::yield_now().await;
    };
    let request = parse_head(std::str::from_utf8(&buf[..head_len]).ok()?)?;
    let upgrade = request
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return None;
    }
    let mut head = vec![0u8; head_len];
    stream.read_exact(&mut head).await.ok()?;
    Some(request)
}

fn parse_head(head: &str) -> Option<PlainRequest> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(PlainRequest {
        method,
        path: path.to_owned(),
        query: url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        headers,
    })
}

/// Writes one JSON response and closes the connection.
pub(crate) async fn respond(stream: &mut TcpStream, status: u16, body: &serde_json::Value) {
    respond_with(stream, status, "application/json", &body.to_string()).await;
}

/// Writes one response with `content_type` and closes the connection.
pub(crate) async fn respond_with(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_lower_case_header_names() {
        let r = parse_head(
            "GET /v1/voices/abc?x=1&y=a%20b HTTP/1.1\r\nHost: h\r\nXI-API-Key: k\r\n\r\n",
        )
        .expect("head");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/v1/voices/abc");
        assert_eq!(r.param("y"), Some("a b"));
        assert_eq!(r.header("xi-api-key"), Some("k"));
    }
}
