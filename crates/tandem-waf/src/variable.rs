//! Variables and collections: the names rules inspect, and how a target selects from them.

use std::sync::Arc;

use crate::pattern::Pattern;
use crate::seclang::{RawKey, RawVar};

macro_rules! vars {
    ($( $v:ident = $name:literal, $coll:literal; )*) => {
        /// A variable or collection.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[repr(u8)]
        pub enum Var { $( #[allow(missing_docs)] $v, )* }

        impl Var {
            /// The variable for a name (upper case).
            pub fn from_name(name: &str) -> Option<Var> {
                match name { $( $name => Some(Var::$v), )* _ => None }
            }
            /// The SecLang name.
            pub fn name(self) -> &'static str {
                match self { $( Var::$v => $name, )* }
            }
            /// Whether it is a collection (takes a key, counts with `&`).
            pub fn is_collection(self) -> bool {
                match self { $( Var::$v => $coll, )* }
            }
        }
    };
}

vars! {
    Args = "ARGS", true;
    ArgsGet = "ARGS_GET", true;
    ArgsPost = "ARGS_POST", true;
    ArgsNames = "ARGS_NAMES", true;
    ArgsGetNames = "ARGS_GET_NAMES", true;
    ArgsPostNames = "ARGS_POST_NAMES", true;
    ArgsCombinedSize = "ARGS_COMBINED_SIZE", false;
    RequestHeaders = "REQUEST_HEADERS", true;
    RequestHeadersNames = "REQUEST_HEADERS_NAMES", true;
    RequestCookies = "REQUEST_COOKIES", true;
    RequestCookiesNames = "REQUEST_COOKIES_NAMES", true;
    RequestFilename = "REQUEST_FILENAME", false;
    RequestBasename = "REQUEST_BASENAME", false;
    RequestUri = "REQUEST_URI", false;
    RequestUriRaw = "REQUEST_URI_RAW", false;
    RequestLine = "REQUEST_LINE", false;
    RequestMethod = "REQUEST_METHOD", false;
    RequestProtocol = "REQUEST_PROTOCOL", false;
    QueryString = "QUERY_STRING", false;
    RequestBody = "REQUEST_BODY", false;
    RequestBodyLength = "REQUEST_BODY_LENGTH", false;
    FullRequest = "FULL_REQUEST", false;
    FullRequestLength = "FULL_REQUEST_LENGTH", false;
    Files = "FILES", true;
    FilesNames = "FILES_NAMES", true;
    FilesSizes = "FILES_SIZES", true;
    FilesTmpNames = "FILES_TMPNAMES", true;
    FilesTmpContent = "FILES_TMP_CONTENT", true;
    FilesCombinedSize = "FILES_COMBINED_SIZE", false;
    MultipartPartHeaders = "MULTIPART_PART_HEADERS", true;
    MultipartFilename = "MULTIPART_FILENAME", false;
    MultipartName = "MULTIPART_NAME", false;
    MultipartStrictError = "MULTIPART_STRICT_ERROR", false;
    MultipartUnmatchedBoundary = "MULTIPART_UNMATCHED_BOUNDARY", false;
    MultipartBoundaryQuoted = "MULTIPART_BOUNDARY_QUOTED", false;
    MultipartBoundaryWhitespace = "MULTIPART_BOUNDARY_WHITESPACE", false;
    MultipartDataBefore = "MULTIPART_DATA_BEFORE", false;
    MultipartDataAfter = "MULTIPART_DATA_AFTER", false;
    MultipartHeaderFolding = "MULTIPART_HEADER_FOLDING", false;
    MultipartLfLine = "MULTIPART_LF_LINE", false;
    MultipartCrlfLfLines = "MULTIPART_CRLF_LF_LINES", false;
    MultipartMissingSemicolon = "MULTIPART_MISSING_SEMICOLON", false;
    MultipartInvalidQuoting = "MULTIPART_INVALID_QUOTING", false;
    MultipartInvalidPart = "MULTIPART_INVALID_PART", false;
    MultipartInvalidHeaderFolding = "MULTIPART_INVALID_HEADER_FOLDING", false;
    MultipartFileLimitExceeded = "MULTIPART_FILE_LIMIT_EXCEEDED", false;
    ReqbodyError = "REQBODY_ERROR", false;
    ReqbodyErrorMsg = "REQBODY_ERROR_MSG", false;
    ReqbodyProcessor = "REQBODY_PROCESSOR", false;
    ReqbodyProcessorError = "REQBODY_PROCESSOR_ERROR", false;
    ReqbodyProcessorErrorMsg = "REQBODY_PROCESSOR_ERROR_MSG", false;
    InboundDataError = "INBOUND_DATA_ERROR", false;
    OutboundDataError = "OUTBOUND_DATA_ERROR", false;
    UrlencodedError = "URLENCODED_ERROR", false;
    Xml = "XML", true;
    Tx = "TX", true;
    Ip = "IP", true;
    Global = "GLOBAL", true;
    Session = "SESSION", true;
    User = "USER", true;
    Resource = "RESOURCE", true;
    Env = "ENV", true;
    Geo = "GEO", true;
    Rule = "RULE", true;
    MatchedVar = "MATCHED_VAR", false;
    MatchedVarName = "MATCHED_VAR_NAME", false;
    MatchedVars = "MATCHED_VARS", true;
    MatchedVarsNames = "MATCHED_VARS_NAMES", true;
    RemoteAddr = "REMOTE_ADDR", false;
    RemoteHost = "REMOTE_HOST", false;
    RemotePort = "REMOTE_PORT", false;
    ServerAddr = "SERVER_ADDR", false;
    ServerName = "SERVER_NAME", false;
    ServerPort = "SERVER_PORT", false;
    UniqueId = "UNIQUE_ID", false;
    Duration = "DURATION", false;
    Time = "TIME", false;
    TimeEpoch = "TIME_EPOCH", false;
    HighestSeverity = "HIGHEST_SEVERITY", false;
    ResponseStatus = "RESPONSE_STATUS", false;
    ResponseProtocol = "RESPONSE_PROTOCOL", false;
    ResponseHeaders = "RESPONSE_HEADERS", true;
    ResponseHeadersNames = "RESPONSE_HEADERS_NAMES", true;
    ResponseBody = "RESPONSE_BODY", false;
    ResponseContentType = "RESPONSE_CONTENT_TYPE", false;
    ResponseContentLength = "RESPONSE_CONTENT_LENGTH", false;
    StatusLine = "STATUS_LINE", false;
    AuthType = "AUTH_TYPE", false;
    PathInfo = "PATH_INFO", false;
    UserId = "USERID", false;
    SessionId = "SESSIONID", false;
    WebAppId = "WEBAPPID", false;
}

impl Var {
    /// Whether values of this variable are fixed once the request phase that fills them has
    /// run (so transformation results can be cached for the whole transaction).
    pub fn is_stable(self) -> bool {
        !matches!(
            self,
            Var::Tx
                | Var::Ip
                | Var::Global
                | Var::Session
                | Var::User
                | Var::Resource
                | Var::MatchedVar
                | Var::MatchedVarName
                | Var::MatchedVars
                | Var::MatchedVarsNames
                | Var::Duration
                | Var::Time
                | Var::TimeEpoch
                | Var::HighestSeverity
                | Var::Rule
                | Var::Env
                | Var::Geo
        )
    }
}

impl Var {
    /// Whether the values of this variable are request or response data that a transaction
    /// lists from its parsed request (and caches transformations of), so a rule's literal
    /// prefilter can be decided over all its values at once.
    pub fn is_scanned(self) -> bool {
        matches!(
            self,
            Var::Args
                | Var::ArgsGet
                | Var::ArgsPost
                | Var::ArgsNames
                | Var::ArgsGetNames
                | Var::ArgsPostNames
                | Var::RequestHeaders
                | Var::RequestHeadersNames
                | Var::RequestCookies
                | Var::RequestCookiesNames
                | Var::ResponseHeaders
                | Var::ResponseHeadersNames
                | Var::Files
                | Var::FilesNames
                | Var::FilesSizes
                | Var::MultipartPartHeaders
                | Var::Xml
                | Var::RequestMethod
                | Var::RequestProtocol
                | Var::RequestUriRaw
                | Var::RequestUri
                | Var::RequestFilename
                | Var::RequestBasename
                | Var::QueryString
                | Var::RequestLine
                | Var::RequestBody
                | Var::ResponseBody
                | Var::RemoteAddr
                | Var::RemotePort
                | Var::ServerAddr
                | Var::ServerPort
                | Var::ServerName
                | Var::RemoteHost
                | Var::UniqueId
                | Var::ReqbodyErrorMsg
                | Var::ReqbodyProcessorErrorMsg
                | Var::ResponseStatus
                | Var::ResponseProtocol
                | Var::ResponseContentType
                | Var::MultipartFilename
                | Var::MultipartName
        )
    }
}

/// Whether `hay` contains `needle` (lower case), ASCII-case-insensitively.
fn contains_folded(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    if hay.len() < needle.len() {
        return false;
    }
    let last = hay.len() - needle.len();
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), &hay[..=last])
        .any(|i| hay[i..i + needle.len()].eq_ignore_ascii_case(needle))
}

