//! Who is calling: the client's IP and whether the request reached us over TLS, believing
//! `X-Forwarded-For` / `X-Forwarded-Proto` only from the proxy socket and from configured
//! trusted proxies — never from loopback while accounts are isolated, since every agent can
//! connect there and say anything.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::state::AppState;

#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// The client used HTTPS, directly or through a trusted proxy.
    pub https: bool,
}

/// Marks requests that arrived on the proxy socket.
#[derive(Debug, Clone, Copy)]
pub struct ViaProxySocket;

/// Who may speak for a client: the proxies in `trusted`, and whoever reaches the proxy socket.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    pub proxies: &'a [IpNet],
    /// Loopback peers are agents as likely as proxies: never believed.
    pub distrust_loopback: bool,
    pub via_proxy_socket: bool,
}

pub fn resolve(peer: IpAddr, headers: &HeaderMap, trust: Trust<'_>) -> ClientInfo {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| {
        !(trust.distrust_loopback && ip.is_loopback())
            && trust.proxies.iter().any(|net| net.contains(ip))
    };
    if !trust.via_proxy_socket && !is_trusted(&peer) {
        return ClientInfo {
            ip: peer,
            https: false,
        };
    }
    // Walk the chain from the nearest hop; the first address we don't trust is the client.
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    let ip = hops
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer);
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next_back())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    ClientInfo { ip, https }
}

/// Middleware: computes [`ClientInfo`] once per request.
pub async fn middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let trust = Trust {
        proxies: &state.config.trusted_proxies,
        distrust_loopback: state.isolation.enabled(),
        via_proxy_socket: request.extensions().get::<ViaProxySocket>().is_some(),
    };
    let info = resolve(peer, request.headers(), trust);
    request.extensions_mut().insert(info);
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientInfo>()
            .copied()
            .unwrap_or(ClientInfo {
                ip: IpAddr::from([127, 0, 0, 1]),
                https: false,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h
    }

    fn trusting(proxies: &[IpNet]) -> Trust<'_> {
        Trust {
            proxies,
            distrust_loopback: false,
            via_proxy_socket: false,
        }
    }

    #[test]
    fn forwarded_headers_from_untrusted_peers_are_ignored() {
        let info = resolve(
            "203.0.113.9".parse().unwrap(),
            &headers("1.2.3.4"),
            trusting(&[]),
        );
        assert_eq!(info.ip.to_string(), "203.0.113.9");
        assert!(!info.https);
    }

    #[test]
    fn trusted_proxy_yields_the_nearest_untrusted_hop() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        // A client-supplied spoofed first entry is skipped: the rightmost untrusted hop wins.
        let info = resolve(
            "127.0.0.1".parse().unwrap(),
            &headers("6.6.6.6, 198.51.100.7, 10.1.1.1"),
            trusting(&trusted),
        );
        assert_eq!(info.ip.to_string(), "198.51.100.7");
        assert!(info.https);
    }

    #[test]
    fn loopback_is_not_believed_while_agents_share_it_but_the_proxy_socket_is() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let isolated = Trust {
            distrust_loopback: true,
            ..trusting(&trusted)
        };
        let info = resolve(
            "127.0.0.1".parse().unwrap(),
            &headers("198.51.100.7"),
            isolated,
        );
        assert_eq!(info.ip.to_string(), "127.0.0.1");
        assert!(!info.https);
        let socket = Trust {
            via_proxy_socket: true,
            ..isolated
        };
        let info = resolve(
            "127.0.0.1".parse().unwrap(),
            &headers("198.51.100.7"),
            socket,
        );
        assert_eq!(info.ip.to_string(), "198.51.100.7");
        assert!(info.https);
    }

    #[test]
    fn ipv4_mapped_peers_are_canonical() {
        let info = resolve(
            "::ffff:127.0.0.2".parse().unwrap(),
            &HeaderMap::new(),
            trusting(&[]),
        );
        assert_eq!(info.ip.to_string(), "127.0.0.2");
    }
}
