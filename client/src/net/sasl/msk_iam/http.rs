//! A minimal HTTP/1.1 client for the AWS credential endpoints (the ECS/EKS
//! container endpoint and EC2 instance metadata), which are plain HTTP on
//! link-local or loopback addresses: one request per connection, a timeout,
//! a response size cap, `Content-Length` and chunked bodies.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Timeout for each credential-endpoint HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest credential-endpoint response we read.
const HTTP_MAX_RESPONSE: usize = 64 * 1024;

/// A minimal HTTP/1.1 exchange over plain TCP (the credential endpoints are
/// link-local HTTP). Returns the status and body.
pub(super) async fn http_call(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
) -> Result<(u16, Vec<u8>), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// endpoints are supported: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority)?;
    let io = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: */*\r\n"
        );
        for (k, v) in headers {
            if v.contains(['\r', '\n']) {
                return Err(format!("header {k} has a line break"));
            }
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method != "GET" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        (&mut stream)
            .take(HTTP_MAX_RESPONSE as u64 + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        if buf.len() > HTTP_MAX_RESPONSE {
            return Err("response too large".into());
        }
        Ok(buf)
    };
    let buf = tokio::time::timeout(HTTP_TIMEOUT, io)
        .await
        .map_err(|_| format!("timed out talking to {authority}"))??;
    parse_http_response(&buf)
}

pub(super) fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    let bad = || format!("bad endpoint authority {authority:?}");
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => 80,
        };
        return Ok((h.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_owned(), p.parse().map_err(|_| bad())?)),
        None => Ok((authority.to_owned(), 80)),
    }
}

fn parse_http_response(buf: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("truncated HTTP response")?;
    let head = std::str::from_utf8(&buf[..split]).map_err(|_| "HTTP header is not UTF-8")?;
    let body = &buf[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("bad HTTP status line")?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("bad chunk")?;
            let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size")?;
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            let chunk = rest.get(..size).ok_or("truncated chunk")?;
            out.extend_from_slice(chunk);
            rest = rest.get(size + 2..).ok_or("truncated chunk")?;
        }
        out
    } else {
        match length {
            Some(n) => body.get(..n).ok_or("truncated HTTP body")?.to_vec(),
            None => body.to_vec(),
        }
    };
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_bodies() {
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .is_ok_and(|(s, b)| s == 200 && b == b"abcde"));
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").is_err());
    }
}
