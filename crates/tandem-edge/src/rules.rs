//! The rules engine: ordered rules, each a set of conditions and a list of actions.
//!
//! Rules run in file order after the route is matched. A rule whose conditions hold applies its
//! actions in order; `stop` ends the evaluation, and so does a `redirect` (the request is
//! answered at the edge). Path rewrites are cumulative: a later rule sees the rewritten path.
//! Host, query and header conditions see the request as the client sent it, plus the header
//! edits of earlier rules.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use regex::Regex;
use tandem_config::edge::{Action, Field, HeaderOp, MatchMode, Op, Rule};

use crate::error::EdgeError;
use crate::headers::{cookie, query_param};

#[derive(Debug)]
enum Matcher {
    Strings {
        op: Op,
        values: Vec<String>,
        ignore_case: bool,
    },
    Regex(Vec<Regex>),
    Exists,
    Cidrs(Vec<IpNet>),
}

#[derive(Debug)]
struct Cond {
    field: Field,
    name: Option<String>,
    matcher: Matcher,
    negate: bool,
}

/// A header edit, ready to apply.
#[derive(Debug, Clone)]
pub struct HeaderEdit {
    op: HeaderOp,
    name: HeaderName,
    value: HeaderValue,
}

impl HeaderEdit {
    /// Apply to a header map.
    pub fn apply(&self, h: &mut HeaderMap) {
        match self.op {
            HeaderOp::Set => {
                h.insert(self.name.clone(), self.value.clone());
            }
            HeaderOp::Append => {
                h.append(self.name.clone(), self.value.clone());
            }
            HeaderOp::Delete => {
                h.remove(&self.name);
            }
        }
    }
}

#[derive(Debug)]
enum Act {
    Rewrite {
        re: Regex,
        to: String,
        keep_query: bool,
    },
    Redirect {
        status: http::StatusCode,
        location: String,
        pattern: Option<Regex>,
    },
    RequestHeader(HeaderEdit),
    ResponseHeader(HeaderEdit),
    OriginGroup(usize),
    Stop,
}

#[derive(Debug)]
struct CompiledRule {
    name: String,
    any: bool,
    conds: Vec<Cond>,
    acts: Vec<Act>,
}

/// The compiled rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
}

fn regex(rule: &str, pattern: &str, ignore_case: bool) -> Result<Regex, EdgeError> {
    let p = if ignore_case {
        format!("(?i){pattern}")
    } else {
        pattern.to_string()
    };
    Regex::new(&p).map_err(|e| EdgeError::Regex {
        rule: rule.into(),
        pattern: pattern.into(),
        reason: e.to_string(),
    })
}

fn edit(op: HeaderOp, name: &str, value: &str, rule: &str) -> Result<HeaderEdit, EdgeError> {
    let bad = |what: &str| EdgeError::Regex {
        rule: rule.into(),
        pattern: format!("{name}: {value}"),
        reason: format!("invalid header {what}"),
    };
    Ok(HeaderEdit {
        op,
        name: HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("name"))?,
        value: HeaderValue::from_str(value).map_err(|_| bad("value"))?,
    })
}

