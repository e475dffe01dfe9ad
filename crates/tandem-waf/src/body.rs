//! Request body processors: urlencoded, multipart, JSON and XML, as pure functions from
//! bytes to the values rules inspect. None of them panics or allocates without bound on
//! hostile input: sizes and nesting are limited by the caller's settings.

use crate::transform::url_decode_args;

/// A name/value list, in input order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Appends pairs to a list, taking their buffers from `spare` (pairs an earlier request
/// left, whose capacity is reused) before allocating.
pub(crate) struct PairsFill<'a> {
    out: &'a mut Pairs,
    spare: &'a mut Pairs,
}

impl<'a> PairsFill<'a> {
    pub(crate) fn new(out: &'a mut Pairs, spare: &'a mut Pairs) -> PairsFill<'a> {
        PairsFill { out, spare }
    }

    /// The buffers of a new last pair, empty.
    pub(crate) fn push(&mut self) -> (&mut Vec<u8>, &mut Vec<u8>) {
        let mut p = self.spare.pop().unwrap_or_default();
        p.0.clear();
        p.1.clear();
        self.out.push(p);
        let (n, v) = self.out.last_mut().expect("just pushed");
        (n, v)
    }

    /// Pairs in the list.
    pub(crate) fn len(&self) -> usize {
        self.out.len()
    }
}

/// Parse `a=1&b=2` (query strings and urlencoded bodies). Names and values are
/// percent-decoded and `+` becomes a space. Returns the pairs and whether an invalid escape
/// was seen.
pub fn parse_urlencoded(input: &[u8], sep: u8, limit: usize) -> (Pairs, bool) {
    let mut out = Vec::new();
    let bad = parse_urlencoded_into(
        input,
        sep,
        limit,
        &mut PairsFill::new(&mut out, &mut Vec::new()),
    );
    (out, bad)
}

/// [`parse_urlencoded`] appending to `out`.
pub(crate) fn parse_urlencoded_into(
    input: &[u8],
    sep: u8,
    limit: usize,
    out: &mut PairsFill<'_>,
) -> bool {
    let mut bad = false;
    for token in input.split(|&c| c == sep) {
        if token.is_empty() {
            continue;
        }
        if out.len() >= limit {
            break;
        }
        let (n, v) = match memchr::memchr(b'=', token) {
            Some(p) => (&token[..p], &token[p + 1..]),
            None => (token, &b""[..]),
        };
        bad |= invalid_escape(n) || invalid_escape(v);
        let (name, value) = out.push();
        url_decode_args(n, name);
        url_decode_args(v, value);
    }
    bad
}

fn invalid_escape(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'%', &s[i..]) {
        let k = i + p;
        if k + 2 >= s.len() {
            return true;
        }
        if !(s[k + 1].is_ascii_hexdigit() && s[k + 2].is_ascii_hexdigit()) {
            return true;
        }
        i = k + 3;
    }
    false
}

/// Parse `Cookie` header values: `a=1; b=2`. Names and values are taken as written.
pub fn parse_cookies(header: &[u8], out: &mut Pairs) {
    parse_cookies_into(header, &mut PairsFill::new(out, &mut Vec::new()));
}

/// [`parse_cookies`] appending to `out`.
pub(crate) fn parse_cookies_into(header: &[u8], out: &mut PairsFill<'_>) {
    for part in header.split(|&c| c == b';') {
        let part = part.trim_ascii();
        if part.is_empty() {
            continue;
        }
        let (name, value) = out.push();
        match memchr::memchr(b'=', part) {
            Some(p) => {
                name.extend_from_slice(part[..p].trim_ascii());
                value.extend_from_slice(&part[p + 1..]);
            }
            None => name.extend_from_slice(part),
        }
    }
}

/// What the multipart parser found.
#[derive(Debug, Default, Clone)]
pub struct Multipart {
    /// Non-file fields.
    pub args: Pairs,
    /// File fields: (field name, file name).
    pub files: Pairs,
    /// File sizes: (field name, size as text).
    pub file_sizes: Pairs,
    /// Sum of file sizes.
    pub files_combined_size: usize,
    /// Every part header: (field name, `Name: value` line).
    pub part_headers: Pairs,
    /// Last seen file name.
    pub last_filename: Vec<u8>,
    /// Last seen field name.
    pub last_name: Vec<u8>,
    /// Parse error message, if the body is not valid multipart.
    pub error: Option<String>,
    /// Strict-validation flags.
    pub flags: MultipartFlags,
}

