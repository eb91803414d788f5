//! `api.vd` validation rules: go-tagexpr expressions, compiled into Rust at build time.
//!
//! hz copies `api.vd` into a Go `vd` struct tag that bytedance/go-tagexpr's validator evaluates
//! at run time. Here [`compile`] parses and type-checks the same text once, at build time, and
//! turns it into a Rust `bool` expression: a rule that does not parse or type-check fails the
//! build, with the byte offset of the problem.
//!
//! # The language (a subset of go-tagexpr)
//!
//! | form | meaning |
//! | --- | --- |
//! | `$` | the field the annotation is on |
//! | `(Name)$` | field `Name` of the same struct (the Thrift name; hz's Go-style `UserID` for `user_id` also resolves) |
//! | `1`, `-2`, `1.5` | numbers |
//! | `'text'` | a string; `\'` is a quote, other backslashes are kept (so `'\d'` reaches a regex as `\d`) |
//! | `true`, `false`, `nil` | literals; `nil` only in `== nil` / `!= nil` |
//! | `+ - * / %`, unary `-` | arithmetic on numbers |
//! | `== != < <= > >=` | comparisons |
//! | `!`, `&&`, `\|\|`, `( )` | logic and grouping |
//! | `len(x)`, `len()` | bytes of a string or binary, elements of a list, set or map (`len()` is `len($)`) |
//! | `mblen(x)`, `mblen()` | characters (Unicode scalar values, Go's runes) of a string |
//! | `regexp('p')`, `regexp('p', x)` | `x` (default `$`) contains a match of `p` (Go's `MatchString`: unanchored) |
//! | `in(x, a, b, ...)` | `x` equals one of the candidates |
//!
//! Precedence, tightest first (go-tagexpr's): unary `!` `-`; `* / %`; `+ -`; `< <= > >=`;
//! `== !=`; `&&`; `||`. A whole annotation is either a bare rule or go-tagexpr validator's
//! message form `@:rule; msg:'text'` (the parts in either order), where the message is one
//! string literal.
//!
//! Not supported, each a build error naming it: `sprintf`, `email`, `phone`, `range`,
//! indexing (`$[0]`, `$['k']`), nested selectors (`(A.B)$`), bitwise operators, string
//! concatenation, and the tag operators `-` and `?`.
//!
//! # Semantics
//!
//! - Types are static. A rule must be a boolean; comparing a string with a number, `len()` of
//!   a number, `!` of a number and the like are build errors.
//! - Integers (Thrift `i8`..`i64` and enums, through `inner()`) are `i64`; `double` is `f64`.
//!   A comparison or `+ - *` of two integers is exact on `i64` (wrapping on overflow); with a
//!   `double` on either side both become `f64`. `/` always divides as `f64`, as in Go, where
//!   every number is a `float64`. `%` truncates both sides to `i64` like go-tagexpr does; a zero
//!   divisor gives 0 at run time and is a build error when it is a literal.
//! - Strings compare bytewise, like Go strings.
//! - An optional field the rule is on that is absent passes: the rule is only checked on a
//!   value that was given, the way an omitted optional parameter is not validated. So `$` is
//!   never `nil`, and `$ == nil` is a build error (make the field required instead).
//! - `(Other)$` of an absent optional field is `nil`: `len`/`mblen` of it are 0, a comparison
//!   with it, `regexp` on it and `in` of it are false, except `!=`, which is true. `== nil` and
//!   `!= nil` test presence; comparing a required field with `nil` is a build error, since it
//!   cannot be `nil`. An optional boolean used as a condition is true only when present and true.
//! - A float comparison with NaN is false (`!=` true).
//!
//! # Generated code
//!
//! [`Rule::check`] is one Rust expression of type `bool`, to be evaluated where `self` is the
//! struct, and [`Rule::violated`] its negation. It only names the fields' `access` places,
//! `::std`, and `::idlgen_runtime::vd`; each regex is compiled once, in a block-local
//! `static LazyLock`, and numbers are read through the runtime's `VdNum` (no `as` casts).
//! For `mblen($) >= 1 && mblen($) <= 32` on a required `username`:
//!
//! ```text
//! check:    ::idlgen_runtime::vd::mblen(&self.username) >= 1 && ::idlgen_runtime::vd::mblen(&self.username) <= 32
//! violated: ::idlgen_runtime::vd::mblen(&self.username) < 1 || ::idlgen_runtime::vd::mblen(&self.username) > 32
//! ```
//!
//! Use them as `if <violated> { return Err(..) }` or `let ok: bool = <check>;`: both are clean
//! under clippy's defaults, while `if !(<check>)` trips `nonminimal_bool`. Negations are pushed
//! inward at build time (`!($ == 1)` becomes `... != 1`) for that reason, and float comparisons
//! are helper calls because their negation is not the opposite comparison when NaN is involved.
//! Only degenerate rules trip clippy: `$ == $` (`eq_op`), `$ || !$` on a boolean
//! (`overly_complex_bool_expr`); generated code may `#[allow]` both.

use std::collections::BTreeSet;
use std::fmt;

/// Static type of a value an expression can see (from the Thrift field type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VdType {
    Bool,
    Int,
    Float,
    String,
    Binary,
    Enum,
    List(Box<VdType>),
    Set(Box<VdType>),
    Map(Box<VdType>, Box<VdType>),
    Struct,
}

/// A field an expression may name: `$` is `current`, `(Name)$` looks up `name` among the siblings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdField<'a> {
    /// The Thrift field name.
    pub name: &'a str,
    /// A Rust place expression for the field, such as `self.username`.
    pub access: &'a str,
    pub ty: VdType,
    /// The Rust type is `Option<T>`.
    pub optional: bool,
}

/// A compiled rule: `check` is a Rust expression of type `bool` that is evaluated where `self` is the struct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub check: String,
    /// `!check`, with the negation pushed inward: `if <violated> { return Err(..) }` passes
    /// clippy where `if !(<check>)` trips `nonminimal_bool`.
    pub violated: String,
    /// The `msg:'...'` of the annotation, if it has one.
    pub message: Option<String>,
}

/// What is wrong and where: `offset` is a byte offset into the expression text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for VdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for VdError {}

/// Compiles one `api.vd` annotation on `current`; `siblings` are the struct's fields (it may
/// include `current` itself).
pub fn compile(
    expr: &str,
    current: &VdField<'_>,
    siblings: &[VdField<'_>],
) -> Result<Rule, VdError> {
    let (rule, msg) = split_tag(expr)?;
    let ast = Parser::new(lex(rule.text, rule.at)?).parse()?;
    let message = match msg {
        Some(part) => parse_message(&part)?,
        None => None,
    };
    let cx = Cx {
        cur: current,
        sibs: siblings,
    };
    let mut check = cx.cond(&ast)?;
    if current.optional {
        check = if check.uses_cur() {
            B::Lift {
                binds: vec![(current.access.to_string(), CUR.to_string())],
                body: Box::new(check),
                on_none: true,
            }
        } else {
            any(vec![
                B::Presence {
                    place: current.access.to_string(),
                    some: false,
                },
                check,
            ])
        };
    }
    Ok(Rule {
        violated: check.clone().negate().render().0,
        check: check.render().0,
        message,
    })
}

fn err(offset: usize, message: impl Into<String>) -> VdError {
    VdError {
        offset,
        message: message.into(),
    }
}

/// Deepest nesting accepted; real rules stay far below it, and it keeps recursion bounded.
const MAX_DEPTH: u32 = 64;

/// The binding of an optional current field inside the generated closure.
const CUR: &str = "vd_cur";

const RT: &str = "::idlgen_runtime::vd";

const SUPPORTED_FUNCS: &str = "len, mblen, regexp, in";

// ---------------------------------------------------------------------------------------------
// The tag: `rule`, or `@:rule; msg:'text'`.

/// A trimmed piece of the annotation and where it starts.
struct Part<'s> {
    at: usize,
    text: &'s str,
}

fn split_tag(src: &str) -> Result<(Part<'_>, Option<Part<'_>>), VdError> {
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

fn parse_message(part: &Part<'_>) -> Result<Option<String>, VdError> {
    let toks = lex(part.text, part.at)?;
    match toks.as_slice() {
        // go-tagexpr treats an empty message as none.
        [(Tok::Str(s), _), (Tok::End, _)] => Ok((!s.is_empty()).then(|| s.clone())),
        [(Tok::Ident(name), at), ..] if name == "sprintf" => Err(err(
            *at,
            "sprintf() messages are not supported; write a plain string: msg:'text'",
        )),
        [(Tok::Str(_), _), (_, at), ..] | [(_, at), ..] => Err(err(
            *at,
            "a message is one string in single quotes, e.g. msg:'too long'",
        )),
        [] => Err(err(part.at, "empty message")),
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
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

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Dollar => "`$`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::AndAnd => "`&&`".into(),
            Tok::OrOr => "`||`".into(),
            Tok::Bang => "`!`".into(),
            Tok::Cmp(op) => format!("`{}`", op.sym()),
            Tok::Arith(op) => format!("`{}`", op.sym()),
            Tok::Int(_) | Tok::Float(_) => "a number".into(),
            Tok::Str(_) => "a string".into(),
            Tok::Ident(name) => format!("`{name}`"),
            Tok::End => "the end of the rule".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn sym(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// The comparison that is true exactly when this one is false (on a total order).
    fn negated(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Ne,
            CmpOp::Ne => CmpOp::Eq,
            CmpOp::Lt => CmpOp::Ge,
            CmpOp::Le => CmpOp::Gt,
            CmpOp::Gt => CmpOp::Le,
            CmpOp::Ge => CmpOp::Lt,
        }
    }

    fn helper(self) -> &'static str {
        match self {
            CmpOp::Eq => "f64_eq",
            CmpOp::Ne => "f64_ne",
            CmpOp::Lt => "f64_lt",
            CmpOp::Le => "f64_le",
            CmpOp::Gt => "f64_gt",
            CmpOp::Ge => "f64_ge",
        }
    }

    fn eval<T: PartialOrd>(self, a: &T, b: &T) -> bool {
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
enum ArOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl ArOp {
    fn sym(self) -> &'static str {
        match self {
            ArOp::Add => "+",
            ArOp::Sub => "-",
            ArOp::Mul => "*",
            ArOp::Div => "/",
            ArOp::Rem => "%",
        }
    }
}

fn lex(text: &str, base: usize) -> Result<Vec<(Tok, usize)>, VdError> {
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
            ('$', _) => (Tok::Dollar, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            (',', _) => (Tok::Comma, 1),
            ('&', Some('&')) => (Tok::AndAnd, 2),
            ('|', Some('|')) => (Tok::OrOr, 2),
            ('&' | '|' | '^', _) => {
                return Err(err(
                    at,
                    format!("`{c}`: bitwise operators are not supported (logic is `&&`, `||`)"),
                ));
            }
            ('=', Some('=')) => (Tok::Cmp(CmpOp::Eq), 2),
            ('=', _) => return Err(err(at, "`=`: comparison is `==`")),
            ('!', Some('=')) => (Tok::Cmp(CmpOp::Ne), 2),
            ('!', _) => (Tok::Bang, 1),
            ('<', Some('<')) | ('>', Some('>')) => {
                return Err(err(at, "shift operators are not supported"));
            }
            ('<', Some('=')) => (Tok::Cmp(CmpOp::Le), 2),
            ('<', _) => (Tok::Cmp(CmpOp::Lt), 1),
            ('>', Some('=')) => (Tok::Cmp(CmpOp::Ge), 2),
            ('>', _) => (Tok::Cmp(CmpOp::Gt), 1),
            ('+', _) => (Tok::Arith(ArOp::Add), 1),
            ('-', _) => (Tok::Arith(ArOp::Sub), 1),
            ('*', _) => (Tok::Arith(ArOp::Mul), 1),
            ('/', _) => (Tok::Arith(ArOp::Div), 1),
            ('%', _) => (Tok::Arith(ArOp::Rem), 1),
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
                (Tok::Ident(text[i..i + len].to_string()), len)
            }
            (c, _) => return Err(err(at, format!("unexpected character `{c}`"))),
        };
        out.push((tok, at));
        i += len;
    }
    out.push((Tok::End, base + text.len()));
    Ok(out)
}

