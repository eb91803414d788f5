//! Syntax tree: the parser builds it from tokens, with go-tagexpr's precedence.

use super::lex::{ArOp, CmpOp, Spanned, Token};
use super::{VdError, err};

/// Deepest nesting accepted; real rules stay far below it, and it keeps recursion bounded.
const MAX_DEPTH: u32 = 64;

const SUPPORTED_FUNCS: &str = "len, mblen, regexp, in";

/// A node of the tree; offsets are into the annotation.
#[derive(Debug)]
pub(crate) struct Expr {
    /// Where errors about the operation point: an operator, a function name, a field's name.
    pub(super) at: usize,
    /// Where the operand starts, for errors about it as a whole.
    pub(crate) start: usize,
    /// Where it ends (parentheses around it not included, as in `start`).
    pub(crate) end: usize,
    depth: u32,
    pub(crate) kind: ExprKind,
}

#[derive(Debug)]
pub(crate) enum ExprKind {
    Cur,
    Field(String),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Nil,
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Arith(ArOp, Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Len {
        chars: bool,
        arg: Option<Box<Expr>>,
    },
    Regexp {
        pattern: String,
        arg: Option<Box<Expr>>,
    },
    In(Vec<Expr>),
}

impl Expr {
    fn leaf((at, end): (usize, usize), kind: ExprKind) -> Expr {
        Expr {
            at,
            start: at,
            end,
            depth: 1,
            kind,
        }
    }

    fn node(at: usize, kind: ExprKind) -> Result<Expr, VdError> {
        let children: Vec<&Expr> = match &kind {
            ExprKind::Not(x) | ExprKind::Neg(x) => vec![x],
            ExprKind::Arith(_, l, r) | ExprKind::Cmp(_, l, r) => vec![l, r],
            ExprKind::And(xs) | ExprKind::Or(xs) | ExprKind::In(xs) => xs.iter().collect(),
            ExprKind::Len { arg, .. } | ExprKind::Regexp { arg, .. } => {
                arg.iter().map(|a| &**a).collect()
            }
            _ => Vec::new(),
        };
        let depth = 1 + children.iter().map(|c| c.depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(err(at, "expression nested too deeply"));
        }
        let start = children.iter().map(|c| c.start).fold(at, usize::min);
        let end = children.iter().map(|c| c.end).fold(at, usize::max);
        Ok(Expr {
            at,
            start,
            end,
            depth,
            kind,
        })
    }
}

pub(super) struct Parser {
    toks: Vec<Spanned>,
    pos: usize,
    /// Open recursive calls, bounded so that no input can overflow the stack.
    nest: u32,
}

impl Parser {
    pub(super) fn new(toks: Vec<Spanned>) -> Parser {
        Parser {
            toks,
            pos: 0,
            nest: 0,
        }
    }

    fn peek(&self) -> &Token {
        self.toks.get(self.pos).map_or(&Token::End, |t| &t.0)
    }

    fn peek_at(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(0, |t| t.1)
    }

    fn nth(&self, ahead: usize) -> &Token {
        self.toks
            .get(self.pos + ahead)
            .map_or(&Token::End, |t| &t.0)
    }

    fn bump(&mut self) -> (Token, usize) {
        let at = self.peek_at();
        let tok = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        (tok, at)
    }

    /// Where the last token taken ends.
    fn taken_end(&self) -> usize {
        self.pos
            .checked_sub(1)
            .and_then(|last| self.toks.get(last))
            .map_or(0, |t| t.2)
    }

    pub(super) fn parse(mut self) -> Result<Expr, VdError> {
        let n = self.or()?;
        match self.peek() {
            Token::End => Ok(n),
            Token::RParen => Err(err(self.peek_at(), "unexpected `)`: nothing to close")),
            t => Err(err(
                self.peek_at(),
                format!("expected an operator, found {}", t.describe()),
            )),
        }
    }

    fn or(&mut self) -> Result<Expr, VdError> {
        let first = self.and()?;
        if *self.peek() != Token::OrOr {
            return Ok(first);
        }
        let at = self.peek_at();
        let mut all = vec![first];
        while *self.peek() == Token::OrOr {
            self.bump();
            all.push(self.and()?);
        }
        Expr::node(at, ExprKind::Or(all))
    }

    fn and(&mut self) -> Result<Expr, VdError> {
        let first = self.equality()?;
        if *self.peek() != Token::AndAnd {
            return Ok(first);
        }
        let at = self.peek_at();
        let mut all = vec![first];
        while *self.peek() == Token::AndAnd {
            self.bump();
            all.push(self.equality()?);
        }
        Expr::node(at, ExprKind::And(all))
    }

    fn equality(&mut self) -> Result<Expr, VdError> {
        let mut l = self.relation()?;
        while let Token::Cmp(op @ (CmpOp::Eq | CmpOp::Ne)) = *self.peek() {
            let (_, at) = self.bump();
            let r = self.relation()?;
            l = Expr::node(at, ExprKind::Cmp(op, Box::new(l), Box::new(r)))?;
        }
        Ok(l)
    }