/// ModSecurity's multipart strictness flags.
#[derive(Debug, Default, Clone, Copy)]
#[allow(missing_docs)]
pub struct MultipartFlags {
    pub boundary_quoted: bool,
    pub boundary_whitespace: bool,
    pub data_before: bool,
    pub data_after: bool,
    pub header_folding: bool,
    pub lf_line: bool,
    pub crlf_lf_lines: bool,
    pub missing_semicolon: bool,
    pub invalid_quoting: bool,
    pub invalid_part: bool,
    pub invalid_header_folding: bool,
    pub file_limit_exceeded: bool,
    pub unmatched_boundary: bool,
}

impl MultipartFlags {
    /// Whether any strict-validation flag is raised.
    pub fn strict_error(&self, has_error: bool) -> bool {
        has_error
            || self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
            || self.file_limit_exceeded
    }
}

/// The boundary from a `multipart/form-data; boundary=...` content type.
pub fn multipart_boundary(content_type: &[u8], flags: &mut MultipartFlags) -> Option<Vec<u8>> {
    let lower = content_type.to_ascii_lowercase();
    let p = memchr::memmem::find(&lower, b"boundary")?;
    let mut rest = &content_type[p + 8..];
    let ws = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
    if ws > 0 {
        flags.boundary_whitespace = true;
    }
    rest = &rest[ws..];
    rest = rest.strip_prefix(b"=")?;
    let ws = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
    if ws > 0 {
        flags.boundary_whitespace = true;
    }
    rest = &rest[ws..];
    let b: Vec<u8> = if let Some(q) = rest.strip_prefix(b"\"") {
        flags.boundary_quoted = true;
        let end = memchr::memchr(b'"', q)?;
        q[..end].to_vec()
    } else {
        let end = rest
            .iter()
            .position(|&c| c == b';' || c == b',' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        rest[..end].to_vec()
    };
    if b.is_empty() || b.len() > 70 {
        return None;
    }
    Some(b)
}

/// Parse a multipart body. `max_files` bounds the number of file parts.
pub fn parse_multipart(body: &[u8], boundary: &[u8], max_files: usize, limit: usize) -> Multipart {
    let mut mp = Multipart::default();
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delim);
    // Find every delimiter that starts a line.
    let mut positions = Vec::new();
    let mut from = 0;
    while let Some(p) = finder.find(&body[from..]) {
        let at = from + p;
        if at == 0 || body[at - 1] == b'\n' {
            positions.push(at);
        }
        from = at + 1;
    }
    if positions.is_empty() {
        mp.error = Some("Multipart: boundary not found in the request body".into());
        mp.flags.unmatched_boundary = true;
        return mp;
    }
    if positions[0] > 0 {
        let before = &body[..positions[0]];
        if !before.iter().all(|c| matches!(c, b'\r' | b'\n')) {
            mp.flags.data_before = true;
        }
    }
    let mut finished = false;
    let mut files = 0usize;
    for (k, &start) in positions.iter().enumerate() {
        let after = &body[start + delim.len()..];
        if after.starts_with(b"--") {
            finished = true;
            let tail = &after[2..];
            let tail = tail
                .strip_prefix(b"\r\n")
                .or_else(|| tail.strip_prefix(b"\n"))
                .unwrap_or(tail);
            if !tail.iter().all(|c| matches!(c, b'\r' | b'\n')) {
                mp.flags.data_after = true;
            }
            break;
        }
        // The rest of the delimiter line must be empty (transport padding aside).
        let line_end = memchr::memchr(b'\n', after).unwrap_or(after.len());
        let line = &after[..line_end];
        let line_t = line.strip_suffix(b"\r").unwrap_or(line);
        if line_t.iter().any(|c| !matches!(c, b' ' | b'\t')) {
            mp.flags.invalid_part = true;
        }
        if !line.ends_with(b"\r") {
            mp.flags.lf_line = true;
        }
        let part_start = start + delim.len() + (line_end + 1).min(after.len());
        let part_end = match positions.get(k + 1) {
            Some(&n) => n,
            None => {
                mp.error = Some("Multipart: final boundary missing".into());
                body.len()
            }
        };
        if part_start > part_end {
            mp.flags.invalid_part = true;
            continue;
        }
        let mut part = &body[part_start..part_end];
        // The line break before the next delimiter belongs to the delimiter.
        if let Some(p) = part.strip_suffix(b"\r\n") {
            part = p;
        } else if let Some(p) = part.strip_suffix(b"\n") {
            part = p;
            mp.flags.lf_line = true;
        }
        parse_part(part, &mut mp, &mut files, max_files, limit);
    }
    if !finished && mp.error.is_none() {
        mp.error = Some("Multipart: final boundary missing".into());
    }
    mp
}

