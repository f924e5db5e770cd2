//! A minimal blocking HTTP/1.1 client over a TCP stream: enough for an operator CLI on a trusted network, with no
//! TLS dependency. `https://` URLs are refused with a clear message.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response: status and body bytes.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends `method path` to `base` (`http://host[:port]`) with an optional JSON body, with
/// `Authorization: Bearer key` when `key` is not empty.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&serde_json::Value>,
) -> Result<Answer, String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported, got {base:?}"))?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.is_empty() {
        return Err(format!("the URL must be http://host[:port], got {base:?}"));
    }
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = TcpStream::connect(&addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\n");
    if !key.is_empty() {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    if body.is_some() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    parse(&raw)
}

/// Parses a whole HTTP/1.1 response (`Content-Length`, chunked, or read-to-close bodies).
fn parse(raw: &[u8]) -> Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer has no header end")?;
    let head =
        std::str::from_utf8(&raw[..split]).map_err(|_| "the answer's headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Answer { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies_and_refuses_https() {
        let a = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"{}"[..]));
        let c = parse(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2\r\n\":\r\n2\r\n1}\r\n0\r\n\r\n").unwrap();
        assert_eq!(
            (c.status, String::from_utf8(c.body).unwrap()),
            (404, "{\"a\":1}".to_string())
        );
        assert!(parse(b"garbage").is_err());
        assert!(parse(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        assert!(request("https://x", "GET", "/", "", None)
            .unwrap_err()
            .contains("only http"));
        assert!(request("http://x/y", "GET", "/", "", None)
            .unwrap_err()
            .contains("host[:port]"));
    }

    #[test]
    fn talks_to_a_local_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"status\":\"ready\"}",
            )
            .unwrap();
            req
        });
        let a = request(
            &format!("http://{addr}"),
            "GET",
            "/_miroir/ready",
            "k1",
            None,
        )
        .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b"{\"status\":\"ready\"}");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /_miroir/ready HTTP/1.1\r\n"));
        assert!(req.contains("Authorization: Bearer k1\r\n"));
    }
}