impl RuleSet {
    /// Compile; `group_index` maps a group name to its index.
    pub fn compile(
        rules: &[Rule],
        group_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<RuleSet, EdgeError> {
        let mut out = Vec::new();
        for r in rules {
            let mut conds = Vec::new();
            for c in &r.conditions {
                let matcher = match c.op {
                    Op::Exists => Matcher::Exists,
                    Op::In => Matcher::Cidrs(c.cidrs.clone()),
                    Op::Regex => Matcher::Regex(
                        c.values
                            .iter()
                            .map(|v| regex(&r.name, v, c.ignore_case))
                            .collect::<Result<_, _>>()?,
                    ),
                    op => Matcher::Strings {
                        op,
                        values: c
                            .values
                            .iter()
                            .map(|v| {
                                if c.ignore_case {
                                    v.to_ascii_lowercase()
                                } else {
                                    v.clone()
                                }
                            })
                            .collect(),
                        ignore_case: c.ignore_case,
                    },
                };
                conds.push(Cond {
                    field: c.field,
                    name: c.name.clone(),
                    matcher,
                    negate: c.negate,
                });
            }
            let mut acts = Vec::new();
            for a in &r.actions {
                acts.push(match a {
                    Action::Rewrite {
                        pattern,
                        to,
                        keep_query,
                    } => Act::Rewrite {
                        re: regex(&r.name, pattern, false)?,
                        to: to.clone(),
                        keep_query: *keep_query,
                    },
                    Action::Redirect {
                        status,
                        location,
                        pattern,
                    } => Act::Redirect {
                        status: http::StatusCode::from_u16(*status)
                            .unwrap_or(http::StatusCode::FOUND),
                        location: location.clone(),
                        pattern: pattern
                            .as_deref()
                            .map(|p| regex(&r.name, p, false))
                            .transpose()?,
                    },
                    Action::RequestHeader { op, name, value } => {
                        Act::RequestHeader(edit(*op, name, value, &r.name)?)
                    }
                    Action::ResponseHeader { op, name, value } => {
                        Act::ResponseHeader(edit(*op, name, value, &r.name)?)
                    }
                    Action::OriginGroup { group } => match group_index(group) {
                        Some(i) => Act::OriginGroup(i),
                        None => continue,
                    },
                    Action::Stop => Act::Stop,
                });
            }
            out.push(CompiledRule {
                name: r.name.clone(),
                any: r.match_mode == MatchMode::Any,
                conds,
                acts,
            });
        }
        Ok(RuleSet { rules: out })
    }

    /// Whether there are no rules (the hot path skips the engine).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Run the rules over a request.
    pub fn apply(&self, req: &mut RuleRequest<'_>) -> RuleOutcome {
        let mut out = RuleOutcome::default();
        for rule in &self.rules {
            let hit = if rule.conds.is_empty() {
                true
            } else if rule.any {
                rule.conds.iter().any(|c| c.eval(req))
            } else {
                rule.conds.iter().all(|c| c.eval(req))
            };
            if !hit {
                continue;
            }
            out.matched.push(rule.name.clone());
            for act in &rule.acts {
                match act {
                    Act::Rewrite { re, to, keep_query } => {
                        if let Some(caps) = re.captures(&req.path) {
                            let mut dst = String::new();
                            caps.expand(to, &mut dst);
                            // Replace only the matched part; the rest of the path stays.
                            let m = caps.get(0).map_or(0..0, |m| m.range());
                            let mut new_path = String::with_capacity(req.path.len() + dst.len());
                            new_path.push_str(&req.path[..m.start]);
                            new_path.push_str(&dst);
                            new_path.push_str(&req.path[m.end..]);
                            match new_path.split_once('?') {
                                Some((p, q)) => {
                                    req.query = Some(q.to_string());
                                    req.path = p.to_string();
                                }
                                None => {
                                    req.path = new_path;
                                    if !keep_query {
                                        req.query = None;
                                    }
                                }
                            }
                            out.rewritten = true;
                        }
                    }
                    Act::Redirect {
                        status,
                        location,
                        pattern,
                    } => {
                        let mut loc = String::new();
                        match pattern {
                            Some(re) => match re.captures(&req.path) {
                                Some(caps) => caps.expand(location, &mut loc),
                                None => continue,
                            },
                            None => loc.push_str(location),
                        }
                        let query = req.query.clone().unwrap_or_default();
                        let request_uri = if query.is_empty() {
                            req.path.clone()
                        } else {
                            format!("{}?{}", req.path, query)
                        };
                        let loc = loc
                            .replace("{scheme}", req.scheme)
                            .replace("{host}", req.host)
                            .replace("{path}", &req.path)
                            .replace("{query}", &query)
                            .replace("{request_uri}", &request_uri);
                        out.redirect = Some((*status, loc));
                        return out;
                    }
                    Act::RequestHeader(e) => e.apply(req.headers),
                    Act::ResponseHeader(e) => out.response_headers.push(e.clone()),
                    Act::OriginGroup(g) => out.group = Some(*g),
                    Act::Stop => return out,
                }
            }
        }
        out
    }
}

impl Cond {
    fn eval(&self, req: &RuleRequest<'_>) -> bool {
        let r = self.eval_inner(req);
        r != self.negate
    }

