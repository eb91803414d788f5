//! Which address a server registers: never `0.0.0.0` / `::`.

use std::net::{IpAddr, SocketAddr};

use crate::error::Error;

/// Environment variable (registry-etcd's) naming the IP to register.
pub const ENV_IP_TO_REGISTRY: &str = "KITEX_IP_TO_REGISTRY";
/// Environment variable (registry-etcd's) naming the port to register (e.g. behind NAT).
pub const ENV_PORT_TO_REGISTRY: &str = "KITEX_PORT_TO_REGISTRY";

/// The routable address for a listener bound at `local`.
///
/// IP: `advertise`, else `KITEX_IP_TO_REGISTRY`, else the listener's IP when it is a
/// concrete one (a loopback listener is registered as is), else the first non-loopback,
/// non-link-local IPv4 of the machine. Port: `KITEX_PORT_TO_REGISTRY`, else the listener's.
pub fn routable_address(local: SocketAddr, advertise: Option<IpAddr>) -> Result<SocketAddr, Error> {
    routable_address_with(
        local,
        advertise,
        |name| std::env::var(name).ok(),
        first_host_ipv4,
    )
}

fn routable_address_with(
    local: SocketAddr,
    advertise: Option<IpAddr>,
    env: impl Fn(&str) -> Option<String>,
    host_ipv4: impl FnOnce() -> Option<IpAddr>,
) -> Result<SocketAddr, Error> {
    let env_ip = match env(ENV_IP_TO_REGISTRY).filter(|v| !v.trim().is_empty()) {
        Some(v) => Some(v.trim().parse::<IpAddr>().map_err(|_| {
            Error::NoRoutableAddress(format!("{ENV_IP_TO_REGISTRY}={v:?} is not an IP address"))
        })?),
        None => None,
    };
    let port = match env(ENV_PORT_TO_REGISTRY).filter(|v| !v.trim().is_empty()) {
        Some(v) => v
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                Error::NoRoutableAddress(format!("{ENV_PORT_TO_REGISTRY}={v:?} is not a port"))
            })?,
        None => local.port(),
    };
    let ip = if let Some(ip) = advertise {
        ip
    } else if let Some(ip) = env_ip {
        ip
    } else if !local.ip().is_unspecified() {
        local.ip()
    } else {
        host_ipv4().ok_or_else(|| {
            Error::NoRoutableAddress(format!(
                "listening on {local} and the machine has no non-loopback IPv4 address; \
                 set ServeOptions::advertise or {ENV_IP_TO_REGISTRY}"
            ))
        })?
    };
    if ip.is_unspecified() {
        return Err(Error::NoRoutableAddress(format!(
            "{ip} is not routable; set ServeOptions::advertise or {ENV_IP_TO_REGISTRY}"
        )));
    }
    Ok(SocketAddr::new(ip, port))
}

/// First IPv4 of the machine's interfaces that is neither loopback nor link-local.
fn first_host_ipv4() -> Option<IpAddr> {
    let interfaces = if_addrs::get_if_addrs().ok()?;
    interfaces.into_iter().map(|i| i.ip()).find(|ip| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        local: &str,
        advertise: Option<&str>,
        env: &[(&str, &str)],
        host: Option<&str>,
    ) -> Result<SocketAddr, Error> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        routable_address_with(
            local.parse().unwrap(),
            advertise.map(|a| a.parse().unwrap()),
            |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            || host.map(|h| h.parse().unwrap()),
        )
    }

    #[test]
    fn order_of_preference() {
        let host = Some("10.1.2.3");
        let r = |l, a, e: &[(&str, &str)]| resolve(l, a, e, host).unwrap().to_string();
        assert_eq!(r("0.0.0.0:80", None, &[]), "10.1.2.3:80");
        assert_eq!(r("[::]:80", None, &[]), "10.1.2.3:80");
        assert_eq!(r("127.0.0.1:80", None, &[]), "127.0.0.1:80");
        assert_eq!(
            r("0.0.0.0:80", None, &[(ENV_IP_TO_REGISTRY, "10.9.9.9")]),
            "10.9.9.9:80"
        );
        assert_eq!(
            r(
                "0.0.0.0:80",
                Some("10.7.7.7"),
                &[(ENV_IP_TO_REGISTRY, "10.9.9.9")]
            ),
            "10.7.7.7:80"
        );
        assert_eq!(
            r("0.0.0.0:80", None, &[(ENV_PORT_TO_REGISTRY, "9000")]),
            "10.1.2.3:9000"
        );
    }

    #[test]
    fn never_registers_unspecified() {
        assert!(resolve("0.0.0.0:80", None, &[], None).is_err());
        assert!(resolve("127.0.0.1:80", Some("0.0.0.0"), &[], None).is_err());
        assert!(resolve("0.0.0.0:80", None, &[(ENV_IP_TO_REGISTRY, "nope")], None).is_err());
    }
}
