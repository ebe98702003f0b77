//! The web pages every node serves: the buyer app at `/`, the operators' dashboard at
//! `/admin`, the gate scanner at `/gate`, and their scripts, styles and the browser SDK from
//! `web/` (see `docs/web.md`).
//!
//! The files are embedded in the binary (rust-embed), so `cargo run --release --bin marquee --
//! demo` serves them on a fresh clone with no build step of their own; in debug builds they are
//! read from `web/` on disk, so a page edited there reloads without a rebuild. Only what a
//! browser loads is embedded (no tests, no `node_modules`).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

/// The browser's files, from the repository's `web/`.
#[derive(RustEmbed)]
#[folder = "../web/"]
#[include = "*.html"]
#[include = "app/*"]
#[include = "sdk/*.js"]
#[include = "sdk/*.d.ts"]
#[include = "css/*"]
#[include = "vendor/*"]
#[include = "assets/*"]
#[exclude = "node_modules/*"]
#[exclude = "test/*"]
struct WebFiles;

/// What a browser may load and run on these pages: only this origin's scripts, styles and
/// sockets (the pages use no inline script), images from here or made in the page (QR codes,
/// camera frames).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self' ws: wss:; media-src 'self' blob:; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The file a path names: `/` is the buyer app, `/admin` and `/gate` the other two pages.
fn file_of(path: &str) -> Option<&str> {
    let path = path.trim_start_matches('/');
    Some(match path {
        "" => "index.html",
        "admin" | "admin/" => "admin.html",
        "gate" | "gate/" => "gate.html",
        other if other.contains("..") => return None,
        other => other,
    })
}

/// Serves a page or an asset for a GET or HEAD that no route took; `None` when there is no
/// such file (the caller answers 404).
pub fn serve(method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let name = file_of(uri.path())?;
    let file = WebFiles::get(name)?;
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.data.into_owned()))
    };
    let h = response.headers_mut();
    let mime = file.metadata.mimetype();
    let mime = if mime.starts_with("text/") || mime.ends_with("javascript") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidated every time (the ETag makes that a 304): a node upgrade shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_pages_have_short_paths_and_nothing_escapes_web() {
        assert_eq!(file_of("/"), Some("index.html"));
        assert_eq!(file_of("/admin"), Some("admin.html"));
        assert_eq!(file_of("/gate/"), Some("gate.html"));
        assert_eq!(file_of("/sdk/marquee.js"), Some("sdk/marquee.js"));
        assert_eq!(file_of("/../Cargo.toml"), None);
    }

    #[test]
    fn the_sdk_is_embedded_and_tests_are_not() {
        assert!(WebFiles::get("sdk/marquee.js").is_some());
        assert!(WebFiles::iter().all(|f| !f.starts_with("test/") && !f.contains("node_modules")));
    }
}