    fn eval_inner(&self, req: &RuleRequest<'_>) -> bool {
        if let Matcher::Cidrs(nets) = &self.matcher {
            return nets.iter().any(|n| n.contains(&req.client_ip));
        }
        let joined;
        let value: Option<&str> = match self.field {
            Field::Host => Some(req.host),
            Field::Path => Some(&req.path),
            Field::Query => match &self.name {
                Some(n) => req.query.as_deref().and_then(|q| query_param(q, n)),
                None => req.query.as_deref().or(Some("")),
            },
            Field::Header => {
                let n = self.name.as_deref().unwrap_or("");
                let vals: Vec<&str> = req
                    .headers
                    .get_all(n)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                if vals.is_empty() {
                    None
                } else {
                    joined = vals.join(", ");
                    Some(joined.as_str())
                }
            }
            Field::Cookie => cookie(req.headers, self.name.as_deref().unwrap_or("")),
            Field::Method => Some(req.method.as_str()),
            Field::Scheme => Some(req.scheme),
            Field::ClientIp => None,
        };
        match &self.matcher {
            Matcher::Exists => value.is_some(),
            Matcher::Regex(res) => value.is_some_and(|v| res.iter().any(|re| re.is_match(v))),
            Matcher::Strings {
                op,
                values,
                ignore_case,
            } => {
                let Some(v) = value else { return false };
                let lowered;
                let v = if *ignore_case {
                    lowered = v.to_ascii_lowercase();
                    lowered.as_str()
                } else {
                    v
                };
                values.iter().any(|x| match op {
                    Op::Equals => v == x,
                    Op::Prefix => v.starts_with(x.as_str()),
                    Op::Suffix => v.ends_with(x.as_str()),
                    Op::Contains => v.contains(x.as_str()),
                    _ => false,
                })
            }
            Matcher::Cidrs(_) => false,
        }
    }
}

/// The request as the rules see and change it.
#[derive(Debug)]
pub struct RuleRequest<'a> {
    /// Host, lower case, no port.
    pub host: &'a str,
    /// Path (rewritable).
    pub path: String,
    /// Query without `?` (rewritable).
    pub query: Option<String>,
    /// Request headers (editable).
    pub headers: &'a mut HeaderMap,
    /// Method.
    pub method: &'a http::Method,
    /// Client address.
    pub client_ip: IpAddr,
    /// `http` or `https`.
    pub scheme: &'a str,
}

/// What the rules decided.
#[derive(Debug, Default)]
pub struct RuleOutcome {
    /// Names of the rules that matched, in order.
    pub matched: Vec<String>,
    /// Answer with this redirect instead of proxying.
    pub redirect: Option<(http::StatusCode, String)>,
    /// Send to this origin group instead of the route's.
    pub group: Option<usize>,
    /// Edits for the response.
    pub response_headers: Vec<HeaderEdit>,
    /// Whether the path or query changed.
    pub rewritten: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_config::edge::Condition;

    fn cond(field: Field, name: Option<&str>, op: Op, values: &[&str]) -> Condition {
        Condition {
            field,
            name: name.map(String::from),
            op,
            values: values.iter().map(|s| s.to_string()).collect(),
            cidrs: if op == Op::In {
                values.iter().filter_map(|v| v.parse().ok()).collect()
            } else {
                vec![]
            },
            negate: false,
            ignore_case: false,
        }
    }