fn parse_part(part: &[u8], mp: &mut Multipart, files: &mut usize, max_files: usize, limit: usize) {
    // Headers end at the first empty line.
    let mut headers: Vec<Vec<u8>> = Vec::new();
    let mut pos = 0;
    let mut body_start = None;
    while pos < part.len() {
        let end = memchr::memchr(b'\n', &part[pos..]).map_or(part.len(), |p| pos + p);
        let raw_line = &part[pos..end];
        let line = match raw_line.strip_suffix(b"\r") {
            Some(l) => l,
            None => {
                if end < part.len() {
                    mp.flags.lf_line = true;
                }
                raw_line
            }
        };
        pos = end + 1;
        if line.is_empty() {
            body_start = Some(pos.min(part.len()));
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            mp.flags.header_folding = true;
            match headers.last_mut() {
                Some(h) => {
                    h.push(b' ');
                    h.extend_from_slice(line.trim_ascii_start());
                }
                None => mp.flags.invalid_header_folding = true,
            }
            continue;
        }
        headers.push(line.to_vec());
    }
    let Some(body_start) = body_start else {
        mp.flags.invalid_part = true;
        mp.error
            .get_or_insert_with(|| "Multipart: part headers do not end with an empty line".into());
        return;
    };
    let data = &part[body_start..];
    let mut name: Option<Vec<u8>> = None;
    let mut filename: Option<Vec<u8>> = None;
    for h in &headers {
        let Some(colon) = memchr::memchr(b':', h) else {
            mp.flags.invalid_part = true;
            mp.error
                .get_or_insert_with(|| "Multipart: Invalid part header (colon missing)".into());
            continue;
        };
        let hname = &h[..colon];
        if hname
            .iter()
            .any(|&c| !(0x21..=0x7e).contains(&c) || c == b':')
        {
            mp.error.get_or_insert_with(|| {
                "Multipart: Invalid part header (contains invalid character)".into()
            });
        }
        let value = h[colon + 1..].trim_ascii();
        if hname.eq_ignore_ascii_case(b"content-disposition") {
            parse_disposition(value, &mut name, &mut filename, &mut mp.flags);
        }
    }
    let field = name.clone().unwrap_or_default();
    if name.is_none() {
        mp.flags.invalid_part = true;
    }
    for h in headers {
        mp.part_headers.push((field.clone(), h));
    }
    mp.last_name = field.clone();
    match filename {
        Some(f) => {
            *files += 1;
            if *files > max_files {
                mp.flags.file_limit_exceeded = true;
                return;
            }
            mp.last_filename = f.clone();
            mp.files.push((field.clone(), f));
            mp.file_sizes
                .push((field, data.len().to_string().into_bytes()));
            mp.files_combined_size += data.len();
        }
        None => {
            if mp.args.len() < limit {
                mp.args.push((field, data.to_vec()));
            }
        }
    }
}

fn parse_disposition(
    v: &[u8],
    name: &mut Option<Vec<u8>>,
    filename: &mut Option<Vec<u8>>,
    flags: &mut MultipartFlags,
) {
    let Some(rest) = strip_prefix_ci(v, b"form-data") else {
        flags.invalid_part = true;
        return;
    };
    let mut i = 0;
    let b = rest;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b';' {
            i += 1;
        } else {
            flags.missing_semicolon = true;
        }
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b';' {
            i += 1;
        }
        let key = b[ks..i].trim_ascii().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            if !key.is_empty() {
                flags.invalid_part = true;
            }
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut val = Vec::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut closed = false;
            while i < b.len() {
                if b[i] == b'\\' && i + 1 < b.len() && (b[i + 1] == b'"' || b[i + 1] == b'\\') {
                    val.push(b[i + 1]);
                    i += 2;
                    continue;
                }
                if b[i] == b'"' {
                    closed = true;
                    i += 1;
                    break;
                }
                val.push(b[i]);
                i += 1;
            }
            if !closed {
                flags.invalid_quoting = true;
            }
        } else {
            while i < b.len() && b[i] != b';' {
                if b[i] == b'\'' || b[i] == b'"' {
                    flags.invalid_quoting = true;
                }
                val.push(b[i]);
                i += 1;
            }
            let t = val.trim_ascii().len();
            val.truncate(t);
        }
        match key.as_slice() {
            b"name" => *name = Some(val),
            b"filename" | b"filename*" => *filename = Some(val),
            _ => {}
        }
    }
}

