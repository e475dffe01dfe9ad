//! Every transformation on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_waf::transform::Transform;

const NAMES: &[&str] = &[
    "lowercase", "urlDecode", "urlDecodeUni", "htmlEntityDecode", "jsDecode", "cssDecode",
    "cmdLine", "compressWhitespace", "removeWhitespace", "removeNulls", "replaceNulls",
    "removeComments", "removeCommentsChar", "replaceComments", "base64Decode",
    "base64DecodeExt", "hexDecode", "utf8toUnicode", "normalizePath", "normalizePathWin",
    "escapeSeqDecode", "sqlHexDecode", "trim", "length", "sha1",
];

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    for name in NAMES {
        if let Ok(Some(t)) = Transform::parse(name) {
            let _ = t.apply(data, &mut out);
        }
    }
});