    fn run(rules: &[Rule], path: &str, headers: &mut HeaderMap) -> (RuleOutcome, String) {
        let set = RuleSet::compile(rules, |g| (g == "beta").then_some(7)).expect("compile");
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path.to_string(), None),
        };
        let mut req = RuleRequest {
            host: "app.example.com",
            path: p,
            query: q,
            headers,
            method: &http::Method::GET,
            client_ip: "10.1.2.3".parse().expect("ip"),
            scheme: "https",
        };
        let out = set.apply(&mut req);
        let uri = match &req.query {
            Some(q) => format!("{}?{}", req.path, q),
            None => req.path.clone(),
        };
        (out, uri)
    }

    #[test]
    fn rewrite_with_captures_and_query() {
        let rules = vec![Rule {
            name: "v2".into(),
            match_mode: MatchMode::All,
            conditions: vec![cond(Field::Path, None, Op::Prefix, &["/old/"])],
            actions: vec![Action::Rewrite {
                pattern: "^/old/(.*)$".into(),
                to: "/new/$1".into(),
                keep_query: true,
            }],
        }];
        let mut h = HeaderMap::new();
        let (out, uri) = run(&rules, "/old/a/b?x=1", &mut h);
        assert_eq!(uri, "/new/a/b?x=1");
        assert!(out.rewritten);
        let (_, uri) = run(&rules, "/other", &mut h);
        assert_eq!(uri, "/other");
    }

    #[test]
    fn redirect_headers_group_stop_and_cidr() {
        let rules = vec![
            Rule {
                name: "internal".into(),
                match_mode: MatchMode::All,
                conditions: vec![
                    cond(Field::ClientIp, None, Op::In, &["10.0.0.0/8"]),
                    cond(Field::Cookie, Some("beta"), Op::Equals, &["1"]),
                ],
                actions: vec![
                    Action::OriginGroup {
                        group: "beta".into(),
                    },
                    Action::RequestHeader {
                        op: HeaderOp::Set,
                        name: "x-beta".into(),
                        value: "yes".into(),
                    },
                    Action::ResponseHeader {
                        op: HeaderOp::Append,
                        name: "x-served".into(),
                        value: "beta".into(),
                    },
                    Action::Stop,
                ],
            },
            Rule {
                name: "moved".into(),
                match_mode: MatchMode::Any,
                conditions: vec![
                    cond(Field::Path, None, Op::Regex, &["^/moved/(\\d+)$"]),
                    cond(Field::Header, Some("x-force"), Op::Exists, &[]),
                ],
                actions: vec![Action::Redirect {
                    status: 301,
                    location: "https://{host}/items/$1?{query}".into(),
                    pattern: Some("^/moved/(\\d+)$".into()),
                }],
            },
        ];
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("beta=1"));
        let (out, _) = run(&rules, "/moved/42", &mut h);
        assert_eq!(out.group, Some(7));
        assert_eq!(h["x-beta"], "yes");
        assert_eq!(out.response_headers.len(), 1);
        assert!(out.redirect.is_none(), "stop ends evaluation");

        let mut h = HeaderMap::new();
        let (out, _) = run(&rules, "/moved/42?a=b", &mut h);
        assert_eq!(
            out.redirect,
            Some((
                http::StatusCode::MOVED_PERMANENTLY,
                "https://app.example.com/items/42?a=b".to_string()
            ))
        );
        assert_eq!(out.group, None);
    }

    #[test]
    fn negation_and_ignore_case() {
        let mut c = cond(Field::Header, Some("user-agent"), Op::Contains, &["bot"]);
        c.ignore_case = true;
        c.negate = true;
        let rules = vec![Rule {
            name: "humans".into(),
            match_mode: MatchMode::All,
            conditions: vec![c],
            actions: vec![Action::RequestHeader {
                op: HeaderOp::Set,
                name: "x-human".into(),
                value: "1".into(),
            }],
        }];
        let mut h = HeaderMap::new();
        h.insert("user-agent", HeaderValue::from_static("GoogleBOT/2"));
        run(&rules, "/", &mut h);
        assert!(!h.contains_key("x-human"));
        let mut h = HeaderMap::new();
        h.insert("user-agent", HeaderValue::from_static("Firefox"));
        run(&rules, "/", &mut h);
        assert!(h.contains_key("x-human"));
    }
}
