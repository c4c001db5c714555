//! The server's main port bound at process start, before Node's own networking is loaded
//! (issue #26: a server accepts connections within 100 ms of `exec`). Loading `node:net` and
//! listening with it costs Node 8-10 ms of CPU at startup (its `listen` also loads the cluster
//! module); the addon, which the server loads anyway, binds in microseconds. From `listen` on,
//! the kernel completes connections and holds them in the backlog; the server later hands the
//! descriptor to a `net.Server` (`listen({ fd })`), which accepts them (`server/early-listen.ts`).

use std::net::{IpAddr, SocketAddr, TcpListener};

/// Binds and listens on `host:port` (`host` an IPv4 or IPv6 address; `port` 0: any free port)
/// and returns the socket's file descriptor, which the caller owns from then on (close-on-exec,
/// `SO_REUSEADDR` as Node sets it). Errors: `host` is not an IP address, the bind failed (port
/// in use, no such address), or the platform has no file descriptors (not Unix).
#[napi_derive::napi]
pub fn listen_tcp(host: String, port: u32) -> napi::Result<i32> {
    bind(&host, port)
        .and_then(into_fd)
        .map_err(napi::Error::from_reason)
}

/// The listening socket of [`listen_tcp`]; the error says why there is none.
fn bind(host: &str, port: u32) -> Result<TcpListener, String> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("'{host}' is not an IP address"))?;
    let port = u16::try_from(port).map_err(|_| format!("invalid port {port}"))?;
    TcpListener::bind(SocketAddr::new(ip, port))
        .map_err(|e| format!("cannot listen on {host}:{port}: {e}"))
}

#[cfg(unix)]
fn into_fd(listener: TcpListener) -> Result<i32, String> {
    use std::os::fd::IntoRawFd;
    Ok(listener.into_raw_fd())
}

#[cfg(not(unix))]
fn into_fd(_listener: TcpListener) -> Result<i32, String> {
    Err("listening on a file descriptor needs Unix".into())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    #[test]
    fn the_descriptor_listens_where_asked() {
        let fd = bind("127.0.0.1", 0).and_then(into_fd).unwrap();
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        let addr = listener.local_addr().unwrap();
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        // The kernel completes a connection before anyone accepts it.
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (_, from) = listener.accept().unwrap();
        assert_eq!(from.ip().to_string(), "127.0.0.1");
    }

    #[test]
    fn a_port_in_use_a_host_name_or_a_bad_port_is_an_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = u32::from(taken.local_addr().unwrap().port());
        assert!(bind("127.0.0.1", port)
            .unwrap_err()
            .starts_with("cannot listen on 127.0.0.1"));
        assert!(bind("localhost", 0)
            .unwrap_err()
            .contains("not an IP address"));
        assert!(bind("::1", 70_000).unwrap_err().contains("invalid port"));
    }
}