fn strip_prefix_ci<'a>(v: &'a [u8], p: &[u8]) -> Option<&'a [u8]> {
    if v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p) {
        Some(&v[p.len()..])
    } else {
        None
    }
}

/// Flatten a JSON document into `json.a.b` style arguments.
pub fn parse_json(body: &[u8], depth_limit: usize, limit: usize) -> Result<Pairs, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("JSON parsing error: {e}"))?;
    let mut out = Vec::new();
    let mut key = b"json".to_vec();
    flatten(&v, &mut key, &mut out, 0, depth_limit, limit)?;
    Ok(out)
}

fn flatten(
    v: &serde_json::Value,
    key: &mut Vec<u8>,
    out: &mut Pairs,
    depth: usize,
    depth_limit: usize,
    limit: usize,
) -> Result<(), String> {
    use serde_json::Value;
    if depth > depth_limit {
        return Err(format!("JSON depth limit ({depth_limit}) exceeded"));
    }
    if out.len() >= limit {
        return Ok(());
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let len = key.len();
                key.push(b'.');
                key.extend_from_slice(k.as_bytes());
                flatten(child, key, out, depth + 1, depth_limit, limit)?;
                key.truncate(len);
            }
        }
        Value::Array(a) => {
            // The array itself is an argument too (its length), as Coraza does, so rules on
            // ARGS_NAMES see the key without an index.
            out.push((key.clone(), a.len().to_string().into_bytes()));
            for (i, child) in a.iter().enumerate() {
                let len = key.len();
                key.push(b'.');
                key.extend_from_slice(i.to_string().as_bytes());
                flatten(child, key, out, depth + 1, depth_limit, limit)?;
                key.truncate(len);
            }
        }
        Value::String(s) => out.push((key.clone(), s.as_bytes().to_vec())),
        Value::Number(n) => out.push((key.clone(), n.to_string().into_bytes())),
        Value::Bool(b) => out.push((key.clone(), b.to_string().into_bytes())),
        Value::Null => out.push((key.clone(), Vec::new())),
    }
    Ok(())
}

/// What the XML processor keeps: the document's text (the string value of the root element,
/// `XML:/*`) and every attribute value (`XML://@*`).
#[derive(Debug, Default, Clone)]
pub struct XmlDoc {
    /// Concatenated text content.
    pub text: Vec<u8>,
    /// Attribute values in document order.
    pub attributes: Vec<Vec<u8>>,
}

/// Parse an XML document. External entities are never resolved.
pub fn parse_xml(body: &[u8], depth_limit: usize) -> Result<XmlDoc, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().check_end_names = true;
    let mut doc = XmlDoc::default();
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut seen_root = false;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                depth += 1;
                seen_root = true;
                if depth > depth_limit {
                    return Err("XML parsing error: nesting too deep".into());
                }
                for a in e.attributes() {
                    let a = a.map_err(|e| format!("XML parsing error: {e}"))?;
                    doc.attributes.push(unescape_xml(&a.value));
                }
            }
            Ok(Event::Empty(e)) => {
                seen_root = true;
                for a in e.attributes() {
                    let a = a.map_err(|e| format!("XML parsing error: {e}"))?;
                    doc.attributes.push(unescape_xml(&a.value));
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Text(t)) => {
                if depth > 0 {
                    doc.text.extend_from_slice(&unescape_xml(t.as_ref()));
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if depth > 0 {
                    let name: &[u8] = r.as_ref();
                    let mut s = Vec::with_capacity(name.len() + 2);
                    s.push(b'&');
                    s.extend_from_slice(name);
                    s.push(b';');
                    doc.text.extend_from_slice(&unescape_xml(&s));
                }
            }
            Ok(Event::CData(t)) => {
                if depth > 0 {
                    doc.text.extend_from_slice(t.as_ref());
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("XML parsing error: {e}")),
        }
        buf.clear();
    }
    if !seen_root {
        return Err("XML parsing error: no root element".into());
    }
    if depth != 0 {
        return Err("XML parsing error: premature end of document".into());
    }
    Ok(doc)
}

