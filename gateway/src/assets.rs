//! The static files the gateway serves itself, built into the binary (no CDN, nothing to
//! install beside it): the visitor widget (`/widget.js`, one `<script>` tag on any page) and
//! a demo page with it (`/`).

/// A file: its path, content type and bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../assets/index.html"),
    },
    Asset {
        path: "/widget.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/widget.js"),
    },
];

/// The asset at `path`, if there is one.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