    fn relation(&mut self) -> Result<Expr, VdError> {
        let mut l = self.sum()?;
        while let Token::Cmp(op @ (CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge)) = *self.peek() {
            let (_, at) = self.bump();
            let r = self.sum()?;
            l = Expr::node(at, ExprKind::Cmp(op, Box::new(l), Box::new(r)))?;
        }
        Ok(l)
    }

    fn sum(&mut self) -> Result<Expr, VdError> {
        let mut l = self.product()?;
        while let Token::Arith(op @ (ArOp::Add | ArOp::Sub)) = *self.peek() {
            let (_, at) = self.bump();
            let r = self.product()?;
            l = Expr::node(at, ExprKind::Arith(op, Box::new(l), Box::new(r)))?;
        }
        Ok(l)
    }

    fn product(&mut self) -> Result<Expr, VdError> {
        let mut l = self.unary()?;
        while let Token::Arith(op @ (ArOp::Mul | ArOp::Div | ArOp::Rem)) = *self.peek() {
            let (_, at) = self.bump();
            let r = self.unary()?;
            l = Expr::node(at, ExprKind::Arith(op, Box::new(l), Box::new(r)))?;
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, VdError> {
        if self.nest >= MAX_DEPTH {
            return Err(err(self.peek_at(), "expression nested too deeply"));
        }
        self.nest += 1;
        let n = match self.peek() {
            Token::Bang => {
                let (_, at) = self.bump();
                self.unary()
                    .and_then(|x| Expr::node(at, ExprKind::Not(Box::new(x))))
            }
            Token::Arith(ArOp::Sub) => {
                let (_, at) = self.bump();
                self.unary()
                    .and_then(|x| Expr::node(at, ExprKind::Neg(Box::new(x))))
            }
            _ => self.primary(),
        };
        self.nest -= 1;
        n
    }

    fn primary(&mut self) -> Result<Expr, VdError> {
        let (tok, at) = self.bump();
        let span = (at, self.taken_end());
        match tok {
            Token::Dollar => Ok(Expr::leaf(span, ExprKind::Cur)),
            Token::LParen => {
                if let (Token::Ident(name), Token::RParen, Token::Dollar) =
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
                    return Ok(Expr {
                        at: name_at,
                        start: at,
                        end: self.taken_end(),
                        depth: 1,
                        kind: ExprKind::Field(name),
                    });
                }
                let inner = self.or()?;
                self.close(at)?;
                Ok(inner)
            }
            Token::Int(n) => Ok(Expr::leaf(span, ExprKind::Int(n))),
            Token::Float(f) => Ok(Expr::leaf(span, ExprKind::Float(f))),
            Token::Str(s) => Ok(Expr::leaf(span, ExprKind::Str(s))),
            Token::Ident(name) => match name.as_str() {
                "true" => Ok(Expr::leaf(span, ExprKind::Bool(true))),
                "false" => Ok(Expr::leaf(span, ExprKind::Bool(false))),
                "nil" => Ok(Expr::leaf(span, ExprKind::Nil)),
                _ if *self.peek() == Token::LParen => self.call(&name, at),
                _ => Err(err(
                    at,
                    format!("unknown name `{name}`; a field is written `({name})$`"),
                )),
            },
            Token::RParen => Err(err(at, "unexpected `)`: expected a value")),
            other => Err(err(
                at,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }

    /// Expects the `)` of the `(` at `open`.
    fn close(&mut self, open: usize) -> Result<(), VdError> {
        match self.peek() {
            Token::RParen => {
                self.bump();
                Ok(())
            }
            Token::End => Err(err(open, "unclosed `(`")),
            t => Err(err(
                self.peek_at(),
                format!("expected `)` or an operator, found {}", t.describe()),
            )),
        }
    }

    fn call(&mut self, name: &str, at: usize) -> Result<Expr, VdError> {
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
        if *self.peek() == Token::RParen {
            self.bump();
        } else {
            loop {
                args.push(self.or()?);
                if *self.peek() == Token::Comma {
                    self.bump();
                    continue;
                }
                match self.peek() {
                    Token::RParen => {
                        self.bump();
                        break;
                    }
                    Token::End => return Err(err(open, "unclosed `(`")),
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
        let end = self.taken_end();
        let node = |kind| Expr::node(at, kind).map(|e| Expr { end, ..e });
        match name {
            "len" | "mblen" => {
                if n > 1 {
                    return Err(err(at, format!("{name}() takes one argument, found {n}")));
                }
                let arg = args.pop().map(Box::new);
                node(ExprKind::Len {
                    chars: name == "mblen",
                    arg,
                })
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
                let Some(Expr {
                    kind: ExprKind::Str(pattern),
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
                node(ExprKind::Regexp { pattern, arg })
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
                node(ExprKind::In(args))
            }
        }
    }
}

/// The one line of a regex error that says what is wrong (the rest is an ASCII-art caret).
pub(super) fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_string()
}