/// `s` starts at the opening quote; returns the token and the bytes it spans.
fn lex_string(s: &str, at: usize) -> Result<(Tok, usize), VdError> {
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => return Ok((Tok::Str(value), i + 1)),
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

fn lex_number(s: &str, at: usize) -> Result<(Tok, usize), VdError> {
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
            Ok(f) if f.is_finite() => Tok::Float(f),
            _ => return Err(err(at, format!("number `{text}` is out of range"))),
        }
    } else {
        match text.parse::<i64>() {
            Ok(n) => Tok::Int(n),
            Err(_) => return Err(err(at, format!("integer `{text}` does not fit in 64 bits"))),
        }
    };
    Ok((tok, end))
}

// ---------------------------------------------------------------------------------------------
// Syntax tree.

#[derive(Debug)]
struct N {
    /// Where errors about the operation point: an operator, a function name, a field's name.
    at: usize,
    /// Where the operand starts, for errors about it as a whole.
    start: usize,
    depth: u32,
    kind: K,
}

#[derive(Debug)]
enum K {
    Cur,
    Field(String),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Nil,
    Not(Box<N>),
    Neg(Box<N>),
    Arith(ArOp, Box<N>, Box<N>),
    Cmp(CmpOp, Box<N>, Box<N>),
    And(Vec<N>),
    Or(Vec<N>),
    Len {
        chars: bool,
        arg: Option<Box<N>>,
    },
    Regexp {
        pattern: String,
        arg: Option<Box<N>>,
    },
    In(Vec<N>),
}

impl N {
    fn leaf(at: usize, kind: K) -> N {
        N {
            at,
            start: at,
            depth: 1,
            kind,
        }
    }