/// Which members of a collection a target selects.
#[derive(Debug, Clone)]
pub enum Key {
    /// All of them.
    All,
    /// The members with this name (compared case-insensitively; stored lower case).
    Name(String),
    /// The members whose name matches.
    Regex(Arc<KeyRegex>),
}

/// A regular expression that selects members by name (`ARGS:/^id_/`), compiled
/// case-insensitively, with the literals one of which every name it selects contains
/// ([`crate::prefilter::regex_literals`]). Most names contain none of them and are refused
/// without running the regex: `TX:/^MSC_/` is checked against every TX variable, a hundred
/// and more per request.
#[derive(Debug)]
pub struct KeyRegex {
    pattern: Pattern,
    /// Lower-case literals; empty when the pattern has no usable set (every name is tried).
    needles: Vec<Vec<u8>>,
    /// `^literal...`: the literal, and whether it is the whole pattern (`TX:/^header_name_/`).
    prefix: Option<(Vec<u8>, bool)>,
}

/// The literal after a leading `^` (letters, digits, `_` and `-`, which mean themselves),
/// and whether nothing follows it.
fn anchored_prefix(r: &str) -> Option<(Vec<u8>, bool)> {
    let rest = r.strip_prefix('^')?;
    // An alternation would let the other branch match anywhere.
    if rest.contains('|') {
        return None;
    }
    let n = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        .count();
    // A quantifier after the last literal byte would apply to it alone.
    let next = rest.as_bytes().get(n).copied();
    if n == 0 || matches!(next, Some(b'*' | b'+' | b'?' | b'{')) {
        return None;
    }
    Some((rest.as_bytes()[..n].to_ascii_lowercase(), n == rest.len()))
}

