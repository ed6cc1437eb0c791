//! The original destination of a connection that iptables `REDIRECT`ed to the
//! proxy.
//!
//! `REDIRECT` rewrites a connection's destination to one of the proxy's listeners,
//! so the accepted socket's local address is the proxy's own. The kernel's
//! connection tracking still holds the address the application dialled, and
//! `getsockopt(SO_ORIGINAL_DST)` (IPv4) or `getsockopt(IP6T_SO_ORIGINAL_DST)`
//! (IPv6) reads it back. socket2 makes those calls, so this crate stays free of
//! `unsafe`.
//!
//! A connection that was not redirected has no original destination to report:
//! the kernel answers `ENOENT` (no tracked connection), `ENOPROTOOPT` (connection
//! tracking is not loaded at all), or, when connection tracking is active in the
//! namespace, the socket's own local address. All three read as `None`.
//!
//! Not for: deciding what to do with the address (routing by a Service's cluster
//! IP, or passing it through): that is the caller's job.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The address the peer of `stream`, a connection the proxy accepted, originally
/// dialled; `None` when the connection was not redirected (it was addressed to the
/// proxy itself).
///
/// Errors are the kernel's for anything else (a closed socket, a missing
/// permission): the caller should refuse the connection, since it cannot know
/// where it was going.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn original_dst(stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
    let local = canonical(stream.local_addr()?);
    let socket = socket2::SockRef::from(stream);
    // An IPv4 connection accepted on a dual-stack IPv6 socket has an IPv4-mapped
    // local address; netfilter tracked it as IPv4, so the IPv4 option holds it.
    let answer = match local {
        SocketAddr::V4(_) => socket.original_dst_v4(),
        SocketAddr::V6(_) => socket.original_dst_v6(),
    };
    let original = match answer {
        Ok(addr) => addr.as_socket().map(canonical).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "SO_ORIGINAL_DST returned an address that is neither IPv4 nor IPv6",
            )
        })?,
        Err(error) if not_tracked(&error) => return Ok(None),
        Err(error) => return Err(error),
    };
    Ok((original != local).then_some(original))
}

/// Outside Linux there is no iptables, so nothing was redirected.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn original_dst(_stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
    Ok(None)
}

/// `ENOENT`: connection tracking knows nothing of this connection.
/// `ENOPROTOOPT`: connection tracking is not in the kernel, so nothing can have
/// been redirected either.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn not_tracked(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(libc::ENOPROTOOPT)
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) as the IPv4 address it is, so
/// the local address and the original destination compare alike.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair(listen: &str) -> io::Result<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind(listen).await?;
        let client = TcpStream::connect(listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        Ok((client, server))
    }

    #[tokio::test]
    async fn a_connection_made_straight_to_the_proxy_was_not_redirected() {
        let (_client, server) = pair("127.0.0.1:0").await.unwrap();
        assert_eq!(original_dst(&server).unwrap(), None);
    }

    #[tokio::test]
    async fn an_ipv6_connection_made_straight_to_the_proxy_was_not_redirected() {
        // Some CI containers have no IPv6 loopback: nothing to test there.
        let Ok((_client, server)) = pair("[::1]:0").await else {
            eprintln!("no IPv6 loopback here: skipping");
            return;
        };
        assert_eq!(original_dst(&server).unwrap(), None);
    }

    #[test]
    fn ipv4_mapped_addresses_compare_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().unwrap();
        assert_eq!(canonical(mapped), "10.0.0.1:80".parse().unwrap());
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
