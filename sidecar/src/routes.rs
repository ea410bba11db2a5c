//! Outbound routing: which upstream an app's request goes to. Pure.
//!
//! Apps point their SDK at `http://127.0.0.1:15001` and keep their own credentials; the sidecar picks the
//! provider by the request path. The longest matching path prefix of `--route PREFIX=URL` (or
//! `AIRLOCK_ROUTES=PREFIX=URL,…`) wins; otherwise the default upstream (`--upstream`, or
//! `https://api.openai.com` in a pod). While the default upstream is OpenAI's, built-in routes (which
//! explicit ones override) send `/v1/messages` and `/v1/complete` to `https://api.anthropic.com`; with
//! another default (a self-hosted server) every path goes there unless a route says otherwise.
//! `/openai/` goes to `AIRLOCK_AZURE_OPENAI_ENDPOINT` when it is set.

use http::uri::{Authority, Scheme};

use crate::{Error, Result};

/// The default upstream in a pod when none is configured.
pub const DEFAULT_UPSTREAM: &str = "https://api.openai.com";
/// The Anthropic API.
pub const ANTHROPIC_UPSTREAM: &str = "https://api.anthropic.com";

/// One upstream base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix prepended to the request path, without a trailing `/` (empty for none).
    pub base_path: String,
}

impl Upstream {
    /// Parses `http(s)://host[:port][/base]`.
    pub fn parse(name: &'static str, url: &str) -> Result<Upstream> {
        let bad = |message: String| Error::Config { name, message };
        let uri: http::Uri = url
            .parse()
            .map_err(|e| bad(format!("`{url}` is not a URL: {e}")))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| bad(format!("`{url}` has no scheme")))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad(format!("`{url}` must start with http:// or https://")));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad(format!("`{url}` has no host")))?;
        if uri.query().is_some() {
            return Err(bad(format!("`{url}` must not have a query")));
        }
        Ok(Upstream {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The host without the port.
    pub fn host(&self) -> &str {
        self.authority.host()
    }

    /// The full URI for `path_and_query` (which starts with `/`).
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.base_path, path_and_query))
            .build()
    }
}

/// The route table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    /// Sorted longest prefix first.
    routes: Vec<(String, Upstream)>,
    default: Upstream,
}

impl Routes {
    /// `default`: the default upstream URL; `routes`: `PREFIX=URL` entries; `azure`: the Azure OpenAI
    /// endpoint, if any.
    pub fn new(default: &str, routes: &[String], azure: Option<&str>) -> Result<Routes> {
        let openai = Upstream::parse("--upstream", DEFAULT_UPSTREAM)?;
        let default = Upstream::parse("--upstream", default)?;
        let mut table: Vec<(String, Upstream)> = Vec::new();
        if default == openai {
            for prefix in ["/v1/messages", "/v1/complete"] {
                table.push((prefix.into(), Upstream::parse("route", ANTHROPIC_UPSTREAM)?));
            }
        }
        if let Some(azure) = azure.filter(|a| !a.is_empty()) {
            table.push((
                "/openai/".into(),
                Upstream::parse("AIRLOCK_AZURE_OPENAI_ENDPOINT", azure)?,
            ));
        }
        for entry in routes
            .iter()
            .flat_map(|r| r.split(','))
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            let (prefix, url) = entry.split_once('=').ok_or_else(|| Error::Config {
                name: "--route",
                message: format!("`{entry}` is not PREFIX=URL, e.g. /v1/messages=https://api.anthropic.com"),
            })?;
            if !prefix.starts_with('/') {
                return Err(Error::Config {
                    name: "--route",
                    message: format!("prefix `{prefix}` must start with /"),
                });
            }
            let upstream = Upstream::parse("--route", url)?;
            table.retain(|(p, _)| p != prefix);
            table.push((prefix.to_string(), upstream));
        }
        table.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(Routes {
            routes: table,
            default,
        })
    }

    /// A table that sends everything to one upstream (inbound mode).
    pub fn single(upstream: Upstream) -> Routes {
        Routes {
            routes: Vec::new(),
            default: upstream,
        }
    }

    /// The upstream for a request path.
    pub fn pick(&self, path: &str) -> &Upstream {
        self.routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, u)| u)
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_defaults_apply() {
        let routes = Routes::new(
            "http://127.0.0.1:8000/base/",
            &[
                "/v1/messages=http://claude.local:9000".into(),
                "/v1/embeddings=https://emb.local".into(),
            ],
            Some("https://acme.openai.azure.com"),
        )
        .unwrap();
        assert_eq!(
            routes.pick("/v1/chat/completions").authority.as_str(),
            "127.0.0.1:8000"
        );
        assert_eq!(
            routes
                .pick("/v1/chat/completions")
                .uri("/v1/chat/completions?x=1")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8000/base/v1/chat/completions?x=1"
        );
        assert_eq!(routes.pick("/v1/messages").host(), "claude.local");
        assert_eq!(routes.pick("/v1/complete").host(), "127.0.0.1");
        let pod = Routes::new(DEFAULT_UPSTREAM, &[], None).unwrap();
        assert_eq!(pod.pick("/v1/messages").host(), "api.anthropic.com");
        assert_eq!(pod.pick("/v1/chat/completions").host(), "api.openai.com");
        assert_eq!(
            routes.pick("/openai/deployments/x/chat/completions").host(),
            "acme.openai.azure.com"
        );
        assert_eq!(routes.pick("/v1/embeddings").scheme, Scheme::HTTPS);
    }

    #[test]
    fn bad_routes_say_what_is_wrong() {
        for (default, route, want) in [
            ("ftp://x", "", "http:// or https://"),
            ("localhost:80", "", "scheme"),
            ("http://x", "nonsense", "PREFIX=URL"),
            ("http://x", "v1=http://y", "must start with /"),
            ("http://x?a=1", "", "query"),
        ] {
            let err = Routes::new(default, &[route.to_string()], None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{default} {route}: {err}");
        }
    }
}