    fn node(at: usize, kind: K) -> Result<N, VdError> {
        let children: Vec<&N> = match &kind {
            K::Not(x) | K::Neg(x) => vec![x],
            K::Arith(_, l, r) | K::Cmp(_, l, r) => vec![l, r],
            K::And(xs) | K::Or(xs) | K::In(xs) => xs.iter().collect(),
            K::Len { arg, .. } | K::Regexp { arg, .. } => arg.iter().map(|a| &**a).collect(),
            _ => Vec::new(),
        };
        let depth = 1 + children.iter().map(|c| c.depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(err(at, "expression nested too deeply"));
        }
        let start = children.iter().map(|c| c.start).fold(at, usize::min);
        Ok(N {
            at,
            start,
            depth,
            kind,
        })
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Open recursive calls, bounded so that no input can overflow the stack.
    nest: u32,
}

impl Parser {
    fn new(toks: Vec<(Tok, usize)>) -> Parser {
        Parser {
            toks,
            pos: 0,
            nest: 0,
        }
    }

    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::End, |t| &t.0)
    }

    fn peek_at(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(0, |t| t.1)
    }

    fn nth(&self, ahead: usize) -> &Tok {
        self.toks.get(self.pos + ahead).map_or(&Tok::End, |t| &t.0)
    }

    fn bump(&mut self) -> (Tok, usize) {
        let at = self.peek_at();
        let tok = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        (tok, at)
    }

    fn parse(mut self) -> Result<N, VdError> {
        let n = self.or()?;
        match self.peek() {
            Tok::End => Ok(n),
            Tok::RParen => Err(err(self.peek_at(), "unexpected `)`: nothing to close")),
            t => Err(err(
                self.peek_at(),
                format!("expected an operator, found {}", t.describe()),
            )),
        }
    }

    fn or(&mut self) -> Result<N, VdError> {
        let first = self.and()?;
        if *self.peek() != Tok::OrOr {
            return Ok(first);
        }
        let at = self.peek_at();
        let mut all = vec![first];
        while *self.peek() == Tok::OrOr {
            self.bump();
            all.push(self.and()?);
        }
        N::node(at, K::Or(all))
    }

    fn and(&mut self) -> Result<N, VdError> {
        let first = self.equality()?;
        if *self.peek() != Tok::AndAnd {
            return Ok(first);
        }
        let at = self.peek_at();
        let mut all = vec![first];
        while *self.peek() == Tok::AndAnd {
            self.bump();
            all.push(self.equality()?);
        }
        N::node(at, K::And(all))
    }

    fn equality(&mut self) -> Result<N, VdError> {
        let mut l = self.relation()?;
        while let Tok::Cmp(op @ (CmpOp::Eq | CmpOp::Ne)) = *self.peek() {
            let (_, at) = self.bump();
            let r = self.relation()?;
            l = N::node(at, K::Cmp(op, Box::new(l), Box::new(r)))?;
        }
        Ok(l)
    }

    fn relation(&mut self) -> Result<N, VdError> {
        let mut l = self.sum()?;
        while let Tok::Cmp(op @ (CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge)) = *self.peek() {
            let (_, at) = self.bump();
            let r = self.sum()?;
            l = N::node(at, K::Cmp(op, Box::new(l), Box::new(r)))?;
        }
        Ok(l)
    }

    fn sum(&mut self) -> Result<N, VdError> {
        let mut l = self.product()?;
        while let Tok::Arith(op @ (ArOp::Add | ArOp::Sub)) = *self.peek() {
            let (_, at) = self.bump();
            let r = self.product()?;
            l = N::node(at, K::Arith(op, Box::new(l), Box::new(r)))?;
        }
        Ok(l)
    }

    fn product(&mut self) -> Result<N, VdError> {
        let mut l = self.unary()?;
        while let Tok::Arith(op @ (ArOp::Mul | ArOp::Div | ArOp::Rem)) = *self.peek() {
            let (_, at) = self.bump();
            let r = self.unary()?;
            l = N::node(at, K::Arith(op, Box::new(l), Box::new(r)))?;
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<N, VdError> {
        if self.nest >= MAX_DEPTH {
            return Err(err(self.peek_at(), "expression nested too deeply"));
        }
        self.nest += 1;
        let n = match self.peek() {
            Tok::Bang => {
                let (_, at) = self.bump();
                self.unary().and_then(|x| N::node(at, K::Not(Box::new(x))))
            }
            Tok::Arith(ArOp::Sub) => {
                let (_, at) = self.bump();
                self.unary().and_then(|x| N::node(at, K::Neg(Box::new(x))))
            }
            _ => self.primary(),
        };
        self.nest -= 1;
        n
    }

    fn primary(&mut self) -> Result<N, VdError> {
        let (tok, at) = self.bump();
        match tok {
            Tok::Dollar => Ok(N::leaf(at, K::Cur)),
            Tok::LParen => {
                if let (Tok::Ident(name), Tok::RParen, Tok::Dollar) =
                    (self.peek(), self.nth(1), self.nth(2))
                {
                    let (name, name_at) = (name.clone(), self.peek_at());
                    if name.contains('.') {
                        return Err(err(
                            name_at,
                            format!("nested fields (`{name}`) are not supported"),
                        ));
                    }
                    self.pos += 3;
                    return Ok(N {
                        at: name_at,
                        start: at,
                        depth: 1,
                        kind: K::Field(name),
                    });
                }
                let inner = self.or()?;
                self.close(at)?;
                Ok(inner)
            }
            Tok::Int(n) => Ok(N::leaf(at, K::Int(n))),
            Tok::Float(f) => Ok(N::leaf(at, K::Float(f))),
            Tok::Str(s) => Ok(N::leaf(at, K::Str(s))),
            Tok::Ident(name) => match name.as_str() {
                "true" => Ok(N::leaf(at, K::Bool(true))),
                "false" => Ok(N::leaf(at, K::Bool(false))),
                "nil" => Ok(N::leaf(at, K::Nil)),
                _ if *self.peek() == Tok::LParen => self.call(&name, at),
                _ => Err(err(
                    at,
                    format!("unknown name `{name}`; a field is written `({name})$`"),
                )),
            },
            Tok::RParen => Err(err(at, "unexpected `)`: expected a value")),
            other => Err(err(
                at,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }

    /// Expects the `)` of the `(` at `open`.
    fn close(&mut self, open: usize) -> Result<(), VdError> {
        match self.peek() {
            Tok::RParen => {
                self.bump();
                Ok(())
            }
            Tok::End => Err(err(open, "unclosed `(`")),
            t => Err(err(
                self.peek_at(),
                format!("expected `)` or an operator, found {}", t.describe()),
            )),
        }
    }

    fn call(&mut self, name: &str, at: usize) -> Result<N, VdError> {
        match name {
            "len" | "mblen" | "regexp" | "in" => {}
            "sprintf" | "email" | "phone" | "range" => {
                return Err(err(
                    at,
                    format!("`{name}()` is not supported; the functions are {SUPPORTED_FUNCS}"),
                ));
            }
            _ => {
                return Err(err(
                    at,
                    format!("unknown function `{name}()`; the functions are {SUPPORTED_FUNCS}"),
                ));
            }
        }
        let (_, open) = self.bump();
        let mut args = Vec::new();
        if *self.peek() == Tok::RParen {
            self.bump();
        } else {
            loop {
                args.push(self.or()?);
                if *self.peek() == Tok::Comma {
                    self.bump();
                    continue;
                }
                match self.peek() {
                    Tok::RParen => {
                        self.bump();
                        break;
                    }
                    Tok::End => return Err(err(open, "unclosed `(`")),
                    t => {
                        return Err(err(
                            self.peek_at(),
                            format!("expected `,` or `)`, found {}", t.describe()),
                        ));
                    }
                }
            }
        }
        let n = args.len();
        match name {
            "len" | "mblen" => {
                if n > 1 {
                    return Err(err(at, format!("{name}() takes one argument, found {n}")));
                }
                let arg = args.pop().map(Box::new);
                N::node(
                    at,
                    K::Len {
                        chars: name == "mblen",
                        arg,
                    },
                )
            }
            "regexp" => {
                if n == 0 || n > 2 {
                    return Err(err(
                        at,
                        format!(
                            "regexp() takes a pattern and optionally a value, found {n} arguments"
                        ),
                    ));
                }
                let arg = if n == 2 {
                    args.pop().map(Box::new)
                } else {
                    None
                };
                let first = args.pop();
                let Some(N {
                    kind: K::Str(pattern),
                    at: pat_at,
                    ..
                }) = first
                else {
                    let pat_at = first.map_or(at, |f| f.at);
                    return Err(err(
                        pat_at,
                        "the pattern of regexp() must be a string in single quotes",
                    ));
                };
                if let Err(e) = regex::Regex::new(&pattern) {
                    return Err(err(
                        pat_at,
                        format!("invalid regular expression: {}", regex_reason(&e)),
                    ));
                }
                N::node(at, K::Regexp { pattern, arg })
            }
            _ => {
                if n < 2 {
                    return Err(err(
                        at,
                        format!(
                            "in() takes a value and at least one candidate, found {n} arguments"
                        ),
                    ));
                }
                N::node(at, K::In(args))
            }
        }
    }
}

/// The one line of a regex error that says what is wrong (the rest is an ASCII-art caret).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_string()
}

// ---------------------------------------------------------------------------------------------
// Typing and emission.

/// Rust precedence levels of emitted code, loosest first; a child looser than its slot needs
/// parentheses, and none are added otherwise (rustc's `unused_parens` would object).
const P_OR: u8 = 1;
const P_AND: u8 = 2;
const P_CMP: u8 = 3;
const P_ADD: u8 = 4;
const P_MUL: u8 = 5;
const P_UNARY: u8 = 6;
const P_PRIMARY: u8 = 7;

fn wrap(code: &str, prec: u8, min: u8) -> String {
    if prec < min {
        format!("({code})")
    } else {
        code.to_string()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Bool,
    Int,
    Float,
    Str,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Bool => "a boolean",
            Ty::Int => "an integer",
            Ty::Float => "a floating-point number",
            Ty::Str => "a string",
        }
    }
}

fn describe_field(ty: &VdType) -> &'static str {
    match ty {
        VdType::Bool => "a boolean",
        VdType::Int => "an integer",
        VdType::Float => "a double",
        VdType::String => "a string",
        VdType::Binary => "binary",
        VdType::Enum => "an enum",
        VdType::List(_) => "a list",
        VdType::Set(_) => "a set",
        VdType::Map(..) => "a map",
        VdType::Struct => "a struct",
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// A typed value as Rust code.
#[derive(Clone, Debug)]
struct Val {
    ty: Ty,
    code: String,
    prec: u8,
    /// Known at build time.
    lit: Option<Lit>,
    /// Optional siblings the code reads through their `vd_f{i}` binding: a comparison of it is
    /// emitted inside `.as_ref().is_some_and(|vd_f{i}| ...)`.
    lifts: BTreeSet<usize>,
    /// Reads the optional current field's binding.
    cur: bool,
    /// The same value read directly as `f64`, for an integer field.
    as_f64: Option<String>,
}

impl Val {
    fn lit(lit: Lit) -> Val {
        let (ty, code) = match &lit {
            Lit::Bool(b) => (Ty::Bool, b.to_string()),
            Lit::Int(n) => (Ty::Int, n.to_string()),
            Lit::Float(f) => (Ty::Float, float_code(*f)),
            Lit::Str(s) => (Ty::Str, format!("{s:?}")),
        };
        let prec = if code.starts_with('-') {
            P_UNARY
        } else {
            P_PRIMARY
        };
        Val {
            ty,
            code,
            prec,
            lit: Some(lit),
            lifts: BTreeSet::new(),
            cur: false,
            as_f64: None,
        }
    }

    fn code(ty: Ty, code: String, prec: u8, from: &[&Val]) -> Val {
        Val {
            ty,
            code,
            prec,
            lit: None,
            lifts: from.iter().flat_map(|v| v.lifts.iter().copied()).collect(),
            cur: from.iter().any(|v| v.cur),
            as_f64: None,
        }
    }

    fn is_num(&self) -> bool {
        matches!(self.ty, Ty::Int | Ty::Float)
    }

    /// As an `f64` expression.
    fn float(&self) -> (String, u8) {
        if let Some(code) = &self.as_f64 {
            return (code.clone(), P_PRIMARY);
        }
        match (&self.lit, self.ty) {
            (Some(Lit::Int(n)), _) => {
                let code = float_code(*n as f64);
                let prec = if *n < 0 { P_UNARY } else { P_PRIMARY };
                (code, prec)
            }
            // Through the runtime rather than `as`, which clippy::pedantic flags as lossy.
            (_, Ty::Int) => (
                format!(
                    "{RT}::VdNum::vd_f64(&{})",
                    wrap(&self.code, self.prec, P_UNARY)
                ),
                P_PRIMARY,
            ),
            _ => (self.code.clone(), self.prec),
        }
    }

    /// As an `i64` expression (floats truncated, like go-tagexpr's `%`).
    fn int(&self) -> (String, u8) {
        match (&self.lit, self.ty) {
            (Some(Lit::Float(f)), _) => {
                let n = *f as i64;
                (n.to_string(), if n < 0 { P_UNARY } else { P_PRIMARY })
            }
            (_, Ty::Float) => (
                format!(
                    "{RT}::VdNum::vd_i64(&{})",
                    wrap(&self.code, self.prec, P_UNARY)
                ),
                P_PRIMARY,
            ),
            _ => (self.code.clone(), self.prec),
        }
    }

    fn int_lit(&self) -> Option<i64> {
        match self.lit {
            Some(Lit::Int(n)) => Some(n),
            Some(Lit::Float(f)) => Some(f as i64),
            _ => None,
        }
    }

    fn float_lit(&self) -> Option<f64> {
        match self.lit {
            Some(Lit::Int(n)) => Some(n as f64),
            Some(Lit::Float(f)) => Some(f),
            _ => None,
        }
    }

    /// As the receiver of a method call on `i64`.
    fn int_receiver(&self) -> String {
        match self.lit {
            // A bare literal's type would be ambiguous for the method.
            Some(Lit::Int(n)) if n < 0 => format!("({n}i64)"),
            Some(Lit::Int(n)) => format!("{n}i64"),
            _ => wrap(&self.code, self.prec, P_PRIMARY),
        }
    }
}

/// An `f64` literal (finite) in Rust syntax.
fn float_code(f: f64) -> String {
    format!("{f:?}")
}

/// A boolean as Rust code, kept structured so that negation can be pushed inward.
#[derive(Clone, Debug)]
enum B {
    Const(bool),
    /// A comparison on a total order (integers, strings, booleans): negation flips `op`.
    Cmp {
        l: String,
        op: CmpOp,
        r: String,
        cur: bool,
    },
    /// Any other boolean expression; negation prefixes `!`.
    Atom {
        code: String,
        prec: u8,
        neg: bool,
        cur: bool,
    },
    /// `place.is_some()` / `place.is_none()` of an optional field.
    Presence {
        place: String,
        some: bool,
    },
    /// `body` with optional fields bound: `place.as_ref().is_some_and(|name| body)`, or
    /// `is_none_or` when `on_none` (the value when any of them is absent).
    Lift {
        binds: Vec<(String, String)>,
        body: Box<B>,
        on_none: bool,
    },
    All(Vec<B>),
    Any(Vec<B>),
}

impl B {
    fn uses_cur(&self) -> bool {
        match self {
            B::Const(_) | B::Presence { .. } => false,
            B::Cmp { cur, .. } | B::Atom { cur, .. } => *cur,
            B::Lift { body, .. } => body.uses_cur(),
            B::All(xs) | B::Any(xs) => xs.iter().any(B::uses_cur),
        }
    }

    fn negate(self) -> B {
        match self {
            B::Const(b) => B::Const(!b),
            B::Cmp { l, op, r, cur } => B::Cmp {
                l,
                op: op.negated(),
                r,
                cur,
            },
            B::Atom {
                code,
                prec,
                neg,
                cur,
            } => B::Atom {
                code,
                prec,
                neg: !neg,
                cur,
            },
            B::Presence { place, some } => B::Presence { place, some: !some },
            B::Lift {
                binds,
                body,
                on_none,
            } => B::Lift {
                binds,
                body: Box::new(body.negate()),
                on_none: !on_none,
            },
            B::All(xs) => any(xs.into_iter().map(B::negate).collect()),
            B::Any(xs) => all(xs.into_iter().map(B::negate).collect()),
        }
    }

    fn render(&self) -> (String, u8) {
        match self {
            B::Const(b) => (b.to_string(), P_PRIMARY),
            B::Cmp { l, op, r, .. } => (format!("{l} {} {r}", op.sym()), P_CMP),
            B::Atom {
                code,
                prec,
                neg: false,
                ..
            } => (code.clone(), *prec),
            B::Atom {
                code,
                prec,
                neg: true,
                ..
            } => (format!("!{}", wrap(code, *prec, P_UNARY)), P_UNARY),
            B::Presence { place, some } => {
                let method = if *some { "is_some" } else { "is_none" };
                (format!("{place}.{method}()"), P_PRIMARY)
            }
            B::Lift {
                binds,
                body,
                on_none,
            } => {
                let method = if *on_none {
                    "is_none_or"
                } else {
                    "is_some_and"
                };
                let mut code = body.render().0;
                for (place, name) in binds.iter().rev() {
                    code = format!("{place}.as_ref().{method}(|{name}| {code})");
                }
                (code, P_PRIMARY)
            }
            B::All(xs) => (join(xs, " && ", P_AND), P_AND),
            // `&&` inside `||` is parenthesized for the reader, not for Rust.
            B::Any(xs) => (join(xs, " || ", P_CMP), P_OR),
        }
    }
}

fn join(xs: &[B], sep: &str, min: u8) -> String {
    let parts: Vec<String> = xs
        .iter()
        .map(|x| {
            let (code, prec) = x.render();
            wrap(&code, prec, min)
        })
        .collect();
    parts.join(sep)
}

fn all(xs: Vec<B>) -> B {
    let mut out = Vec::new();
    for x in xs {
        match x {
            B::Const(true) => {}
            B::Const(false) => return B::Const(false),
            B::All(inner) => out.extend(inner),
            x => out.push(x),
        }
    }
    match out.len() {
        0 => B::Const(true),
        1 => out.pop().unwrap_or(B::Const(true)),
        _ => B::All(out),
    }
}

fn any(xs: Vec<B>) -> B {
    let mut out = Vec::new();
    for x in xs {
        match x {
            B::Const(false) => {}
            B::Const(true) => return B::Const(true),
            B::Any(inner) => out.extend(inner),
            x => out.push(x),
        }
    }
    match out.len() {
        0 => B::Const(false),
        1 => out.pop().unwrap_or(B::Const(false)),
        _ => B::Any(out),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Cur,
    Sib(usize),
}

struct Cx<'c, 'a> {
    cur: &'c VdField<'a>,
    sibs: &'c [VdField<'a>],
}

impl Cx<'_, '_> {
    fn field(&self, t: Target) -> &VdField<'_> {
        match t {
            Target::Cur => self.cur,
            Target::Sib(i) => self.sibs.get(i).unwrap_or(self.cur),
        }
    }

    /// `(name)$`: the Thrift name, else hz's Go-style spelling of it (`UserID` for `user_id`).
    fn resolve(&self, name: &str, at: usize) -> Result<Target, VdError> {
        let norm = |s: &str| s.replace('_', "").to_ascii_lowercase();
        let target = |i: usize| {
            if self.sibs[i].name == self.cur.name {
                Target::Cur
            } else {
                Target::Sib(i)
            }
        };
        if name == self.cur.name {
            return Ok(Target::Cur);
        }
        if let Some(i) = self.sibs.iter().position(|f| f.name == name) {
            return Ok(target(i));
        }
        if norm(name) == norm(self.cur.name) {
            return Ok(Target::Cur);
        }
        let close: Vec<usize> = (0..self.sibs.len())
            .filter(|&i| norm(self.sibs[i].name) == norm(name))
            .collect();
        match close.as_slice() {
            [i] => Ok(target(*i)),
            [] => {
                let names: Vec<&str> = self.sibs.iter().map(|f| f.name).collect();
                Err(err(
                    at,
                    format!(
                        "unknown field `{name}`; the fields are: {}",
                        names.join(", ")
                    ),
                ))
            }
            _ => Err(err(
                at,
                format!("`{name}` could name several fields; use the exact Thrift name"),
            )),
        }
    }

    fn target_of(&self, n: &N) -> Result<Option<Target>, VdError> {
        match &n.kind {
            K::Cur => Ok(Some(Target::Cur)),
            K::Field(name) => self.resolve(name, n.at).map(Some),
            _ => Ok(None),
        }
    }

    /// How generated code reaches a field's value inside the rule: a place of type `T`, or a
    /// closure binding of type `&T` for optional fields.
    fn source(&self, t: Target) -> (String, bool) {
        match t {
            Target::Cur if self.cur.optional => (CUR.to_string(), true),
            Target::Cur => (self.cur.access.to_string(), false),
            Target::Sib(i) if self.field(t).optional => (format!("vd_f{i}"), true),
            Target::Sib(_) => (self.field(t).access.to_string(), false),
        }
    }

    /// A field's value in an expression.
    fn field_val(&self, t: Target, at: usize) -> Result<Val, VdError> {
        let f = self.field(t);
        let (src, is_ref) = self.source(t);
        let by_ref = if is_ref {
            src.clone()
        } else {
            format!("&{src}")
        };
        let as_f64 = match &f.ty {
            VdType::Int => Some(format!("{RT}::VdNum::vd_f64({by_ref})")),
            VdType::Enum => Some(format!("{RT}::VdNum::vd_f64(&{src}.inner())")),
            _ => None,
        };
        let (ty, code, prec) = match &f.ty {
            VdType::Bool if is_ref => (Ty::Bool, format!("*{src}"), P_UNARY),
            VdType::Bool => (Ty::Bool, src, P_PRIMARY),
            VdType::Int => (Ty::Int, format!("{RT}::VdNum::vd_i64({by_ref})"), P_PRIMARY),
            VdType::Float => (
                Ty::Float,
                format!("{RT}::VdNum::vd_f64({by_ref})"),
                P_PRIMARY,
            ),
            VdType::Enum => (
                Ty::Int,
                format!("{RT}::VdNum::vd_i64(&{src}.inner())"),
                P_PRIMARY,
            ),
            VdType::String => (Ty::Str, format!("{src}.as_str()"), P_PRIMARY),
            other => {
                let what = describe_field(other);
                let hint = match other {
                    VdType::Struct => "a rule can only compare it with nil (when it is optional)",
                    _ => {
                        "a rule can only take its len() or compare it with nil (when it is optional)"
                    }
                };
                return Err(err(at, format!("`{}` is {what}: {hint}", f.name)));
            }
        };
        let mut v = Val::code(ty, code, prec, &[]);
        v.as_f64 = as_f64;
        match t {
            Target::Cur => v.cur = true,
            Target::Sib(i) if is_ref => {
                v.lifts.insert(i);
            }
            Target::Sib(_) => {}
        }
        Ok(v)
    }

    /// `n` as a condition.
    fn cond(&self, n: &N) -> Result<B, VdError> {
        match &n.kind {
            K::Bool(b) => Ok(B::Const(*b)),
            K::Not(x) => Ok(self.cond(x)?.negate()),
            K::And(xs) => Ok(all(xs
                .iter()
                .map(|x| self.cond(x))
                .collect::<Result<_, _>>()?)),
            K::Or(xs) => Ok(any(xs
                .iter()
                .map(|x| self.cond(x))
                .collect::<Result<_, _>>()?)),
            K::Cmp(op, l, r) => self.compare(*op, l, r, n.at),
            K::Regexp { pattern, arg } => self.regexp(pattern, arg.as_deref(), n.at),
            K::In(args) => self.within(args),
            _ => {
                if let Some(i) = self.optional_bool_sibling(n)? {
                    return Ok(self.optional_bool(i, CmpOp::Eq, true));
                }
                let v = self.val(n)?;
                if v.ty != Ty::Bool {
                    return Err(err(
                        n.start,
                        format!(
                            "expected a condition (a comparison, `&&`, `||`, `!`, regexp(), in()), found {}",
                            v.ty.describe()
                        ),
                    ));
                }
                if let Some(Lit::Bool(b)) = v.lit {
                    return Ok(B::Const(b));
                }
                let lifts = v.lifts.clone();
                let atom = B::Atom {
                    code: v.code,
                    prec: v.prec,
                    neg: false,
                    cur: v.cur,
                };
                Ok(self.seal(atom, &lifts, false))
            }
        }
    }

    /// `n` is `(Flag)$` for an optional boolean sibling `Flag`.
    fn optional_bool_sibling(&self, n: &N) -> Result<Option<usize>, VdError> {
        Ok(match self.target_of(n)? {
            Some(Target::Sib(i)) => {
                let f = self.field(Target::Sib(i));
                (f.optional && f.ty == VdType::Bool).then_some(i)
            }
            _ => None,
        })
    }

    /// `(Flag)$ op b` for an optional boolean sibling: absent equals nothing.
    fn optional_bool(&self, i: usize, op: CmpOp, b: bool) -> B {
        B::Cmp {
            l: self.sibs[i].access.to_string(),
            op,
            r: format!("Some({b})"),
            cur: false,
        }
    }

    /// Binds the optional siblings `body` reads; `on_none` is the result when one is absent.
    fn seal(&self, body: B, lifts: &BTreeSet<usize>, on_none: bool) -> B {
        if lifts.is_empty() || matches!(body, B::Const(_)) {
            return body;
        }
        B::Lift {
            binds: lifts
                .iter()
                .map(|&i| {
                    (
                        self.field(Target::Sib(i)).access.to_string(),
                        format!("vd_f{i}"),
                    )
                })
                .collect(),
            body: Box::new(body),
            on_none,
        }
    }

    /// `n` as a value.
    fn val(&self, n: &N) -> Result<Val, VdError> {
        match &n.kind {
            K::Cur => self.field_val(Target::Cur, n.at),
            K::Field(name) => {
                let t = self.resolve(name, n.at)?;
                self.field_val(t, n.at)
            }
            K::Int(v) => Ok(Val::lit(Lit::Int(*v))),
            K::Float(v) => Ok(Val::lit(Lit::Float(*v))),
            K::Str(v) => Ok(Val::lit(Lit::Str(v.clone()))),
            K::Bool(v) => Ok(Val::lit(Lit::Bool(*v))),
            K::Nil => Err(err(n.at, "nil can only be compared with `==` or `!=`")),
            K::Neg(x) => self.negative(x, n.at),
            K::Arith(op, l, r) => self.arith(*op, l, r, n.at),
            K::Len { chars, arg } => self.length(*chars, arg.as_deref(), n.at),
            K::Not(_) | K::Cmp(..) | K::And(_) | K::Or(_) | K::Regexp { .. } | K::In(_) => {
                let b = self.cond(n)?;
                if let B::Const(c) = b {
                    return Ok(Val::lit(Lit::Bool(c)));
                }
                let (code, prec) = b.render();
                let mut v = Val::code(Ty::Bool, code, prec, &[]);
                v.cur = b.uses_cur();
                Ok(v)
            }
        }
    }

    fn negative(&self, x: &N, at: usize) -> Result<Val, VdError> {
        let v = self.val(x)?;
        match (&v.lit, v.ty) {
            (Some(Lit::Int(n)), _) => Ok(Val::lit(Lit::Int(n.wrapping_neg()))),
            (Some(Lit::Float(f)), _) => Ok(Val::lit(Lit::Float(-f))),
            (_, Ty::Int) => Ok(Val::code(
                Ty::Int,
                format!("{}.wrapping_neg()", v.int_receiver()),
                P_PRIMARY,
                &[&v],
            )),
            // `-(-x)`: `--x` would be clippy's `double_neg`.
            (_, Ty::Float) => Ok(Val::code(
                Ty::Float,
                format!("-{}", wrap(&v.code, v.prec, P_PRIMARY)),
                P_UNARY,
                &[&v],
            )),
            (_, ty) => Err(err(
                at,
                format!("`-` needs a number, found {}", ty.describe()),
            )),
        }
    }

    fn arith(&self, op: ArOp, l: &N, r: &N, at: usize) -> Result<Val, VdError> {
        let (lv, rv) = (self.val(l)?, self.val(r)?);
        if !(lv.is_num() && rv.is_num()) {
            if op == ArOp::Add && lv.ty == Ty::Str && rv.ty == Ty::Str {
                return Err(err(at, "string concatenation is not supported"));
            }
            return Err(err(
                at,
                format!(
                    "`{}` needs numbers, found {} and {}",
                    op.sym(),
                    lv.ty.describe(),
                    rv.ty.describe()
                ),
            ));
        }
        let zero_divisor = match op {
            ArOp::Div => rv.float_lit() == Some(0.0),
            ArOp::Rem => rv.int_lit() == Some(0),
            _ => false,
        };
        if zero_divisor {
            return Err(err(at, "division by zero"));
        }
        let from = [&lv, &rv];
        if op == ArOp::Rem {
            if let (Some(a), Some(b)) = (lv.int_lit(), rv.int_lit()) {
                return Ok(Val::lit(Lit::Int(a.wrapping_rem(b))));
            }
            let code = format!("{RT}::rem({}, {})", lv.int().0, rv.int().0);
            return Ok(Val::code(Ty::Int, code, P_PRIMARY, &from));
        }
        if lv.ty == Ty::Int && rv.ty == Ty::Int && op != ArOp::Div {
            if let (Some(Lit::Int(a)), Some(Lit::Int(b))) = (&lv.lit, &rv.lit) {
                let n = match op {
                    ArOp::Add => a.wrapping_add(*b),
                    ArOp::Sub => a.wrapping_sub(*b),
                    _ => a.wrapping_mul(*b),
                };
                return Ok(Val::lit(Lit::Int(n)));
            }
            let method = match op {
                ArOp::Add => "wrapping_add",
                ArOp::Sub => "wrapping_sub",
                _ => "wrapping_mul",
            };
            let code = format!("{}.{method}({})", lv.int_receiver(), rv.code);
            return Ok(Val::code(Ty::Int, code, P_PRIMARY, &from));
        }
        if let (Some(a), Some(b)) = (lv.float_lit(), rv.float_lit()) {
            let f = match op {
                ArOp::Add => a + b,
                ArOp::Sub => a - b,
                ArOp::Mul => a * b,
                _ => a / b,
            };
            if !f.is_finite() {
                return Err(err(at, "this constant overflows a double"));
            }
            return Ok(Val::lit(Lit::Float(f)));
        }
        // Left-associative: the right operand must bind tighter than the operator.
        let (prec, right_min) = match op {
            ArOp::Add | ArOp::Sub => (P_ADD, P_MUL),
            _ => (P_MUL, P_UNARY),
        };
        let ((a, ap), (b, bp)) = (lv.float(), rv.float());
        let code = format!(
            "{} {} {}",
            wrap(&a, ap, prec),
            op.sym(),
            wrap(&b, bp, right_min)
        );
        Ok(Val::code(Ty::Float, code, prec, &from))
    }

    fn length(&self, chars: bool, arg: Option<&N>, at: usize) -> Result<Val, VdError> {
        let name = if chars { "mblen" } else { "len" };
        let (t, arg_at) = match arg {
            None => (Target::Cur, at),
            Some(a) => match (&a.kind, self.target_of(a)?) {
                (K::Str(s), _) => {
                    let n = if chars { s.chars().count() } else { s.len() };
                    return Ok(Val::lit(Lit::Int(i64::try_from(n).unwrap_or(i64::MAX))));
                }
                (_, Some(t)) => (t, a.start),
                _ => {
                    return Err(err(
                        a.start,
                        format!("{name}() takes a field (`$`, `(Name)$`) or a string"),
                    ));
                }
            },
        };
        let f = self.field(t);
        let fits = match &f.ty {
            VdType::String => true,
            VdType::Binary | VdType::List(_) | VdType::Set(_) | VdType::Map(..) => !chars,
            _ => false,
        };
        if !fits {
            let wants = if chars {
                "a string"
            } else {
                "a string, binary, list, set or map"
            };
            return Err(err(
                arg_at,
                format!(
                    "{name}() needs {wants}, but `{}` is {}",
                    f.name,
                    describe_field(&f.ty)
                ),
            ));
        }
        // An optional sibling is passed as `&Option<T>`: the runtime counts an absent one as 0.
        let by_ref = match t {
            Target::Cur if self.cur.optional => CUR.to_string(),
            _ => format!("&{}", f.access),
        };
        let mut v = Val::code(Ty::Int, format!("{RT}::{name}({by_ref})"), P_PRIMARY, &[]);
        v.cur = t == Target::Cur;
        Ok(v)
    }

    fn compare(&self, op: CmpOp, l: &N, r: &N, at: usize) -> Result<B, VdError> {
        let (l_nil, r_nil) = (matches!(l.kind, K::Nil), matches!(r.kind, K::Nil));
        if l_nil || r_nil {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(err(at, "nil can only be compared with `==` or `!=`"));
            }
            if l_nil && r_nil {
                return Ok(B::Const(op == CmpOp::Eq));
            }
            return self.presence(if l_nil { r } else { l }, op == CmpOp::Ne);
        }
        // `x == true` is `x`: clippy's `bool_comparison` objects to the literal form.
        let bool_lit = match (&l.kind, &r.kind) {
            (K::Bool(_), K::Bool(_)) => None,
            (K::Bool(b), _) => Some((*b, r)),
            (_, K::Bool(b)) => Some((*b, l)),
            _ => None,
        };
        if let Some((b, other)) = bool_lit {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(err(at, "booleans can only be compared with `==` or `!=`"));
            }
            if let Some(i) = self.optional_bool_sibling(other)? {
                return Ok(self.optional_bool(i, op, b));
            }
            let v = self.val(other)?;
            if v.ty != Ty::Bool {
                return Err(err(
                    at,
                    format!("cannot compare {} with a boolean", v.ty.describe()),
                ));
            }
            let c = self.cond(other)?;
            return Ok(if (op == CmpOp::Eq) == b {
                c
            } else {
                c.negate()
            });
        }
        let (lv, rv) = (self.val(l)?, self.val(r)?);
        let body = cmp_vals(op, &lv, &rv, at)?;
        let lifts = lv.lifts.union(&rv.lifts).copied().collect();
        // An absent operand is unequal to everything: only `!=` holds.
        Ok(self.seal(body, &lifts, op == CmpOp::Ne))
    }

    /// `x == nil` (`some: false`) or `x != nil`.
    fn presence(&self, n: &N, some: bool) -> Result<B, VdError> {
        match self.target_of(n)? {
            Some(Target::Cur) if self.cur.optional => Err(err(
                n.at,
                "`$` is never nil here: a rule on an optional field is only checked when the field is set (make it required to demand it)",
            )),
            Some(Target::Cur) => Err(err(
                n.at,
                format!("`{}` is required, so it is never nil", self.cur.name),
            )),
            Some(t @ Target::Sib(_)) => {
                let f = self.field(t);
                if !f.optional {
                    return Err(err(
                        n.at,
                        format!("`{}` is required, so it is never nil", f.name),
                    ));
                }
                Ok(B::Presence {
                    place: f.access.to_string(),
                    some,
                })
            }
            None => Err(err(n.start, "only a field can be compared with nil")),
        }
    }

    fn regexp(&self, pattern: &str, arg: Option<&N>, at: usize) -> Result<B, VdError> {
        let (v, arg_at) = match arg {
            Some(a) => (self.val(a)?, a.start),
            None => (self.field_val(Target::Cur, at)?, at),
        };
        if v.ty != Ty::Str {
            return Err(err(
                arg_at,
                format!("regexp() matches a string, found {}", v.ty.describe()),
            ));
        }
        if let Some(Lit::Str(s)) = &v.lit {
            // Checked when parsed; a failure here cannot happen but must not panic either.
            return regex::Regex::new(pattern)
                .map(|re| B::Const(re.is_match(s)))
                .map_err(|e| {
                    err(
                        at,
                        format!("invalid regular expression: {}", regex_reason(&e)),
                    )
                });
        }
        // The block is an argument, never the start of the check: a check that began with `{`
        // would parse as a block statement where it is the tail of a function.
        let code = format!(
            "{RT}::is_match({{ static RE: ::std::sync::LazyLock<{RT}::Regex> = ::std::sync::LazyLock::new(|| {RT}::Regex::new({pattern:?}).expect(\"checked at build time\")); &RE }}, {})",
            v.code
        );
        let atom = B::Atom {
            code,
            prec: P_PRIMARY,
            neg: false,
            cur: v.cur,
        };
        Ok(self.seal(atom, &v.lifts, false))
    }

    /// `in(x, a, b, ...)`: `x == a || x == b || ...`.
    fn within(&self, args: &[N]) -> Result<B, VdError> {
        let Some((first, candidates)) = args.split_first() else {
            return Ok(B::Const(false));
        };
        let subject = self.val(first)?;
        let mut seen = BTreeSet::new();
        // Candidates that read no optional sibling share one binding of the subject's; the
        // others are bound one by one, so an absent candidate only fails its own comparison.
        let mut plain = Vec::new();
        let mut bound = Vec::new();
        for c in candidates {
            if matches!(c.kind, K::Nil) {
                return Err(err(
                    c.at,
                    "nil cannot be a candidate of in(); compare with `== nil`",
                ));
            }
            let v = self.val(c)?;
            let part = cmp_vals(CmpOp::Eq, &subject, &v, c.start)?;
            // A repeated candidate would be clippy's `eq_op` / `nonminimal_bool`.
            if !seen.insert(part.render().0) {
                continue;
            }
            if v.lifts.is_empty() {
                plain.push(part);
            } else {
                let lifts = subject.lifts.union(&v.lifts).copied().collect();
                bound.push(self.seal(part, &lifts, false));
            }
        }
        let mut parts = vec![self.seal(any(plain), &subject.lifts, false)];
        parts.extend(bound);
        Ok(any(parts))
    }
}

