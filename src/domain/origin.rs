//! Host names and web origins as they arrive in `Host`, `Origin` and configured URLs: checked
//! before anything is built from them, and compared as browsers serialize them.

/// `origin` as browsers serialize it in `Origin` (`scheme://host[:port]`, http or https, lower
/// case, default port omitted), when it is an origin and nothing more.
pub fn serialized_origin(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if !is_host_and_port(authority) {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.ends_with(']') => (host, Some(port.parse::<u16>().ok()?)),
        _ => (authority.as_str(), None),
    };
    Some(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The origin of a URL that may have a path (`https://example.com/auth` → `https://example.com`).
pub fn url_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    serialized_origin(&format!("{scheme}://{authority}"))
}

/// Whether `raw` is a DNS name, an IPv4 address or a bracketed IPv6 address, with an optional
/// port — and nothing else a URL could be bent with (user info, a path, spaces).
pub fn is_host_and_port(raw: &str) -> bool {
    let (host, port) = match raw.strip_prefix('[') {
        Some(bracketed) => {
            let Some((address, rest)) = bracketed.split_once(']') else {
                return false;
            };
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match rest {
                "" => return true,
                _ => return rest.strip_prefix(':').is_some_and(is_port),
            }
        }
        None => match raw.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        },
    };
    is_dns_name(host) && port.is_none_or(is_port)
}

/// Letters, digits and hyphens in dot-separated labels (IPv4 addresses are such names too).
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_compared_as_browsers_serialize_them() {
        assert_eq!(
            serialized_origin("http://127.0.0.1:8000").as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(
            serialized_origin("HTTPS://Example.COM:443").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            serialized_origin("http://[::1]:3000").as_deref(),
            Some("http://[::1]:3000")
        );
        assert_eq!(
            serialized_origin("http://[::1]").as_deref(),
            Some("http://[::1]")
        );
        for not_an_origin in [
            "null",
            "",
            "https://",
            "https://a.example/",
            "ftp://a.example",
            "https://u@a.example",
            "https://a.example:0x1",
            "https://*.example",
        ] {
            assert_eq!(serialized_origin(not_an_origin), None, "{not_an_origin}");
        }
        assert_eq!(
            url_origin("https://auth.example.com/base/").as_deref(),
            Some("https://auth.example.com")
        );
    }

    #[test]
    fn host_names_and_addresses_with_optional_ports_are_accepted() {
        for host in [
            "localhost",
            "localhost:8000",
            "auth.example.com",
            "auth-1.example.com:443",
            "127.0.0.1:8000",
            "[::1]",
            "[::1]:8000",
            "[2001:db8::7]:65535",
        ] {
            assert!(is_host_and_port(host), "{host}");
        }
    }

    #[test]
    fn anything_else_in_host_is_refused() {
        for host in [
            "",
            ":8000",
            "example.com:",
            "example.com:65536",
            "example.com:80:80",
            "example.com:+80",
            "user@example.com",
            "example.com/path",
            "example.com?query",
            "exa mple.com",
            "example..com",
            ".example.com",
            "-example.com",
            "exämple.com",
            "[::1",
            "[::1]x",
            "[not-an-address]",
            "::1",
            "example.com\"><script>",
        ] {
            assert!(!is_host_and_port(host), "{host:?}");
        }
    }
}