impl KeyRegex {
    /// Compile `/r/` (matched case-insensitively).
    pub fn new(r: &str) -> Result<KeyRegex, String> {
        let source = format!("(?i){r}");
        let pattern = Pattern::new(&source)?;
        let needles = if pattern.is_backtracking() {
            Vec::new()
        } else {
            crate::prefilter::regex_literals(&source).unwrap_or_default()
        };
        Ok(KeyRegex {
            pattern,
            needles,
            prefix: anchored_prefix(r),
        })
    }

    /// The pattern as compiled.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Whether `name` matches.
    pub fn is_match(&self, name: &[u8]) -> bool {
        if let Some((p, whole)) = &self.prefix {
            let starts = name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p);
            if starts && *whole {
                return true;
            }
            // `^` also matches after a line feed (multi-line mode): only then can a name
            // that does not start with the literal match.
            if !starts && !name.contains(&b'\n') {
                return false;
            }
        }
        if !self.needles.is_empty() && !self.needles.iter().any(|n| contains_folded(name, n)) {
            return false;
        }
        self.pattern.is_match(name).unwrap_or(false)
    }
}

impl Key {
    /// Whether a member called `name` is selected.
    pub fn selects(&self, name: &[u8]) -> bool {
        match self {
            Key::All => true,
            Key::Name(n) => n.as_bytes().eq_ignore_ascii_case(name),
            Key::Regex(p) => p.is_match(name),
        }
    }

    /// Whether two keys select the same members (for exclusions: `!ARGS:a` cancels `ARGS:a`).
    pub fn same_as(&self, other: &Key) -> bool {
        match (self, other) {
            (Key::All, Key::All) => true,
            (Key::Name(a), Key::Name(b)) => a.eq_ignore_ascii_case(b),
            (Key::Regex(a), Key::Regex(b)) => a.pattern.source() == b.pattern.source(),
            _ => false,
        }
    }
}

/// One entry of a rule's variable list.
#[derive(Debug, Clone)]
pub struct Target {
    /// The variable.
    pub var: Var,
    /// The selector.
    pub key: Key,
    /// `XML:` XPath, when the variable is `XML`.
    pub xpath: Option<String>,
    /// `&`: count instead of values.
    pub count: bool,
    /// `!`: excluded from the list.
    pub exclude: bool,
    /// For `TX:name`: the name's slot in the rule set's TX layout (set at load).
    pub tx_slot: Option<u32>,
    /// For `TX:/regex/`: the slots of the rule set's TX layout whose names the key selects,
    /// a bit each (set at load), so that listing the target tests only names built at run
    /// time against the regex.
    pub tx_slots: Option<Box<[u64]>>,
}

