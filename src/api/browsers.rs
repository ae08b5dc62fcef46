//! What browsers are told, in one middleware layer: which other sites' pages may call the API
//! (CORS, with preflights), the refusal of state-changing requests sent by any other site's
//! page, and the security headers every response carries.
//!
//! Why the refusal: a form-encoded `POST /token` is a CORS "simple request", which a browser
//! sends from any page without asking first. Any site could make its visitors' browsers post
//! guesses (spreading them over the visitors' addresses) or lock those addresses out. Such a
//! request carries an `Origin` header that is not ours, so it is refused before it reaches a
//! handler: nothing is read, hashed or counted. Requests without `Origin` (curl, SDKs, servers)
//! are not browsers' cross-site requests and pass as before.
//!
//! No credentials mode: the API authenticates with bearer tokens an SPA sends itself, never with
//! cookies, so `Access-Control-Allow-Credentials` is never sent and a browser never attaches
//! ambient credentials to a cross-site request.

use std::sync::Arc;

use poem::{
    Endpoint, IntoResponse as _, Request, Response,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
};

use super::error::{is_token_endpoint, plain_error, plain_token_error};
use crate::domain::origin::{serialized_origin, url_origin};

/// The `detail` of the 403 a state-changing request from another site's page gets.
const ORIGIN_NOT_ALLOWED: &str = "Origin not allowed";

/// How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours).
const PREFLIGHT_MAX_AGE_SECONDS: &str = "600";
/// Request headers an SPA needs beyond the CORS-safelisted ones.
const ALLOWED_REQUEST_HEADERS: &str = "Authorization, Content-Type";
/// Response headers an SPA may read beyond the safelisted ones: the challenge of a 401/403, the
/// wait of a 429/503, the next page of a list, and the request's id (to quote in a report).
const EXPOSED_RESPONSE_HEADERS: &str = "WWW-Authenticate, Retry-After, Link, X-Request-Id";
/// Every response other than the Swagger UI page: nothing to load, to run or to frame.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The service's browser policy, built once at start.
#[derive(Debug)]
pub struct BrowserPolicy {
    /// Our own origin when `PORTCULLIS_PUBLIC_URL` is set; else it is taken from each request's
    /// `Host` (see [`BrowserPolicy::own_origin`]).
    public_origin: Option<String>,
    /// `PORTCULLIS_CORS_ALLOWED_ORIGINS`, as browsers serialize origins.
    allowed: Vec<String>,
    /// The methods the API answers, for preflights.
    methods: HeaderValue,
    /// The Swagger UI page's policy: its inline scripts by hash, nothing from elsewhere.
    docs_csp: HeaderValue,
}

/// What the request's `Origin` says about it.
enum Caller {
    /// No `Origin`: not a browser's cross-site request.
    Unknown,
    /// Our own pages or an allow-listed site; the value to echo.
    Allowed(HeaderValue),
    /// Any other site, `Origin: null` (sandboxed frames, `file:` pages, some redirects), or an
    /// `Origin` that is not one.
    Refused,
}

/// Whether a `Host` (already checked to be a host and optional port) names this machine by
/// address, or as `localhost`, rather than by a DNS name someone else may control.
fn is_address_or_localhost(host_and_port: &str) -> bool {
    if host_and_port.starts_with('[') {
        return true; // a bracketed IPv6 address: nothing else is accepted in brackets
    }
    let host = host_and_port
        .rsplit_once(':')
        .map_or(host_and_port, |(host, _port)| host);
    host.parse::<std::net::Ipv4Addr>().is_ok() || host.eq_ignore_ascii_case("localhost")
}

impl BrowserPolicy {
    /// `public_url`: `PORTCULLIS_PUBLIC_URL` (validated); `allowed`: the validated allow-list;
    /// `methods`: what the API answers; `docs_page`: the Swagger UI page as served.
    pub fn new(
        public_url: Option<&str>,
        allowed: Vec<String>,
        methods: &[String],
        docs_page: &str,
    ) -> Self {
        Self {
            public_origin: public_url.and_then(url_origin),
            allowed,
            methods: methods
                .join(", ")
                .parse()
                .expect("method names are header-safe"),
            docs_csp: docs_csp(docs_page)
                .parse()
                .expect("the policy is header-safe"),
        }
    }

    /// Our own origin: that of `PORTCULLIS_PUBLIC_URL` when set, else `http://` and the
    /// request's `Host` — this server speaks plain HTTP, so a page it served itself has that
    /// origin — provided that `Host` is an IP address or `localhost`. A DNS name in `Host` is
    /// not trusted: a hostile site can rebind its own name to this server's address, and its
    /// pages would then send a matching `Host` and `Origin` (DNS rebinding). Served under a name,
    /// or behind a proxy that terminates TLS or rewrites `Host`, set `PORTCULLIS_PUBLIC_URL`
    /// (forwarded headers are not trusted for this).
    fn own_origin(&self, request: &Request) -> Option<String> {
        match &self.public_origin {
            Some(origin) => Some(origin.clone()),
            None => {
                let host = super::wellknown::request_host(request)?;
                is_address_or_localhost(host)
                    .then(|| serialized_origin(&format!("http://{host}")))
                    .flatten()
            }
        }
    }

