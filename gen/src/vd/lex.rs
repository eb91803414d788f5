//! Tokens: the lexer turns a rule's text into tokens, each with its byte offset.

use super::{VdError, err};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Token {
    Dollar,
    LParen,
    RParen,
    Comma,
    AndAnd,
    OrOr,
    Bang,
    Cmp(CmpOp),
    Arith(ArOp),
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    End,
}

impl Token {
    pub(super) fn describe(&self) -> String {
        match self {
            Token::Dollar => "`$`".into(),
            Token::LParen => "`(`".into(),
            Token::RParen => "`)`".into(),
            Token::Comma => "`,`".into(),
            Token::AndAnd => "`&&`".into(),
            Token::OrOr => "`||`".into(),
            Token::Bang => "`!`".into(),
            Token::Cmp(op) => format!("`{}`", op.sym()),
            Token::Arith(op) => format!("`{}`", op.sym()),
            Token::Int(_) | Token::Float(_) => "a number".into(),
            Token::Str(_) => "a string".into(),
            Token::Ident(name) => format!("`{name}`"),
            Token::End => "the end of the rule".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(super) fn sym(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// The same comparison with its sides swapped: `1 < $` is `$ > 1`.
    pub(crate) fn swapped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            same => same,
        }
    }

    /// The comparison that is true exactly when this one is false (on a total order).
    pub(super) fn negated(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Ne,
            CmpOp::Ne => CmpOp::Eq,
            CmpOp::Lt => CmpOp::Ge,
            CmpOp::Le => CmpOp::Gt,
            CmpOp::Gt => CmpOp::Le,
            CmpOp::Ge => CmpOp::Lt,
        }
    }

    pub(super) fn helper(self) -> &'static str {
        match self {
            CmpOp::Eq => "f64_eq",
            CmpOp::Ne => "f64_ne",
            CmpOp::Lt => "f64_lt",
            CmpOp::Le => "f64_le",
            CmpOp::Gt => "f64_gt",
            CmpOp::Ge => "f64_ge",
        }
    }

    pub(super) fn eval<T: PartialOrd>(self, a: &T, b: &T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl ArOp {
    pub(super) fn sym(self) -> &'static str {
        match self {
            ArOp::Add => "+",
            ArOp::Sub => "-",
            ArOp::Mul => "*",
            ArOp::Div => "/",
            ArOp::Rem => "%",
        }
    }
}

/// A token and the bytes it spans, as offsets into the annotation.
pub(super) type Spanned = (Token, usize, usize);

pub(super) fn lex(text: &str, base: usize) -> Result<Vec<Spanned>, VdError> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let at = base + i;
        let next = text[i + c.len_utf8()..].chars().next();
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let (tok, len) = match (c, next) {
            ('$', Some(n)) if n == '$' || n == '_' || n.is_alphanumeric() => {
                return Err(err(
                    at,
                    format!("`${n}` is not supported; a field is `$` or `(Name)$`"),
                ));
            }
            ('$', _) => (Token::Dollar, 1),
            ('(', _) => (Token::LParen, 1),
            (')', _) => (Token::RParen, 1),
            (',', _) => (Token::Comma, 1),
            ('&', Some('&')) => (Token::AndAnd, 2),
            ('|', Some('|')) => (Token::OrOr, 2),
            ('&' | '|' | '^', _) => {
                return Err(err(
                    at,
                    format!("`{c}`: bitwise operators are not supported (logic is `&&`, `||`)"),
                ));
            }
            ('=', Some('=')) => (Token::Cmp(CmpOp::Eq), 2),
            ('=', _) => return Err(err(at, "`=`: comparison is `==`")),
            ('!', Some('=')) => (Token::Cmp(CmpOp::Ne), 2),
            ('!', _) => (Token::Bang, 1),
            ('<', Some('<')) | ('>', Some('>')) => {
                return Err(err(at, "shift operators are not supported"));
            }
            ('<', Some('=')) => (Token::Cmp(CmpOp::Le), 2),
            ('<', _) => (Token::Cmp(CmpOp::Lt), 1),
            ('>', Some('=')) => (Token::Cmp(CmpOp::Ge), 2),
            ('>', _) => (Token::Cmp(CmpOp::Gt), 1),
            ('+', _) => (Token::Arith(ArOp::Add), 1),
            ('-', _) => (Token::Arith(ArOp::Sub), 1),
            ('*', _) => (Token::Arith(ArOp::Mul), 1),
            ('/', _) => (Token::Arith(ArOp::Div), 1),
            ('%', _) => (Token::Arith(ArOp::Rem), 1),
            ('\'', _) => lex_string(&text[i..], at)?,
            ('"', _) => return Err(err(at, "strings are written in single quotes: 'text'")),
            ('[', _) => return Err(err(at, "indexing (`$[...]`) is not supported")),
            ('#', _) => {
                return Err(err(
                    at,
                    "range() and its `#k`, `#v`, `##` are not supported",
                ));
            }
            ('0'..='9', _) => lex_number(&text[i..], at)?,
            (c, _) if c == '_' || c.is_ascii_alphabetic() => {
                let len = text[i..]
                    .find(|c: char| !(c == '_' || c == '.' || c.is_ascii_alphanumeric()))
                    .unwrap_or(text.len() - i);
                (Token::Ident(text[i..i + len].to_string()), len)
            }
            (c, _) => return Err(err(at, format!("unexpected character `{c}`"))),
        };
        out.push((tok, at, at + len));
        i += len;
    }
    out.push((Token::End, base + text.len(), base + text.len()));
    Ok(out)
}

/// `s` starts at the opening quote; returns the token and the bytes it spans.
fn lex_string(s: &str, at: usize) -> Result<(Token, usize), VdError> {
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => return Ok((Token::Str(value), i + 1)),
            '\\' => match chars.next() {
                Some((_, '\'')) => value.push('\''),
                // `\\` stays two characters, so a regex still sees an escaped backslash.
                Some((_, '\\')) => value.push_str("\\\\"),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => break,
            },
            c => value.push(c),
        }
    }
    Err(err(at, "unclosed string"))
}

fn lex_number(s: &str, at: usize) -> Result<(Token, usize), VdError> {
    let digits = |from: usize| {
        s[from..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(s.len(), |n| from + n)
    };
    let mut end = digits(0);
    let float = s[end..].starts_with('.') && s[end + 1..].starts_with(|c: char| c.is_ascii_digit());
    if float {
        end = digits(end + 1);
    }
    let next = s[end..].chars().next();
    if let Some(c) = next.filter(|&c| c == '_' || c == '.' || c == '$' || c.is_alphanumeric()) {
        return Err(err(
            at,
            format!("malformed number `{}`", &s[..end + c.len_utf8()]),
        ));
    }
    let text = &s[..end];
    let tok = if float {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Token::Float(f),
            _ => return Err(err(at, format!("number `{text}` is out of range"))),
        }
    } else {
        match text.parse::<i64>() {
            Ok(n) => Token::Int(n),
            Err(_) => return Err(err(at, format!("integer `{text}` does not fit in 64 bits"))),
        }
    };
    Ok((tok, end))
}
