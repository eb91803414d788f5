//! `GET /docs`: an interactive page for the OpenAPI document (Swagger UI), served entirely by
//! the gateway. Swagger UI's files are committed in `assets/swagger-ui` with their licence
//! (`scripts/update-swagger-ui` refreshes them) and embedded at build time. The page's Content
//! Security Policy lets it load and call nothing but the gateway.

use volo_http::{
    Bytes,
    http::{
        HeaderValue,
        header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS},
    },
    response::Response,
    server::route::{Router, get},
};

use crate::routes::{Allowed, with_allow};

/// The page and its three files, each at a path of its own (in `GATEWAY_PATHS`).
const PAGE: &str = "/docs";
const CSS: &str = "/docs/swagger-ui.css";
const BUNDLE: &str = "/docs/swagger-ui-bundle.js";
const INIT: &str = "/docs/docs.js";

/// The Swagger UI release embedded, also a cache-busting query on the files' URLs.
const VERSION: &str = include_str!("../assets/swagger-ui/VERSION");

/// Scripts and styles from the gateway only (styles may be inline: Swagger UI sets some),
/// images from it or `data:` URLs, requests to it alone.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                      img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// Adds the page and its files to `router`.
pub(crate) fn mount(router: Router) -> Router {
    let page =
        Bytes::from(include_str!("../assets/docs.html").replace("{version}", VERSION.trim()));
    let files: [(&str, &'static [u8], &str); 3] = [
        (
            CSS,
            include_bytes!("../assets/swagger-ui/swagger-ui.css"),
            "text/css; charset=utf-8",
        ),
        (
            BUNDLE,
            include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
            "text/javascript; charset=utf-8",
        ),
        (
            INIT,
            include_bytes!("../assets/docs.js"),
            "text/javascript; charset=utf-8",
        ),
    ];
    let mut router = router.route(
        PAGE,
        with_allow(
            get(move || {
                let page = page.clone();
                async move { page_response(page) }
            }),
            &Allowed::gateway_path(),
        ),
    );
    for (path, body, content_type) in files {
        router = router.route(
            path,
            with_allow(
                get(move || async move { file_response(body, content_type) }),
                &Allowed::gateway_path(),
            ),
        );
    }
    router
}

fn page_response(page: Bytes) -> Response {
    let mut response = Response::new(page.into());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The page names the files' release: a new gateway's page fetches its own.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn file_response(body: &'static [u8], content_type: &'static str) -> Response {
    let mut response = Response::new(Bytes::from_static(body).into());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_gateway_paths() {
        for path in [PAGE, CSS, BUNDLE, INIT] {
            assert!(rpc::runtime::GATEWAY_PATHS.contains(&path), "{path}");
        }
    }
}