fn unescape_xml(s: &[u8]) -> Vec<u8> {
    if memchr::memchr(b'&', s).is_none() {
        return s.to_vec();
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'&'
            && let Some(end) = memchr::memchr(b';', &s[i..]).filter(|&e| e <= 12)
        {
            let ent = &s[i + 1..i + end];
            let rep: Option<Vec<u8>> = match ent {
                b"lt" => Some(b"<".to_vec()),
                b"gt" => Some(b">".to_vec()),
                b"amp" => Some(b"&".to_vec()),
                b"quot" => Some(b"\"".to_vec()),
                b"apos" => Some(b"'".to_vec()),
                _ if ent.first() == Some(&b'#') => {
                    let n = if ent.get(1) == Some(&b'x') || ent.get(1) == Some(&b'X') {
                        u32::from_str_radix(&String::from_utf8_lossy(&ent[2..]), 16).ok()
                    } else {
                        String::from_utf8_lossy(&ent[1..]).parse::<u32>().ok()
                    };
                    n.and_then(char::from_u32)
                        .map(|c| c.to_string().into_bytes())
                }
                _ => None,
            };
            if let Some(r) = rep {
                out.extend_from_slice(&r);
                i += end + 1;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded() {
        let (p, bad) = parse_urlencoded(b"a=1&b=x+y%21&&c&d=%zz", b'&', 100);
        assert_eq!(p.len(), 4);
        assert_eq!(p[1], (b"b".to_vec(), b"x y!".to_vec()));
        assert_eq!(p[2], (b"c".to_vec(), Vec::new()));
        assert!(bad);
    }

    #[test]
    fn cookies() {
        let mut out = Vec::new();
        parse_cookies(b"a=1; b=x=y;c", &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].1, b"x=y");
    }

    #[test]
    fn multipart() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--XX--\r\n";
        let mut flags = MultipartFlags::default();
        let b =
            multipart_boundary(b"multipart/form-data; boundary=XX", &mut flags).expect("boundary");
        let mp = parse_multipart(body, &b, 10, 100);
        assert!(mp.error.is_none(), "{:?}", mp.error);
        assert_eq!(mp.args, vec![(b"a".to_vec(), b"hello".to_vec())]);
        assert_eq!(mp.files, vec![(b"f".to_vec(), b"x.php".to_vec())]);
        assert_eq!(mp.files_combined_size, 5);
        assert_eq!(mp.part_headers.len(), 3);
        assert!(!mp.flags.strict_error(false));
    }

    #[test]
    fn multipart_garbage_never_panics() {
        for body in [
            &b""[..],
            b"--",
            b"--XX",
            b"--XX\r\n",
            b"--XX\r\n\r\n--XX--",
            b"x--XX\n\n",
        ] {
            let _ = parse_multipart(body, b"XX", 10, 100);
        }
    }

    #[test]
    fn json() {
        let p = parse_json(br#"{"a":{"b":[1,"x"]},"c":true}"#, 10, 100).expect("valid");
        assert_eq!(p[0], (b"json.a.b".to_vec(), b"2".to_vec()));
        assert_eq!(p[1], (b"json.a.b.0".to_vec(), b"1".to_vec()));
        assert_eq!(p[2], (b"json.a.b.1".to_vec(), b"x".to_vec()));
        assert!(parse_json(b"{", 10, 100).is_err());
        assert!(parse_json(b"[[[[1]]]]", 2, 100).is_err());
    }

    #[test]
    fn xml() {
        let d = parse_xml(b"<a x=\"1\"><b>hi &amp;</b><![CDATA[<c>]]></a>", 10).expect("valid");
        assert_eq!(d.text, b"hi &<c>");
        assert_eq!(d.attributes, vec![b"1".to_vec()]);
        assert!(parse_xml(b"<a><b></a>", 10).is_err());
        assert!(parse_xml(b"not xml", 10).is_err());
    }
}
