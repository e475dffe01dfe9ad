//! libinjection's small HTML5 tokenizer (`libinjection_html5.c`): just enough of the
//! HTML5 tokenization state machine to find tag names, attribute names and values,
//! comments and doctypes, starting in one of five states (text, or inside an attribute
//! value with no, single, double or back quote).
//!
//! Quirks kept from the C code (equivalence with libinjection matters more than HTML5
//! fidelity): NUL counts as white space where C's `strchr(" \t\n\v\f\r", ch)` is used, and
//! the white-space skipper returns a signed `char`, so a 0xFF byte reads as end of input.

/// Where the tokenizer starts (`enum html5_flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    Data,
    ValueNoQuote,
    ValueSingleQuote,
    ValueDoubleQuote,
    ValueBackQuote,
}

/// Token types (`enum html5_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenType {
    DataText,
    TagNameOpen,
    TagNameClose,
    TagNameSelfClose,
    /// Part of libinjection's enum; its tokenizer never produces it.
    #[allow(dead_code)]
    TagData,
    TagClose,
    AttrName,
    AttrValue,
    TagComment,
    Doctype,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Eof,
    Data,
    TagOpen,
    TagNameClose,
    BeforeAttributeName,
    AttributeValueSingleQuote,
    AttributeValueDoubleQuote,
    AttributeValueBackQuote,
    AfterAttributeName,
    AfterAttributeValueQuoted,
    SelfClosingStartTag,
    BeforeAttributeValue,
}

const CHAR_EOF: i32 = -1;

/// `h5_is_white`: C's `strchr(" \t\n\v\f\r", ch)`, which also matches NUL.
fn is_white(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0)
}

fn find1(s: &[u8], from: usize, c: u8) -> Option<usize> {
    if from >= s.len() {
        return None;
    }
    s[from..].iter().position(|&b| b == c).map(|i| from + i)
}

/// The tokenizer. `next` yields tokens as `(type, start, len)` into the input.
pub(crate) struct Html5<'a> {
    s: &'a [u8],
    pos: usize,
    is_close: bool,
    state: State,
    pub(crate) token_start: usize,
    pub(crate) token_len: usize,
    pub(crate) token_type: TokenType,
}

impl<'a> Html5<'a> {
    pub(crate) fn new(s: &'a [u8], start: Start) -> Self {
        let state = match start {
            Start::Data => State::Data,
            Start::ValueNoQuote => State::BeforeAttributeName,
            Start::ValueSingleQuote => State::AttributeValueSingleQuote,
            Start::ValueDoubleQuote => State::AttributeValueDoubleQuote,
            Start::ValueBackQuote => State::AttributeValueBackQuote,
        };
        Html5 {
            s,
            pos: 0,
            is_close: false,
            state,
            token_start: 0,
            token_len: 0,
            token_type: TokenType::DataText,
        }
    }