/// `l op r` on two values whose types must agree (integers and floats mix as `f64`).
fn cmp_vals(op: CmpOp, lv: &Val, rv: &Val, at: usize) -> Result<B, VdError> {
    let exact = |l: &str, r: &str| B::Cmp {
        // Comparisons do not chain in Rust.
        l: wrap(l, lv.prec, P_ADD),
        op,
        r: wrap(r, rv.prec, P_ADD),
        cur: lv.cur || rv.cur,
    };
    match (lv.ty, rv.ty) {
        (Ty::Int, Ty::Int) => match (&lv.lit, &rv.lit) {
            (Some(Lit::Int(a)), Some(Lit::Int(b))) => Ok(B::Const(op.eval(a, b))),
            _ => Ok(exact(&lv.code, &rv.code)),
        },
        (Ty::Str, Ty::Str) => match (&lv.lit, &rv.lit) {
            (Some(Lit::Str(a)), Some(Lit::Str(b))) => Ok(B::Const(op.eval(a, b))),
            // `x == ""` is clippy's `comparison_to_empty`.
            (Some(Lit::Str(e)), None) | (None, Some(Lit::Str(e)))
                if e.is_empty() && matches!(op, CmpOp::Eq | CmpOp::Ne) =>
            {
                let other = if lv.lit.is_none() { lv } else { rv };
                Ok(B::Atom {
                    code: format!("{}.is_empty()", wrap(&other.code, other.prec, P_PRIMARY)),
                    prec: P_PRIMARY,
                    neg: op == CmpOp::Ne,
                    cur: other.cur,
                })
            }
            _ => Ok(exact(&lv.code, &rv.code)),
        },
        (Ty::Bool, Ty::Bool) => {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(err(at, "booleans can only be compared with `==` or `!=`"));
            }
            match (&lv.lit, &rv.lit) {
                (Some(Lit::Bool(a)), Some(Lit::Bool(b))) => Ok(B::Const(op.eval(a, b))),
                _ => Ok(exact(&lv.code, &rv.code)),
            }
        }
        (Ty::Int | Ty::Float, Ty::Int | Ty::Float) => {
            if let (Some(a), Some(b)) = (lv.float_lit(), rv.float_lit()) {
                return Ok(B::Const(op.eval(&a, &b)));
            }
            let code = format!("{RT}::{}({}, {})", op.helper(), lv.float().0, rv.float().0);
            Ok(B::Atom {
                code,
                prec: P_PRIMARY,
                neg: false,
                cur: lv.cur || rv.cur,
            })
        }
        (a, b) => Err(err(
            at,
            format!("cannot compare {} with {}", a.describe(), b.describe()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f<'a>(name: &'a str, access: &'a str, ty: VdType, optional: bool) -> VdField<'a> {
        VdField {
            name,
            access,
            ty,
            optional,
        }
    }

    /// A struct with one field of each kind; `o_*` are optional.
    fn fields() -> Vec<VdField<'static>> {
        vec![
            f("name", "self.name", VdType::String, false),
            f("age", "self.age", VdType::Int, false),
            f("score", "self.score", VdType::Float, false),
            f("ok", "self.ok", VdType::Bool, false),
            f("data", "self.data", VdType::Binary, false),
            f("kind", "self.kind", VdType::Enum, false),
            f(
                "tags",
                "self.tags",
                VdType::List(Box::new(VdType::String)),
                false,
            ),
            f("ids", "self.ids", VdType::Set(Box::new(VdType::Int)), false),
            f(
                "attrs",
                "self.attrs",
                VdType::Map(Box::new(VdType::String), Box::new(VdType::String)),
                false,
            ),
            f("addr", "self.addr", VdType::Struct, false),
            f("o_name", "self.o_name", VdType::String, true),
            f("o_age", "self.o_age", VdType::Int, true),
            f("o_ok", "self.o_ok", VdType::Bool, true),
            f("o_addr", "self.o_addr", VdType::Struct, true),
            f("user_id", "self.user_id", VdType::Int, false),
        ]
    }

    fn on(field: &str, expr: &str) -> Result<Rule, VdError> {
        let all = fields();
        let cur = all
            .iter()
            .find(|x| x.name == field)
            .cloned()
            .expect("test field exists");
        compile(expr, &cur, &all)
    }

    fn check(field: &str, expr: &str) -> String {
        match on(field, expr) {
            Ok(rule) => rule.check,
            Err(e) => panic!("`{expr}` on `{field}` should compile: {e}"),
        }
    }

    /// The offset and the message of the error.
    fn fails(field: &str, expr: &str) -> (usize, String) {
        match on(field, expr) {
            Ok(rule) => panic!(
                "`{expr}` on `{field}` should fail, compiled to {}",
                rule.check
            ),
            Err(e) => (e.offset, e.message),
        }
    }

    const NUM_AGE: &str = "::idlgen_runtime::vd::VdNum::vd_i64(&self.age)";

    #[test]
    fn project_rules() {
        assert_eq!(
            check("name", "mblen($) >= 1 && mblen($) <= 32"),
            "::idlgen_runtime::vd::mblen(&self.name) >= 1 && ::idlgen_runtime::vd::mblen(&self.name) <= 32"
        );
        assert_eq!(
            check("name", "len($) >= 6 && len($) <= 64"),
            "::idlgen_runtime::vd::len(&self.name) >= 6 && ::idlgen_runtime::vd::len(&self.name) <= 64"
        );
        assert_eq!(
            check("user_id", "$ > 0"),
            "::idlgen_runtime::vd::VdNum::vd_i64(&self.user_id) > 0"
        );
    }

    #[test]
    fn literals_and_arithmetic() {
        assert_eq!(check("age", "$ >= -1"), format!("{NUM_AGE} >= -1"));
        assert_eq!(
            check("age", "$ + 1 < 10"),
            format!("{NUM_AGE}.wrapping_add(1) < 10")
        );
        assert_eq!(
            check("age", "1 - $ * 2 < 10"),
            format!("1i64.wrapping_sub({NUM_AGE}.wrapping_mul(2)) < 10")
        );
        assert_eq!(
            check("age", "-$ < 10"),
            format!("{NUM_AGE}.wrapping_neg() < 10")
        );
        assert_eq!(
            check("age", "$ % 3 == 0"),
            format!("::idlgen_runtime::vd::rem({NUM_AGE}, 3) == 0")
        );
        // `/` is a float division, as every number is a float64 in Go.
        assert_eq!(
            check("age", "$ / 2 > 2"),
            "::idlgen_runtime::vd::f64_gt(::idlgen_runtime::vd::VdNum::vd_f64(&self.age) / 2.0, 2.0)"
        );
        assert_eq!(
            check("score", "$ * (1.5 + $) <= 2"),
            "::idlgen_runtime::vd::f64_le(::idlgen_runtime::vd::VdNum::vd_f64(&self.score) * (1.5 + ::idlgen_runtime::vd::VdNum::vd_f64(&self.score)), 2.0)"
        );
        assert_eq!(
            check("score", "-$ < 1"),
            "::idlgen_runtime::vd::f64_lt(-::idlgen_runtime::vd::VdNum::vd_f64(&self.score), 1.0)"
        );
        // Integer expressions and floats meet through the runtime's conversions, not `as`.
        assert_eq!(
            check("age", "($ + 1) / 2 > (score)$ % 2"),
            format!(
                "::idlgen_runtime::vd::f64_gt(::idlgen_runtime::vd::VdNum::vd_f64(&{NUM_AGE}.wrapping_add(1)) / 2.0, ::idlgen_runtime::vd::VdNum::vd_f64(&::idlgen_runtime::vd::rem(::idlgen_runtime::vd::VdNum::vd_i64(&::idlgen_runtime::vd::VdNum::vd_f64(&self.score)), 2)))"
            )
        );
        // Constants fold.
        assert_eq!(check("age", "2 * 3 == 6"), "true");
        assert_eq!(check("age", "7 % 4 > 3 || 1.5 < 1"), "false");
        assert_eq!(check("name", "'abc' < 'abd'"), "true");
        assert_eq!(check("age", "$ > 1 + 2"), format!("{NUM_AGE} > 3"));
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(check("name", "$ == 'bob'"), "self.name.as_str() == \"bob\"");
        assert_eq!(
            check("name", r"$ != 'it\'s'"),
            "self.name.as_str() != \"it's\""
        );
        assert_eq!(
            check("name", "$ < '\"q\"'"),
            "self.name.as_str() < \"\\\"q\\\"\""
        );
        assert_eq!(check("name", "'a;b' != $"), "\"a;b\" != self.name.as_str()");
    }

    #[test]
    fn logic_precedence() {
        let c = check("age", "$ > 1 || $ < -1 && $ != 5");
        assert_eq!(
            c,
            format!("{NUM_AGE} > 1 || ({NUM_AGE} < -1 && {NUM_AGE} != 5)")
        );
        let c = check("age", "($ > 1 || $ < -1) && $ != 5");
        assert_eq!(
            c,
            format!("({NUM_AGE} > 1 || {NUM_AGE} < -1) && {NUM_AGE} != 5")
        );
        // `!` binds tightest and is pushed inward.
        let c = check("age", "!($ > 1 || $ == 3) && !(($ < 0))");
        assert_eq!(
            c,
            format!("{NUM_AGE} <= 1 && {NUM_AGE} != 3 && {NUM_AGE} >= 0")
        );
        assert_eq!(check("ok", "!$"), "!self.ok");
        assert_eq!(check("ok", "!!$"), "self.ok");
        assert_eq!(check("ok", "$ == false"), "!self.ok");
        assert_eq!(check("ok", "true != $"), "!self.ok");
        assert_eq!(check("ok", "$ || true"), "true");
        assert_eq!(check("ok", "$ && !false"), "self.ok");
        assert_eq!(
            check("ok", "$ == ((Age)$ > 3)"),
            format!("self.ok == ({NUM_AGE} > 3)")
        );
        assert_eq!(check("ok", "((((($)))))"), "self.ok");
    }

    #[test]
    fn equality_is_looser_than_relations() {
        // `a < b == c < d` is `(a < b) == (c < d)`.
        assert_eq!(
            check("age", "$ < 1 == $ < 2"),
            format!("({NUM_AGE} < 1) == ({NUM_AGE} < 2)")
        );
    }

    #[test]
    fn siblings() {
        assert_eq!(
            check("name", "len($) > (Age)$"),
            format!("::idlgen_runtime::vd::len(&self.name) > {NUM_AGE}")
        );
        // hz's Go field names resolve too.
        assert_eq!(
            check("age", "(UserID)$ != $"),
            format!("::idlgen_runtime::vd::VdNum::vd_i64(&self.user_id) != {NUM_AGE}")
        );
        assert_eq!(check("age", "( age )$ > 0"), format!("{NUM_AGE} > 0"));
        assert_eq!(
            check("age", "(kind)$ == 2"),
            "::idlgen_runtime::vd::VdNum::vd_i64(&self.kind.inner()) == 2"
        );
        assert_eq!(
            check(
                "age",
                "len((tags)$) + len((ids)$) + len((attrs)$) + len((data)$) > 0"
            ),
            "::idlgen_runtime::vd::len(&self.tags).wrapping_add(::idlgen_runtime::vd::len(&self.ids)).wrapping_add(::idlgen_runtime::vd::len(&self.attrs)).wrapping_add(::idlgen_runtime::vd::len(&self.data)) > 0"
        );
        assert_eq!(
            check("age", "(score)$ >= $"),
            "::idlgen_runtime::vd::f64_ge(::idlgen_runtime::vd::VdNum::vd_f64(&self.score), ::idlgen_runtime::vd::VdNum::vd_f64(&self.age))"
        );
    }

    #[test]
    fn optional_siblings_are_nil_when_absent() {
        assert_eq!(check("age", "(o_name)$ == nil"), "self.o_name.is_none()");
        assert_eq!(check("age", "nil != (o_addr)$"), "self.o_addr.is_some()");
        assert_eq!(check("age", "!((o_addr)$ != nil)"), "self.o_addr.is_none()");
        assert_eq!(check("age", "nil == nil"), "true");
        assert_eq!(
            check("age", "(o_age)$ > $"),
            format!(
                "self.o_age.as_ref().is_some_and(|vd_f11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_f11) > {NUM_AGE})"
            )
        );
        // `!=` holds when absent; negating `==` gives the same.
        let ne = "self.o_name.as_ref().is_none_or(|vd_f10| vd_f10.as_str() != \"x\")";
        assert_eq!(check("age", "(o_name)$ != 'x'"), ne);
        assert_eq!(check("age", "!((o_name)$ == 'x')"), ne);
        assert_eq!(
            check("age", "(o_age)$ < (o_age)$ + 1"),
            "self.o_age.as_ref().is_some_and(|vd_f11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_f11) < ::idlgen_runtime::vd::VdNum::vd_i64(vd_f11).wrapping_add(1))"
        );
        // Types are checked before constants fold.
        assert_eq!(fails("age", "(o_age)$ == (o_name)$ + 0 || true").0, 22);
        assert_eq!(
            check("age", "len((o_name)$) < 3 && mblen((o_name)$) < 2"),
            "::idlgen_runtime::vd::len(&self.o_name) < 3 && ::idlgen_runtime::vd::mblen(&self.o_name) < 2"
        );
        assert_eq!(check("age", "(o_ok)$"), "self.o_ok == Some(true)");
        assert_eq!(check("age", "!(o_ok)$"), "self.o_ok != Some(true)");
        assert_eq!(check("age", "(o_ok)$ == false"), "self.o_ok == Some(false)");
        assert_eq!(check("age", "(o_ok)$ != false"), "self.o_ok != Some(false)");
        assert_eq!(
            check("age", "(o_ok)$ == (ok)$"),
            "self.o_ok.as_ref().is_some_and(|vd_f12| *vd_f12 == self.ok)"
        );
        assert_eq!(
            check("age", "(o_age)$ == (o_age)$ && (o_name)$ == (name)$"),
            "self.o_age.as_ref().is_some_and(|vd_f11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_f11) == ::idlgen_runtime::vd::VdNum::vd_i64(vd_f11)) && self.o_name.as_ref().is_some_and(|vd_f10| vd_f10.as_str() == self.name.as_str())"
        );
    }

    #[test]
    fn two_optional_siblings_nest() {
        assert_eq!(
            check("age", "(o_age)$ != len((o_name)$) + (o_age)$"),
            "self.o_age.as_ref().is_none_or(|vd_f11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_f11) != ::idlgen_runtime::vd::len(&self.o_name).wrapping_add(::idlgen_runtime::vd::VdNum::vd_i64(vd_f11)))"
        );
        assert_eq!(
            check("age", "regexp('^a', (o_name)$) && in((o_age)$, 1, 2)"),
            "self.o_name.as_ref().is_some_and(|vd_f10| ::idlgen_runtime::vd::is_match({ static RE: ::std::sync::LazyLock<::idlgen_runtime::vd::Regex> = ::std::sync::LazyLock::new(|| ::idlgen_runtime::vd::Regex::new(\"^a\").expect(\"checked at build time\")); &RE }, vd_f10.as_str())) && self.o_age.as_ref().is_some_and(|vd_f11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_f11) == 1 || ::idlgen_runtime::vd::VdNum::vd_i64(vd_f11) == 2)"
        );
        let all = fields();
        let o_name = all
            .iter()
            .find(|x| x.name == "o_name")
            .cloned()
            .expect("o_name");
        let rule = compile("(o_age)$ > len($) + (o_age)$", &o_name, &all).expect("compiles");
        assert_eq!(
            rule.check,
            "self.o_name.as_ref().is_none_or(|vd_cur| self.o_age.as_ref().is_some_and(|vd_f11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_f11) > ::idlgen_runtime::vd::len(vd_cur).wrapping_add(::idlgen_runtime::vd::VdNum::vd_i64(vd_f11))))"
        );
    }

    #[test]
    fn optional_current_passes_when_absent() {
        assert_eq!(
            check("o_name", "mblen($) <= 3"),
            "self.o_name.as_ref().is_none_or(|vd_cur| ::idlgen_runtime::vd::mblen(vd_cur) <= 3)"
        );
        assert_eq!(
            check("o_age", "$ > 0 && $ != (Age)$"),
            format!(
                "self.o_age.as_ref().is_none_or(|vd_cur| ::idlgen_runtime::vd::VdNum::vd_i64(vd_cur) > 0 && ::idlgen_runtime::vd::VdNum::vd_i64(vd_cur) != {NUM_AGE})"
            )
        );
        assert_eq!(
            check("o_ok", "$"),
            "self.o_ok.as_ref().is_none_or(|vd_cur| *vd_cur)"
        );
        assert_eq!(
            check("o_ok", "!$"),
            "self.o_ok.as_ref().is_none_or(|vd_cur| !*vd_cur)"
        );
        // A rule that does not read `$` binds nothing.
        assert_eq!(
            check("o_name", "(Age)$ > 3"),
            format!("self.o_name.is_none() || {NUM_AGE} > 3")
        );
        assert_eq!(check("o_name", "false"), "self.o_name.is_none()");
        assert_eq!(check("o_name", "true || $ == 'a'"), "true");
        // `(Name)$` naming the current field is `$`.
        assert_eq!(
            check("o_name", "(o_name)$ == 'a'"),
            "self.o_name.as_ref().is_none_or(|vd_cur| vd_cur.as_str() == \"a\")"
        );
    }

    #[test]
    fn functions() {
        assert_eq!(
            check("name", "len() > 2"),
            "::idlgen_runtime::vd::len(&self.name) > 2"
        );
        assert_eq!(check("name", "mblen('日本') == 2"), "true");
        assert_eq!(check("name", "len('日本') == 6"), "true");
        assert_eq!(
            check("data", "len($) < 1024"),
            "::idlgen_runtime::vd::len(&self.data) < 1024"
        );
        assert_eq!(
            check("name", "regexp('^\\w+$')"),
            "::idlgen_runtime::vd::is_match({ static RE: ::std::sync::LazyLock<::idlgen_runtime::vd::Regex> = ::std::sync::LazyLock::new(|| ::idlgen_runtime::vd::Regex::new(\"^\\\\w+$\").expect(\"checked at build time\")); &RE }, self.name.as_str())"
        );
        assert!(
            check("age", "!regexp('a', (name)$)")
                .starts_with("!::idlgen_runtime::vd::is_match({ static RE")
        );
        assert_eq!(check("age", "regexp('^a', 'abc')"), "true");
        assert_eq!(
            check("age", "in($, 1, 2, 1)"),
            format!("{NUM_AGE} == 1 || {NUM_AGE} == 2")
        );
        assert_eq!(
            check("age", "!in($, 1, 2)"),
            format!("{NUM_AGE} != 1 && {NUM_AGE} != 2")
        );
        assert_eq!(
            check("name", "in($, 'a', (o_name)$)"),
            "self.name.as_str() == \"a\" || self.o_name.as_ref().is_some_and(|vd_f10| self.name.as_str() == vd_f10.as_str())"
        );
        assert_eq!(
            check("score", "in($, 1, 2.5)"),
            "::idlgen_runtime::vd::f64_eq(::idlgen_runtime::vd::VdNum::vd_f64(&self.score), 1.0) || ::idlgen_runtime::vd::f64_eq(::idlgen_runtime::vd::VdNum::vd_f64(&self.score), 2.5)"
        );
        assert_eq!(
            check("kind", "in($, 1, 3)"),
            "::idlgen_runtime::vd::VdNum::vd_i64(&self.kind.inner()) == 1 || ::idlgen_runtime::vd::VdNum::vd_i64(&self.kind.inner()) == 3"
        );
    }

    #[test]
    fn violated_is_the_negation() {
        let rule = on("age", "$ > 1 && ($ < 9 || regexp('1', (name)$))").expect("compiles");
        assert_eq!(
            rule.violated,
            format!(
                "{NUM_AGE} <= 1 || ({NUM_AGE} >= 9 && !::idlgen_runtime::vd::is_match({{ static RE: ::std::sync::LazyLock<::idlgen_runtime::vd::Regex> = ::std::sync::LazyLock::new(|| ::idlgen_runtime::vd::Regex::new(\"1\").expect(\"checked at build time\")); &RE }}, self.name.as_str()))"
            )
        );
        let rule = on("o_age", "$ > 1").expect("compiles");
        assert_eq!(
            rule.violated,
            "self.o_age.as_ref().is_some_and(|vd_cur| ::idlgen_runtime::vd::VdNum::vd_i64(vd_cur) <= 1)"
        );
        assert_eq!(
            on("o_age", "(age)$ > 1").expect("compiles").violated,
            format!("self.o_age.is_some() && {NUM_AGE} <= 1")
        );
        assert_eq!(on("age", "true").expect("compiles").violated, "false");
    }

    #[test]
    fn messages() {
        let rule = on("name", "@:len($) > 1; msg:'too short'").expect("compiles");
        assert_eq!(rule.check, "::idlgen_runtime::vd::len(&self.name) > 1");
        assert_eq!(rule.message.as_deref(), Some("too short"));
        let rule = on("name", "  msg : 'it\\'s; bad' ;@: $ != ';' ; ").expect("compiles");
        assert_eq!(rule.message.as_deref(), Some("it's; bad"));
        assert_eq!(rule.check, "self.name.as_str() != \";\"");
        let rule = on("name", ":$ != ''").expect("compiles");
        assert_eq!(rule.message, None);
        assert_eq!(rule.check, "!self.name.as_str().is_empty()");
        assert_eq!(check("name", "'' == $"), "self.name.as_str().is_empty()");
        assert_eq!(
            on("name", "@:$ != ''; msg:''").expect("compiles").message,
            None
        );
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(fails("age", "($ > 1").0, 0);
        assert_eq!(fails("age", "$ > (1 + (2)").0, 4);
        assert_eq!(fails("age", "$ > 1)").0, 5);
        assert_eq!(fails("age", "$ > 1 2").0, 6);
        assert_eq!(fails("age", "($ > 1 2)").0, 7);
        assert_eq!(fails("age", "$ >").0, 3);
        assert_eq!(fails("age", "").0, 0);
        assert_eq!(fails("age", "   ").0, 0);
        assert_eq!(fails("age", "$ = 1").0, 2);
        assert_eq!(fails("age", "$ > 1 & $ < 3").0, 6);
        assert_eq!(fails("age", "$ > 1 | 2").0, 6);
        assert_eq!(fails("age", "$ << 2 > 1").0, 2);
        assert_eq!(fails("age", "$ ~ 1").0, 2);
        assert_eq!(fails("age", "$ > 1é").0, 4);
        assert_eq!(fails("name", "$ == \"a\"").0, 5);
        assert_eq!(fails("name", "$ == 'abc").0, 5);
        assert_eq!(fails("name", "$ == 'abc\\'").0, 5);
        assert_eq!(fails("tags", "$[0] == 'a'").0, 1);
        assert_eq!(fails("tags", "$$ > 0").0, 0);
        assert_eq!(fails("tags", "range($, #v > 0)").0, 9);
        assert_eq!(fails("age", "1.5.2 > $").0, 0);
        assert_eq!(fails("age", "12ab > $").0, 0);
        assert_eq!(fails("age", "$ > 99999999999999999999").0, 4);
        assert_eq!(fails("age", "foo > 1").0, 0);
        assert_eq!(fails("age", "(a.b)$ > 1").0, 1);
        assert_eq!(fails("age", "$ > 1,").0, 5);
        assert_eq!(fails("age", "!").0, 1);
        let (at, msg) = fails("age", "$ > 1; $ < 9");
        assert_eq!((at, msg.contains("second rule")), (7, true));
        assert_eq!(fails("age", "foo:$ > 1").0, 0);
        assert_eq!(fails("age", "msg:'x'").0, 0);
        assert_eq!(fails("age", "@:$ > 1; msg:sprintf('bad %v', $)").0, 13);
        assert_eq!(fails("age", "@:$ > 1; msg:'a' 'b'").0, 17);
        assert_eq!(fails("age", "@:$ > 1; msg:'a'; msg:'b'").0, 18);
        assert_eq!(fails("age", "@:").0, 0);
        assert_eq!(fails("age", "{@:$>1}{msg:'x'}").0, 0);
        assert_eq!(fails("age", " -").0, 1);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}$ > 1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(fails("age", &deep).1.contains("too deeply"));
        let bangs = format!("{}$", "!".repeat(10_000));
        assert!(fails("ok", &bangs).1.contains("too deeply"));
        let long = format!("$ > 0{}", " + 1".repeat(10_000));
        assert!(fails("age", &long).1.contains("too deeply"));
        // Long flat chains of `&&` are fine.
        let chain = vec!["$ > 1"; 500].join(" && ");
        assert!(on("age", &chain).is_ok());
    }

    #[test]
    fn function_errors() {
        assert_eq!(fails("name", "email($)").0, 0);
        assert!(fails("name", "email($)").1.contains("not supported"));
        assert_eq!(fails("name", "$ == sprintf('%v', 1)").0, 5);
        assert!(
            fails("name", "lenn($) > 1")
                .1
                .contains("unknown function `lenn()`")
        );
        assert_eq!(fails("name", "1 < len($, $)").0, 4);
        assert_eq!(fails("name", "regexp()").0, 0);
        assert_eq!(fails("name", "regexp('a', $, $)").0, 0);
        assert_eq!(fails("name", "in($)").0, 0);
        assert_eq!(fails("name", "in()").0, 0);
        assert_eq!(fails("name", "regexp($)").0, 7);
        let (at, msg) = fails("name", "regexp('(a')");
        assert_eq!(at, 7);
        assert!(msg.contains("invalid regular expression"), "{msg}");
        assert_eq!(fails("name", "regexp('a++(')").0, 7);
        assert_eq!(fails("name", "len($ + 1) > 1").0, 4);
        assert_eq!(fails("name", "len(1) > 1").0, 4);
        assert_eq!(fails("name", "len(in($, 'a')) > 1").0, 4);
        assert_eq!(fails("name", "in($, 1,").0, 8);
        assert_eq!(fails("name", "in($ 1)").0, 5);
    }

    #[test]
    fn type_errors() {
        let (at, msg) = fails("name", "$ > 1");
        assert_eq!(
            (at, msg.as_str()),
            (2, "cannot compare a string with an integer")
        );
        assert_eq!(fails("age", "len($) > 1").0, 4);
        assert!(fails("age", "len($) > 1").1.contains("`age` is an integer"));
        assert_eq!(fails("name", "mblen((data)$) > 1").0, 6);
        assert_eq!(fails("name", "mblen((tags)$) > 1").0, 6);
        assert_eq!(fails("age", "len((addr)$) > 1").0, 4);
        assert_eq!(fails("age", "$").0, 0);
        assert_eq!(fails("name", "len($)").0, 0);
        assert_eq!(fails("age", "!$").0, 1);
        assert_eq!(fails("age", "$ > 1 && 'x'").0, 9);
        assert_eq!(fails("name", "-$ == 'a'").0, 0);
        assert_eq!(fails("name", "$ + 'a' == 'ba'").0, 2);
        assert_eq!(fails("age", "$ + true > 1").0, 2);
        assert_eq!(fails("age", "$ / 0 > 1").0, 2);
        assert_eq!(fails("age", "$ % 0.5 > 1").0, 2);
        assert_eq!(fails("ok", "$ < true").0, 2);
        assert_eq!(fails("ok", "$ > (ok)$").0, 2);
        assert_eq!(fails("age", "$ == true").0, 2);
        assert_eq!(fails("age", "(tags)$ == 1").0, 1);
        assert_eq!(fails("age", "(data)$ == 'x'").0, 1);
        assert_eq!(fails("age", "(addr)$ != nil").0, 1);
        assert_eq!(fails("age", "$ != nil").0, 0);
        assert!(
            fails("o_age", "$ != nil")
                .1
                .contains("only checked when the field is set")
        );
        assert_eq!(fails("age", "nil > (o_age)$").0, 4);
        assert_eq!(fails("age", "nil + 1 > 0").0, 0);
        assert_eq!(fails("age", "in($, nil)").0, 6);
        assert_eq!(fails("age", "in($, 'a')").0, 6);
        assert_eq!(fails("age", "(1 + 2) != nil").0, 1);
        assert_eq!(fails("age", "regexp('a', (age)$)").0, 12);
        assert_eq!(fails("data", "regexp('a')").0, 0);
        assert_eq!(fails("age", "1e5 > 1").0, 0);
        assert_eq!(fails("score", "$ > 1e300").0, 4);
        let huge = format!("1{}.0", "0".repeat(400));
        assert_eq!(fails("score", &format!("$ > {huge}")).0, 4);
        let big = format!("1{}.0", "0".repeat(300));
        let product = format!("$ > {big} * {big}");
        assert_eq!(fails("score", &product).0, product.find('*').unwrap_or(0));
    }

    #[test]
    fn unknown_fields() {
        let (at, msg) = fails("age", "(Nope)$ > 1");
        assert_eq!(at, 1);
        assert!(
            msg.starts_with("unknown field `Nope`; the fields are: name, age"),
            "{msg}"
        );
        assert_eq!(fails("age", "$ > 1 && len((missing)$) > 0").0, 14);
        let all = vec![
            f("a_b", "self.a_b", VdType::Int, false),
            f("ab", "self.ab", VdType::Int, false),
            f("x", "self.x", VdType::Int, false),
        ];
        let err = compile("(AB_)$ > 1", &all[2], &all).expect_err("ambiguous");
        assert_eq!(err.offset, 1);
        // The exact name wins over the Go-style spelling.
        let rule = compile("(ab)$ > 1", &all[2], &all).expect("exact");
        assert_eq!(
            rule.check,
            "::idlgen_runtime::vd::VdNum::vd_i64(&self.ab) > 1"
        );
    }

    #[test]
    fn display_has_the_offset() {
        let e = fails("age", "$ > 1)");
        assert_eq!(
            VdError {
                offset: e.0,
                message: e.1
            }
            .to_string(),
            "unexpected `)`: nothing to close (at byte 5)"
        );
    }

    #[test]
    fn odd_inputs_never_panic() {
        let inputs = [
            "'",
            "\\",
            "'\\",
            "(",
            ")",
            "((",
            "(()",
            "()",
            "($",
            "(a)",
            "(a)$$",
            "$(",
            ",",
            ";",
            ";;",
            "@",
            "@:;",
            "msg:",
            "é",
            "日本",
            "$ > 'é",
            "in(",
            "in(,)",
            "len(,)",
            "regexp(')",
            "regexp('",
            "1.",
            "1..2",
            ".5",
            "-",
            "--1",
            "!-!",
            "$ >= -",
            "\u{0}",
            "$\u{301}",
            "(\u{301})$",
            "(\t)$",
            "0x10 > $",
            "1_000 > $",
            "nil",
            "!nil",
            "-nil",
            "true",
            "'a' == 'a' == true",
            "@:@:$",
            "msg:'a';",
            "(Age)$(",
            "in(in($,1),true)",
        ];
        for input in inputs {
            for field in ["name", "age", "o_name", "ok", "tags"] {
                let _ = on(field, input);
            }
        }
        // Every prefix of a real rule, cut at char boundaries.
        let rule = "@:(mblen($) >= 1 && regexp('^[a-z]\\'+$', (o_name)$)) || in((Age)$, 1, -2.5); msg:'bad; name'";
        for (i, _) in rule.char_indices() {
            for field in ["name", "o_name"] {
                let _ = on(field, &rule[..i]);
                let _ = on(field, &rule[i..]);
            }
        }
    }
}
