//! The TOML layer: text -> [`RawConfig`], with toml's syntax and type errors turned into a
//! [`ConfigError`] that names the line and never quotes a string value from the file (it may be
//! a secret written in the wrong table; docs/fuzzing.md tells how that was found).

use super::super::raw::RawConfig;
use super::{ConfigError, Ctx};

/// Deserialize the whole file; unknown fields and wrong types are refused here.
pub(super) fn parse(ctx: &Ctx<'_>) -> Result<RawConfig, ConfigError> {
    toml::from_str(ctx.text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let message = redact_strings(e.message().trim());
        let hint = if message.contains("unknown field") {
            "remove or rename the field; config.example.toml lists every field".to_string()
        } else {
            "check the TOML syntax near this line (strings in double quotes, one key per line)".to_string()
        };
        ctx.err(offset, message, hint)
    })
}

/// serde's type errors quote the offending string value (`invalid type: string "…", expected
/// struct RawUser`). That value may be a secret (a `secret = "…"` line in the wrong table), so
/// the quoted part is dropped: the line number already points at it.
fn redact_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at + MARK.len() - 2]);
        let mut chars = rest[at + MARK.len()..].char_indices();
        let mut end = rest.len() - at - MARK.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[at + MARK.len() + end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_strings;

    #[test]
    fn redaction_handles_escapes_and_several_strings() {
        assert_eq!(redact_strings(r#"invalid type: string "a\"b", expected x"#), "invalid type: string, expected x");
        assert_eq!(redact_strings(r#"string "x" and string "y" end"#), "string and string end");
        assert_eq!(redact_strings(r#"unterminated string "abc"#), "unterminated string");
        assert_eq!(redact_strings("no strings here"), "no strings here");
    }
}