    /// The current token's bytes.
    pub(crate) fn token(&self) -> &'a [u8] {
        &self.s[self.token_start..self.token_start + self.token_len]
    }

    /// The input from the current token's start to the end (libinjection sometimes reads
    /// past a token's end).
    pub(crate) fn rest_from_token(&self) -> &'a [u8] {
        &self.s[self.token_start..]
    }

    /// `libinjection_h5_next`: advance to the next token; false at the end.
    pub(crate) fn next(&mut self) -> bool {
        match self.state {
            State::Eof => false,
            State::Data => self.data(),
            State::TagOpen => self.tag_open(),
            State::TagNameClose => self.tag_name_close(),
            State::BeforeAttributeName => self.before_attribute_name(),
            State::AttributeValueSingleQuote => self.attribute_value_quote(b'\''),
            State::AttributeValueDoubleQuote => self.attribute_value_quote(b'"'),
            State::AttributeValueBackQuote => self.attribute_value_quote(b'`'),
            State::AfterAttributeName => self.after_attribute_name(),
            State::AfterAttributeValueQuoted => self.after_attribute_value_quoted(),
            State::SelfClosingStartTag => self.self_closing_start_tag(),
            State::BeforeAttributeValue => self.before_attribute_value(),
        }
    }

    fn emit(&mut self, ty: TokenType, start: usize, len: usize) {
        self.token_type = ty;
        self.token_start = start;
        self.token_len = len;
    }

    /// Skips white space (and NUL); returns the next byte as a signed C `char`
    /// (quirk: 0xFF is then indistinguishable from end of input) or `CHAR_EOF`.
    fn skip_white(&mut self) -> i32 {
        while self.pos < self.s.len() {
            let ch = self.s[self.pos];
            match ch {
                0x00 | 0x20 | 0x09 | 0x0a | 0x0b | 0x0c | 0x0d => self.pos += 1,
                _ => return i32::from(ch as i8),
            }
        }
        CHAR_EOF
    }

    fn data(&mut self) -> bool {
        let s = self.s;
        match find1(s, self.pos, b'<') {
            None => {
                let start = self.pos.min(s.len());
                self.emit(TokenType::DataText, start, s.len() - start);
                self.state = State::Eof;
                self.token_len != 0
            }
            Some(idx) => {
                self.emit(TokenType::DataText, self.pos, idx - self.pos);
                self.pos = idx + 1;
                self.state = State::TagOpen;
                if self.token_len == 0 {
                    return self.tag_open();
                }
                true
            }
        }
    }

    fn tag_open(&mut self) -> bool {
        let s = self.s;
        if self.pos >= s.len() {
            return false;
        }
        let ch = s[self.pos];
        match ch {
            b'!' => {
                self.pos += 1;
                self.markup_declaration_open()
            }
            b'/' => {
                self.pos += 1;
                self.is_close = true;
                self.end_tag_open()
            }
            b'?' => {
                self.pos += 1;
                self.bogus_comment()
            }
            b'%' => {
                // Not in the spec: IE <= 9 and old Safari's <% ... %> comments.
                self.pos += 1;
                self.bogus_comment2()
            }
            b'a'..=b'z' | b'A'..=b'Z' | 0 => self.tag_name(),
            _ => {
                if self.pos == 0 {
                    return self.data();
                }
                self.emit(TokenType::DataText, self.pos - 1, 1);
                self.state = State::Data;
                true
            }
        }
    }

    fn end_tag_open(&mut self) -> bool {
        let s = self.s;
        if self.pos >= s.len() {
            return false;
        }
        let ch = s[self.pos];
        if ch == b'>' {
            return self.data();
        } else if ch.is_ascii_alphabetic() {
            return self.tag_name();
        }
        self.is_close = false;
        self.bogus_comment()
    }

    fn tag_name_close(&mut self) -> bool {
        self.is_close = false;
        self.emit(TokenType::TagNameClose, self.pos, 1);
        self.pos += 1;
        self.state = if self.pos < self.s.len() {
            State::Data
        } else {
            State::Eof
        };
        true
    }

    fn tag_name(&mut self) -> bool {
        let s = self.s;
        let mut pos = self.pos;
        while pos < s.len() {
            let ch = s[pos];
            if ch == 0 {
                // Old browsers ignore NUL inside tag names.
                pos += 1;
            } else if is_white(ch) {
                self.emit(TokenType::TagNameOpen, self.pos, pos - self.pos);
                self.pos = pos + 1;
                self.state = State::BeforeAttributeName;
                return true;
            } else if ch == b'/' {
                self.emit(TokenType::TagNameOpen, self.pos, pos - self.pos);
                self.pos = pos + 1;
                self.state = State::SelfClosingStartTag;
                return true;
            } else if ch == b'>' {
                let start = self.pos;
                if self.is_close {
                    self.emit(TokenType::TagClose, start, pos - start);
                    self.pos = pos + 1;
                    self.is_close = false;
                    self.state = State::Data;
                } else {
                    self.emit(TokenType::TagNameOpen, start, pos - start);
                    self.pos = pos;
                    self.state = State::TagNameClose;
                }
                return true;
            } else {
                pos += 1;
            }
        }
        self.emit(TokenType::TagNameOpen, self.pos, s.len() - self.pos);
        self.state = State::Eof;
        true
    }

    fn before_attribute_name(&mut self) -> bool {
        match self.skip_white() {
            CHAR_EOF => false,
            0x2f => {
                self.pos += 1;
                self.self_closing_start_tag()
            }
            0x3e => {
                self.state = State::Data;
                self.emit(TokenType::TagNameClose, self.pos, 1);
                self.pos += 1;
                true
            }
            _ => self.attribute_name(),
        }
    }

    fn attribute_name(&mut self) -> bool {
        let s = self.s;
        let mut pos = self.pos + 1;
        while pos < s.len() {
            let ch = s[pos];
            if is_white(ch) {
                self.emit(TokenType::AttrName, self.pos, pos - self.pos);
                self.state = State::AfterAttributeName;
                self.pos = pos + 1;
                return true;
            } else if ch == b'/' {
                self.emit(TokenType::AttrName, self.pos, pos - self.pos);
                self.state = State::SelfClosingStartTag;
                self.pos = pos + 1;
                return true;
            } else if ch == b'=' {
                self.emit(TokenType::AttrName, self.pos, pos - self.pos);
                self.state = State::BeforeAttributeValue;
                self.pos = pos + 1;
                return true;
            } else if ch == b'>' {
                self.emit(TokenType::AttrName, self.pos, pos - self.pos);
                self.state = State::TagNameClose;
                self.pos = pos;
                return true;
            }
            pos += 1;
        }
        let start = self.pos.min(s.len());
        self.emit(TokenType::AttrName, start, s.len() - start);
        self.state = State::Eof;
        self.pos = s.len();
        true
    }

    fn after_attribute_name(&mut self) -> bool {
        match self.skip_white() {
            CHAR_EOF => false,
            0x2f => {
                self.pos += 1;
                self.self_closing_start_tag()
            }
            0x3d => {
                self.pos += 1;
                self.before_attribute_value()
            }
            0x3e => self.tag_name_close(),
            _ => self.attribute_name(),
        }
    }

    fn before_attribute_value(&mut self) -> bool {
        match self.skip_white() {
            CHAR_EOF => {
                self.state = State::Eof;
                false
            }
            0x22 => self.attribute_value_quote(b'"'),
            0x27 => self.attribute_value_quote(b'\''),
            0x60 => self.attribute_value_quote(b'`'),
            _ => self.attribute_value_no_quote(),
        }
    }

    fn attribute_value_quote(&mut self, qchar: u8) -> bool {
        let s = self.s;
        // Skip the opening quote, except at the very start: started inside a value
        // there is no opening quote to skip.
        if self.pos > 0 {
            self.pos += 1;
        }
        let start = self.pos.min(s.len());
        match find1(s, start, qchar) {
            None => {
                self.emit(TokenType::AttrValue, start, s.len() - start);
                self.state = State::Eof;
            }
            Some(idx) => {
                self.emit(TokenType::AttrValue, start, idx - start);
                self.state = State::AfterAttributeValueQuoted;
                self.pos += self.token_len + 1;
            }
        }
        true
    }

    fn attribute_value_no_quote(&mut self) -> bool {
        let s = self.s;
        let mut pos = self.pos;
        while pos < s.len() {
            let ch = s[pos];
            if is_white(ch) {
                self.emit(TokenType::AttrValue, self.pos, pos - self.pos);
                self.pos = pos + 1;
                self.state = State::BeforeAttributeName;
                return true;
            } else if ch == b'>' {
                self.emit(TokenType::AttrValue, self.pos, pos - self.pos);
                self.pos = pos;
                self.state = State::TagNameClose;
                return true;
            }
            pos += 1;
        }
        self.state = State::Eof;
        let start = self.pos.min(s.len());
        self.emit(TokenType::AttrValue, start, s.len() - start);
        true
    }

    fn after_attribute_value_quoted(&mut self) -> bool {
        let s = self.s;
        if self.pos >= s.len() {
            return false;
        }
        let ch = s[self.pos];
        if is_white(ch) {
            self.pos += 1;
            self.before_attribute_name()
        } else if ch == b'/' {
            self.pos += 1;
            self.self_closing_start_tag()
        } else if ch == b'>' {
            self.emit(TokenType::TagNameClose, self.pos, 1);
            self.pos += 1;
            self.state = State::Data;
            true
        } else {
            self.before_attribute_name()
        }
    }

    fn self_closing_start_tag(&mut self) -> bool {
        let s = self.s;
        if self.pos >= s.len() {
            return false;
        }
        if s[self.pos] == b'>' {
            // pos > 0: we only get here after consuming a '/'.
            self.emit(TokenType::TagNameSelfClose, self.pos.saturating_sub(1), 2);
            self.state = State::Data;
            self.pos += 1;
            true
        } else {
            self.before_attribute_name()
        }
    }

    fn bogus_comment(&mut self) -> bool {
        let s = self.s;
        let start = self.pos.min(s.len());
        match find1(s, start, b'>') {
            None => {
                self.emit(TokenType::TagComment, start, s.len() - start);
                self.pos = s.len();
                self.state = State::Eof;
            }
            Some(idx) => {
                self.emit(TokenType::TagComment, start, idx - start);
                self.pos = idx + 1;
                self.state = State::Data;
            }
        }
        true
    }

    /// `<% ... %>` comments.
    fn bogus_comment2(&mut self) -> bool {
        let s = self.s;
        let start = self.pos.min(s.len());
        let mut pos = start;
        loop {
            match find1(s, pos, b'%') {
                Some(idx) if idx + 1 < s.len() => {
                    if s[idx + 1] != b'>' {
                        pos = idx + 1;
                        continue;
                    }
                    self.emit(TokenType::TagComment, start, idx - start);
                    self.pos = idx + 2;
                    self.state = State::Data;
                    return true;
                }
                _ => {
                    self.emit(TokenType::TagComment, start, s.len() - start);
                    self.pos = s.len();
                    self.state = State::Eof;
                    return true;
                }
            }
        }
    }

    fn markup_declaration_open(&mut self) -> bool {
        let s = self.s;
        let rest = &s[self.pos.min(s.len())..];
        if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case(b"DOCTYPE") {
            self.doctype()
        } else if rest.len() >= 7 && &rest[..7] == b"[CDATA[" {
            self.pos += 7;
            self.cdata()
        } else if rest.len() >= 2 && &rest[..2] == b"--" {
            self.pos += 2;
            self.comment()
        } else {
            self.bogus_comment()
        }
    }

    /// Comments end at EOF, `-->` or `-!>` (NULs between the dashes are skipped).
    fn comment(&mut self) -> bool {
        let s = self.s;
        let end = s.len();
        let start = self.pos.min(end);
        let mut pos = start;
        loop {
            let idx = match find1(s, pos, b'-') {
                Some(idx) if idx + 3 <= end => idx,
                _ => {
                    self.state = State::Eof;
                    self.emit(TokenType::TagComment, start, end - start);
                    return true;
                }
            };
            let mut offset = 1;
            while idx + offset < end && s[idx + offset] == 0 {
                offset += 1;
            }
            if idx + offset == end {
                self.state = State::Eof;
                self.emit(TokenType::TagComment, start, end - start);
                return true;
            }
            let ch = s[idx + offset];
            if ch != b'-' && ch != b'!' {
                pos = idx + 1;
                continue;
            }
            offset += 1;
            if idx + offset == end {
                self.state = State::Eof;
                self.emit(TokenType::TagComment, start, end - start);
                return true;
            }
            if s[idx + offset] != b'>' {
                pos = idx + 1;
                continue;
            }
            offset += 1;
            self.emit(TokenType::TagComment, start, idx - start);
            self.pos = idx + offset;
            self.state = State::Data;
            return true;
        }
    }

    fn cdata(&mut self) -> bool {
        let s = self.s;
        let end = s.len();
        let start = self.pos.min(end);
        let mut pos = start;
        loop {
            match find1(s, pos, b']') {
                Some(idx) if idx + 3 <= end => {
                    if s[idx + 1] == b']' && s[idx + 2] == b'>' {
                        self.state = State::Data;
                        self.emit(TokenType::DataText, start, idx - start);
                        self.pos = idx + 3;
                        return true;
                    }
                    pos = idx + 1;
                }
                _ => {
                    self.state = State::Eof;
                    self.emit(TokenType::DataText, start, end - start);
                    return true;
                }
            }
        }
    }

    fn doctype(&mut self) -> bool {
        let s = self.s;
        let start = self.pos.min(s.len());
        self.token_start = start;
        self.token_type = TokenType::Doctype;
        match find1(s, start, b'>') {
            None => {
                self.state = State::Eof;
                self.token_len = s.len() - start;
            }
            Some(idx) => {
                self.state = State::Data;
                self.token_len = idx - start;
                self.pos = idx + 1;
            }
        }
        true
    }
}

/// The token stream from the text state, printed the way libinjection's `testdriver.c`
/// does: `TYPE,len,value` per line.
#[cfg(test)]
pub(crate) fn tokens(input: &[u8]) -> Vec<u8> {
    let mut h = Html5::new(input, Start::Data);
    let mut out = Vec::new();
    while h.next() {
        let name = match h.token_type {
            TokenType::DataText => "DATA_TEXT",
            TokenType::TagNameOpen => "TAG_NAME_OPEN",
            TokenType::TagNameClose => "TAG_NAME_CLOSE",
            TokenType::TagNameSelfClose => "TAG_NAME_SELFCLOSE",
            TokenType::TagData => "TAG_DATA",
            TokenType::TagClose => "TAG_CLOSE",
            TokenType::AttrName => "ATTR_NAME",
            TokenType::AttrValue => "ATTR_VALUE",
            TokenType::TagComment => "TAG_COMMENT",
            TokenType::Doctype => "DOCTYPE",
        };
        out.extend_from_slice(format!("{name},{},", h.token_len).as_bytes());
        out.extend(h.token().iter().take_while(|&&b| b != 0));
        out.push(b'\n');
    }
    out
}
