//! The tag level: splits an annotation, `rule` or `@:rule; msg:'text'`, into its rule and message.

use super::lex::{Token, lex};
use super::{VdError, err};

/// A trimmed piece of the annotation and where it starts.
pub(super) struct Part<'s> {
    pub(super) at: usize,
    pub(super) text: &'s str,
}

pub(super) fn split_tag(src: &str) -> Result<(Part<'_>, Option<Part<'_>>), VdError> {
    let lead = src.len() - src.trim_start().len();
    match src.trim() {
        "" => return Err(err(0, "empty rule")),
        "-" | "?" => {
            return Err(err(
                lead,
                "the go-tagexpr tag operators `-` and `?` are not supported; remove the annotation instead",
            ));
        }
        t if t.starts_with('{') => {
            return Err(err(
                lead,
                "the `{@:...}{msg:...}` form is not supported; write `@:rule; msg:'text'`",
            ));
        }
        _ => {}
    }
    let mut rule: Option<Part<'_>> = None;
    let mut msg: Option<Part<'_>> = None;
    for (seg_at, seg) in segments(src)? {
        let lead = seg.len() - seg.trim_start().len();
        let (seg_at, seg) = (seg_at + lead, seg.trim());
        if seg.is_empty() {
            continue;
        }
        let key_len = seg
            .find(|c: char| !(c == '@' || c == '_' || c.is_ascii_alphanumeric()))
            .unwrap_or(seg.len());
        let (key, body_at, body) = match seg[key_len..].trim_start().strip_prefix(':') {
            Some(rest) => {
                let key = if key_len == 0 { "@" } else { &seg[..key_len] };
                (key, seg_at + seg.len() - rest.len(), rest)
            }
            None => ("@", seg_at, seg),
        };
        let slot = match key {
            "@" if rule.is_some() => {
                return Err(err(seg_at, "a second rule; combine the rules with `&&`"));
            }
            "msg" if msg.is_some() => return Err(err(seg_at, "a second `msg:`")),
            "@" => &mut rule,
            "msg" => &mut msg,
            other => {
                return Err(err(
                    seg_at,
                    format!(
                        "unknown part `{other}:`; an annotation is `rule` or `@:rule; msg:'text'`"
                    ),
                ));
            }
        };
        let lead = body.len() - body.trim_start().len();
        let text = body.trim();
        if text.is_empty() {
            return Err(err(seg_at, format!("nothing after `{key}:`")));
        }
        *slot = Some(Part {
            at: body_at + lead,
            text,
        });
    }
    match rule {
        Some(rule) => Ok((rule, msg)),
        None => Err(err(
            lead,
            "`msg:` without a rule; write `@:rule; msg:'text'`",
        )),
    }
}

/// Splits at `;` outside string literals.
fn segments(src: &str) -> Result<Vec<(usize, &str)>, VdError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut open: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], open) {
            // Skipping the escaped byte keeps `\'` inside the string.
            (b'\\', Some(_)) => i += 1,
            (b'\'', Some(_)) => open = None,
            (b'\'', None) => open = Some(i),
            (b';', None) => {
                out.push((start, &src[start..i]));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some(at) = open {
        return Err(err(at, "unclosed string"));
    }
    out.push((start, &src[start..]));
    Ok(out)
}

pub(super) fn parse_message(part: &Part<'_>) -> Result<Option<String>, VdError> {
    let toks = lex(part.text, part.at)?;
    match toks.as_slice() {
        // go-tagexpr treats an empty message as none.
        [(Token::Str(s), ..), (Token::End, ..)] => Ok((!s.is_empty()).then(|| s.clone())),
        [(Token::Ident(name), at, _), ..] if name == "sprintf" => Err(err(
            *at,
            "sprintf() messages are not supported; write a plain string: msg:'text'",
        )),
        [(Token::Str(_), ..), (_, at, _), ..] | [(_, at, _), ..] => Err(err(
            *at,
            "a message is one string in single quotes, e.g. msg:'too long'",
        )),
        [] => Err(err(part.at, "empty message")),
    }
}
