//! Route matching: host, then path, then method. The most specific match wins:
//!
//! 1. Host: an exact domain beats a wildcard; among wildcards the longer suffix wins
//!    (`*.api.example.com` before `*.example.com`); `*` (any host) comes last. A wildcard
//!    matches any number of labels in front of its suffix, but not the suffix itself.
//! 2. Path, among the routes of the best host tier that matched: an exact path beats every
//!    prefix; among prefixes (`/api/*`) the longer one wins. `/api/*` matches `/api/` and
//!    everything below it, not `/api`.
//! 3. Method: a route that lists methods beats one that does not; a route whose methods do
//!    not include the request's is skipped.
//! 4. Ties (impossible after validation except across hosts) go to the route defined first.
//!
//! When no route of a host tier matches the path, the next less specific host tier is tried,
//! so a catch-all `*` route still serves paths that a domain's own routes do not cover.

use std::collections::HashMap;

use tandem_config::edge::Route;

#[derive(Debug, Clone)]
enum PathPat {
    Exact(String),
    Prefix(String),
}

impl PathPat {
    fn parse(p: &str) -> PathPat {
        match p.strip_suffix('*') {
            Some(prefix) => PathPat::Prefix(prefix.to_string()),
            None => PathPat::Exact(p.to_string()),
        }
    }
    fn matches(&self, path: &str) -> bool {
        match self {
            PathPat::Exact(e) => path == e,
            PathPat::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
    /// Larger is more specific.
    fn rank(&self) -> (u8, usize) {
        match self {
            PathPat::Exact(e) => (1, e.len()),
            PathPat::Prefix(p) => (0, p.len()),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    path: PathPat,
    methods: Vec<http::Method>,
    route: usize,
}

impl Entry {
    fn matches(&self, path: &str, method: &http::Method) -> bool {
        self.path.matches(path) && (self.methods.is_empty() || self.methods.contains(method))
    }
}

fn sort_entries(v: &mut [Entry]) {
    v.sort_by(|a, b| {
        b.path
            .rank()
            .cmp(&a.path.rank())
            .then(b.methods.is_empty().cmp(&a.methods.is_empty()).reverse())
            .then(a.route.cmp(&b.route))
    });
}

/// The routes, indexed for lookup.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, Vec<Entry>>,
    /// `(suffix with leading dot, entries)`, longest suffix first.
    wildcard: Vec<(String, Vec<Entry>)>,
    any: Vec<Entry>,
}

impl RouteTable {
    /// Index `routes`; the returned indices refer to this slice.
    pub fn new(routes: &[Route]) -> RouteTable {
        let mut t = RouteTable::default();
        for (i, r) in routes.iter().enumerate() {
            let methods: Vec<http::Method> = r
                .methods
                .iter()
                .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                .collect();
            for d in &r.domains {
                for p in &r.paths {
                    let e = Entry {
                        path: PathPat::parse(p),
                        methods: methods.clone(),
                        route: i,
                    };
                    if d == "*" {
                        t.any.push(e);
                    } else if let Some(suffix) = d.strip_prefix('*') {
                        match t.wildcard.iter_mut().find(|(s, _)| s == suffix) {
                            Some((_, v)) => v.push(e),
                            None => t.wildcard.push((suffix.to_string(), vec![e])),
                        }
                    } else {
                        t.exact.entry(d.clone()).or_default().push(e);
                    }
                }
            }
        }
        for v in t.exact.values_mut() {
            sort_entries(v);
        }
        for (_, v) in t.wildcard.iter_mut() {
            sort_entries(v);
        }
        t.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        sort_entries(&mut t.any);
        t
    }

    /// The index of the route for a request, if any. `host` is lower case without port.
    pub fn find(&self, host: &str, path: &str, method: &http::Method) -> Option<usize> {
        let pick = |v: &[Entry]| v.iter().find(|e| e.matches(path, method)).map(|e| e.route);
        if let Some(v) = self.exact.get(host)
            && let Some(r) = pick(v)
        {
            return Some(r);
        }
        for (suffix, v) in &self.wildcard {
            if host.len() > suffix.len()
                && host.ends_with(suffix.as_str())
                && let Some(r) = pick(v)
            {
                return Some(r);
            }
        }
        pick(&self.any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_config::edge::HttpMode;

    fn route(name: &str, domains: &[&str], paths: &[&str], methods: &[&str]) -> Route {
        Route {
            name: name.into(),
            domains: domains.iter().map(|s| s.to_string()).collect(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            methods: methods.iter().map(|s| s.to_string()).collect(),
            group: Some("g".into()),
            http: HttpMode::Serve,
            waf: None,
            hsts: false,
        }
    }

    #[test]
    fn precedence() {
        let routes = vec![
            route("any", &["*"], &["/*"], &[]),
            route("wild", &["*.example.com"], &["/*"], &[]),
            route("wild-api", &["*.api.example.com"], &["/*"], &[]),
            route("app", &["app.example.com"], &["/*"], &[]),
            route("app-api", &["app.example.com"], &["/api/*"], &[]),
            route("app-api-v2", &["app.example.com"], &["/api/v2/*"], &[]),
            route("app-login", &["app.example.com"], &["/login"], &[]),
            route("app-post", &["app.example.com"], &["/api/*"], &["POST"]),
            route("only-x", &["x.example.com"], &["/x/*"], &[]),
        ];
        let t = RouteTable::new(&routes);
        let get = http::Method::GET;
        let name =
            |h: &str, p: &str, m: &http::Method| t.find(h, p, m).map(|i| routes[i].name.as_str());
        assert_eq!(name("app.example.com", "/", &get), Some("app"));
        assert_eq!(name("app.example.com", "/api/x", &get), Some("app-api"));
        assert_eq!(
            name("app.example.com", "/api/v2/x", &get),
            Some("app-api-v2")
        );
        assert_eq!(
            name("app.example.com", "/api/x", &http::Method::POST),
            Some("app-post")
        );
        assert_eq!(name("app.example.com", "/login", &get), Some("app-login"));
        assert_eq!(name("app.example.com", "/login/x", &get), Some("app"));
        assert_eq!(name("app.example.com", "/api", &get), Some("app"));
        assert_eq!(name("b.example.com", "/", &get), Some("wild"));
        assert_eq!(name("a.b.example.com", "/", &get), Some("wild"));
        assert_eq!(name("v1.api.example.com", "/", &get), Some("wild-api"));
        assert_eq!(name("example.com", "/", &get), Some("any"));
        assert_eq!(name("other.org", "/", &get), Some("any"));
        // Falls through to the next host tier when the domain's routes miss the path.
        assert_eq!(name("x.example.com", "/y", &get), Some("wild"));
        assert_eq!(name("x.example.com", "/x/1", &get), Some("only-x"));
        let none = RouteTable::new(&routes[3..4]);
        assert_eq!(none.find("other.org", "/", &get), None);
    }
}