    fn caller(&self, request: &Request) -> Caller {
        let mut values = request.headers().get_all(header::ORIGIN).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return if request.headers().contains_key(header::ORIGIN) {
                Caller::Refused // more than one
            } else {
                Caller::Unknown
            };
        };
        let Some(origin) = value.to_str().ok().and_then(serialized_origin) else {
            return Caller::Refused;
        };
        if self.allowed.contains(&origin) || self.own_origin(request).as_ref() == Some(&origin) {
            Caller::Allowed(value.clone())
        } else {
            Caller::Refused
        }
    }

    fn preflight(&self, origin: HeaderValue) -> Response {
        Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone())
            .header(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_REQUEST_HEADERS),
            )
            .header(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECONDS),
            )
            .header(header::VARY, HeaderValue::from_static("Origin"))
            .finish()
    }

    /// The headers every response carries.
    fn secure(&self, headers: &mut HeaderMap, is_docs_page: bool) {
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        let csp = if is_docs_page {
            self.docs_csp.clone()
        } else {
            HeaderValue::from_static(API_CSP)
        };
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        // Account data, tokens and errors about them must not stay in any cache; the
        // responses that may be cached (the published keys, the metadata) say so themselves.
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert_with(|| HeaderValue::from_static("no-store"));
    }
}

/// The middleware: refuses other sites' state-changing requests and preflights, answers
/// allowed ones, and adds the CORS and security headers.
pub async fn apply<E: Endpoint>(
    next: E,
    request: Request,
    policy: Arc<BrowserPolicy>,
) -> poem::Result<Response> {
    let caller = policy.caller(&request);
    let is_preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let is_state_changing = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let path = request.uri().path().to_owned();
    let mut response = match caller {
        Caller::Allowed(origin) if is_preflight => policy.preflight(origin),
        Caller::Refused if is_preflight || is_state_changing => {
            tracing::info!("refused a request from another site's page");
            if is_token_endpoint(&path) {
                plain_token_error(StatusCode::FORBIDDEN, ORIGIN_NOT_ALLOWED)
            } else {
                plain_error(StatusCode::FORBIDDEN, ORIGIN_NOT_ALLOWED)
            }
        }
        Caller::Allowed(origin) => {
            let mut response = match next.call(request).await {
                Ok(response) => response.into_response(),
                Err(err) => err.into_response(),
            };
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_RESPONSE_HEADERS),
            );
            response
        }
        Caller::Unknown | Caller::Refused => match next.call(request).await {
            Ok(response) => response.into_response(),
            Err(err) => err.into_response(),
        },
    };
    let is_docs_page = response.status() == StatusCode::OK && (path == "/docs" || path == "/docs/");
    if !policy.allowed.is_empty() {
        // With an allow-list, whether a response carries `Access-Control-Allow-Origin`
        // depends on `Origin`: a shared cache must not hand one site's answer to another.
        let headers = response.headers_mut();
        if !headers
            .get_all(header::VARY)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"origin"))
        {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
    policy.secure(response.headers_mut(), is_docs_page);
    Ok(response)
}

/// The Swagger UI page's Content-Security-Policy: its inline scripts (the bundle, and the one
/// starting it with the inlined document) by their SHA-256, its inline stylesheet, the icons
/// its stylesheet holds as `data:` URLs, and requests to this origin only (logging in, trying
/// operations). Styles need `'unsafe-inline'`: Swagger UI's components set `style` attributes.
fn docs_csp(page: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;

    let scripts: String = inline_scripts(page)
        .map(|script| {
            let digest = sha2::Sha256::digest(script.as_bytes());
            format!(
                " 'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect();
    format!(
        "default-src 'none'; script-src{scripts}; style-src 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'"
    )
}

/// The text of each `<script>` element of `page`. A script's text cannot hold `</script>` (it
/// would end the element), but it may hold `<script`: the search resumes after each end tag.
fn inline_scripts(page: &str) -> impl Iterator<Item = &str> {
    let mut rest = page;
    std::iter::from_fn(move || {
        let start = rest.find("<script")?;
        let (_attributes, after) = rest[start..].split_once('>')?;
        let (script, after) = after.split_once("</script>")?;
        rest = after;
        Some(script)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_address_or_localhost_in_host_names_this_service() {
        for host in [
            "127.0.0.1:8000",
            "10.0.0.5",
            "[::1]:8000",
            "localhost:3000",
            "LOCALHOST",
        ] {
            assert!(is_address_or_localhost(host), "{host}");
        }
        for host in [
            "evil.example:8000",
            "auth.example.com",
            "localhost.evil.example:80",
        ] {
            assert!(!is_address_or_localhost(host), "{host}");
        }
    }

    #[test]
    fn the_docs_policy_allows_exactly_the_pages_inline_scripts() {
        let page = "<html><script charset=\"UTF-8\">one()</script><style>x</style>\
                    <script>two()</script></html>";
        assert_eq!(
            inline_scripts("<script>a('<script>')</script><script>b</script>").collect::<Vec<_>>(),
            ["a('<script>')", "b"]
        );
        let csp = docs_csp(page);
        // printf 'one()' | openssl dgst -sha256 -binary | base64, and the same of `two()`
        assert!(
            csp.contains(
                "script-src 'sha256-HR7iaask9daLMRRskMI++QeJtjWDOjyPA6lGzYGzKW4=' \
                 'sha256-iMrPAWirDC2X0OhZzLsM2MRIWSmepJGI4r7D8ZlwBOw=';"
            ),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-eval"));
    }
}