impl Target {
    /// Compile a parsed variable.
    pub fn compile(raw: &RawVar) -> Result<Target, String> {
        let var = Var::from_name(&raw.name).ok_or_else(|| {
            format!(
                "unknown variable {}; see docs/waf.md for the supported variables",
                raw.name
            )
        })?;
        let mut xpath = None;
        let key = match &raw.key {
            None => Key::All,
            Some(_) if !var.is_collection() => {
                return Err(format!(
                    "{} is not a collection and takes no ':key'",
                    raw.name
                ));
            }
            Some(RawKey::Name(n)) if var == Var::Xml => {
                xpath = Some(n.clone());
                Key::All
            }
            Some(RawKey::Name(n)) => Key::Name(n.to_ascii_lowercase()),
            Some(RawKey::Regex(r)) => Key::Regex(Arc::new(
                KeyRegex::new(r).map_err(|e| format!("key /{r}/ of {}: {e}", raw.name))?,
            )),
        };
        Ok(Target {
            var,
            key,
            xpath,
            count: raw.count,
            exclude: raw.exclude,
            tx_slot: None,
            tx_slots: None,
        })
    }

    /// Whether an exclusion target (`!X:k`) removes members of this target.
    pub fn excluded_by(&self, ex: &Target) -> bool {
        self.var == ex.var
    }

    /// `VAR` or `VAR:key` as written, for logs.
    pub fn display(&self) -> String {
        let mut s = String::new();
        if self.exclude {
            s.push('!');
        }
        if self.count {
            s.push('&');
        }
        s.push_str(self.var.name());
        match (&self.key, &self.xpath) {
            (_, Some(x)) => {
                s.push(':');
                s.push_str(x);
            }
            (Key::Name(n), _) => {
                s.push(':');
                s.push_str(n);
            }
            (Key::Regex(r), _) => {
                s.push_str(":/");
                s.push_str(r.pattern().source().trim_start_matches("(?i)"));
                s.push('/');
            }
            (Key::All, _) => {}
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seclang::parse_variables;

    #[test]
    fn compile_targets() {
        let raw = parse_variables("ARGS:Foo|!REQUEST_COOKIES:/^_ga/|&TX:x|XML:/*").expect("parses");
        let t: Vec<Target> = raw
            .iter()
            .map(|r| Target::compile(r).expect("compiles"))
            .collect();
        assert!(t[0].key.selects(b"foo"));
        assert!(t[1].exclude && t[1].key.selects(b"_GAx"));
        assert!(t[2].count);
        assert_eq!(t[3].xpath.as_deref(), Some("/*"));
        assert!(Target::compile(&parse_variables("NOPE").expect("parses")[0]).is_err());
        assert!(Target::compile(&parse_variables("REQUEST_URI:x").expect("parses")[0]).is_err());
    }

    /// The anchored-prefix shortcut answers as the regex does.
    #[test]
    fn anchored_prefix_keys_agree_with_the_regex() {
        let keys = [
            "^header_name_920450_",
            "^_ga",
            "^json\\.",
            "^ab|cd",
            "^abc*",
            "^ab-c[0-9]",
            "^a+",
            "paramcounter_.*",
        ];
        let names: [&[u8]; 12] = [
            b"header_name_920450_host",
            b"HEADER_NAME_920450_",
            b"x_header_name_920450_",
            b"x\nheader_name_920450_y",
            b"_GAxyz",
            b"_g",
            b"json.a",
            b"zcd",
            b"ab",
            b"ab-c7",
            b"aaa",
            b"",
        ];
        for k in keys {
            let fast = KeyRegex::new(k).expect("compiles");
            let plain = Pattern::new(&format!("(?i){k}")).expect("compiles");
            for n in names {
                assert_eq!(
                    fast.is_match(n),
                    plain.is_match(n).expect("decided"),
                    "{k} on {:?}",
                    String::from_utf8_lossy(n)
                );
            }
        }
        assert_eq!(
            anchored_prefix("^header_name_920450_"),
            Some((b"header_name_920450_".to_vec(), true))
        );
        assert_eq!(anchored_prefix("^ab|cd"), None);
        assert_eq!(anchored_prefix("^abc*"), None);
    }
}
