//! One HTTP/1.1 request to the admin port and its answer, over a blocking
//! `TcpStream` with `Connection: close`: the admin server sends a
//! `Content-Length` body and closes, so reading to the end is the whole answer.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The longest a single request may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of an answer read: the admin's status pages are a few lines.
const MAX_ANSWER: u64 = 64 * 1024;

/// A status code and the body, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.body.trim())
    }
}

pub fn get(admin: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<Answer> {
    request(admin, "GET", path, timeout)
}

pub fn post(admin: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<Answer> {
    request(admin, "POST", path, timeout)
}

fn request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Answer> {
    // A zero timeout means "none" to the socket calls: never that.
    let timeout = timeout.max(Duration::from_millis(10));
    let mut stream = TcpStream::connect_timeout(&admin, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the admin port's answer is not HTTP",
        )
    })
}

/// `HTTP/1.1 503 Service Unavailable\r\n...\r\n\r\nbody`.
fn parse(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    let mut words = status_line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = words.next()?.parse().ok()?;
    Some(Answer {
        status,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_its_status_and_body() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 26\r\n\r\nwaiting for configuration\n";
        let answer = parse(raw).unwrap();
        assert_eq!(answer.status, 503);
        assert_eq!(answer.to_string(), "503 waiting for configuration");
        assert_eq!(parse(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n"), None, "no end of the head");
    }
}
