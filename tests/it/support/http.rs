//! A small blocking HTTP/1.1 client over `std::net::TcpStream`, for integration tests.
//!
//! It keeps connections alive ([`HttpConn`]), reads Content-Length and chunked bodies, and
//! knows that HEAD, 1xx, 204 and 304 responses have none.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server announced it closes the connection after this response.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// One client connection; several requests may be sent on it in turn (keep-alive).
pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl HttpConn {
    /// Connects to `addr` (`host:port`); `timeout` bounds the connect and every read/write.
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<HttpConn> {
        let sock = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let stream = TcpStream::connect_timeout(&sock, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            stream,
            buf: Vec::new(),
            host: addr.to_owned(),
        })
    }

    /// Sends one request (with `Host` and, when there is a body, `Content-Length`, unless
    /// given in `headers`) and reads its response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if !has("host") {
            head.push_str(&format!("Host: {}\r\n", self.host));
        }
        if !has("content-length") && !has("transfer-encoding") && !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        self.stream.write_all(&out)?;
        self.read_response(method == "HEAD")
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    /// Reads one response (skipping `100 Continue`).
    pub fn read_response(&mut self, head_only: bool) -> io::Result<Response> {
        loop {
            let end = loop {
                if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                    break i + 4;
                }
                self.fill()?;
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.drain(..end);
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
                .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            if status == 100 {
                continue;
            }
            let mut resp = Response {
                status,
                headers,
                body: Vec::new(),
            };
            if head_only || status < 200 || status == 204 || status == 304 {
                return Ok(resp);
            }
            if resp
                .header("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
            {
                resp.body = self.read_chunked()?;
            } else if let Some(len) = resp.header("content-length") {
                let len: usize = len
                    .parse()
                    .map_err(|_| bad(format!("bad content-length {len:?}")))?;
                resp.body = self.take(len)?;
            } else {
                // No length: the body runs to the end of the connection.
                while self.fill_or_eof()? {}
                resp.body = std::mem::take(&mut self.buf);
            }
            return Ok(resp);
        }
    }

    /// Whether the server has closed the connection (reads nothing more, within the timeout).
    pub fn is_closed_by_peer(&mut self) -> bool {
        matches!(self.fill_or_eof(), Ok(false) | Err(_))
    }

    /// Whether the server has already closed this idle connection, without waiting: what an
    /// HTTP client checks before reusing a pooled connection. `false` when unsure.
    pub fn idle_closed(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let closed = match self.stream.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        let _ = self.stream.set_nonblocking(false);
        closed
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.fill_or_eof()? {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ))
        }
    }

    fn fill_or_eof(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.take(size)?);
            self.line()?;
        }
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    HttpConn::connect(addr, timeout)?.request(method, path, &[("Connection", "close")], body)
}

/// `GET path` on a fresh connection, with a 10 s timeout.
pub fn get(addr: &str, path: &str) -> io::Result<Response> {
    request(addr, "GET", path, b"", Duration::from_secs(10))
}

/// Polls `GET path` every 100 ms until it answers `status`, for at most `timeout`.
/// Connection errors (the server not listening yet) count as "not yet".
pub fn wait_for_status(
    addr: &str,
    path: &str,
    status: u16,
    timeout: Duration,
) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match request(addr, "GET", path, b"", Duration::from_secs(5)) {
            Ok(r) if r.status == status => return Ok(r),
            Ok(r) => format!("status {} ({})", r.status, r.text()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "GET http://{addr}{path} did not answer {status} within {timeout:?}; last: {last}"
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
