//! Typing and emission: checks the syntax tree's types against the fields and emits Rust code.

use std::cell::RefCell;
use std::collections::BTreeSet;

use super::lex::{ArOp, CmpOp};
use super::parse::{Expr, ExprKind, regex_reason};
use super::{VdError, VdField, VdType, err, field_binding, value_binding};

const RT: &str = "::idlgen_runtime::vd";

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
enum ValueType {
    Bool,
    Int,
    Float,
    Str,
}

impl ValueType {
    fn describe(self) -> &'static str {
        match self {
            ValueType::Bool => "a boolean",
            ValueType::Int => "an integer",
            ValueType::Float => "a floating-point number",
            ValueType::Str => "a string",
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
struct Value {
    ty: ValueType,
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

impl Value {
    fn lit(lit: Lit) -> Value {
        let (ty, code) = match &lit {
            Lit::Bool(b) => (ValueType::Bool, b.to_string()),
            Lit::Int(n) => (ValueType::Int, n.to_string()),
            Lit::Float(f) => (ValueType::Float, float_code(*f)),
            Lit::Str(s) => (ValueType::Str, format!("{s:?}")),
        };
        let prec = if code.starts_with('-') {
            P_UNARY
        } else {
            P_PRIMARY
        };
        Value {
            ty,
            code,
            prec,
            lit: Some(lit),
            lifts: BTreeSet::new(),
            cur: false,
            as_f64: None,
        }
    }

    fn code(ty: ValueType, code: String, prec: u8, from: &[&Value]) -> Value {
        Value {
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
        matches!(self.ty, ValueType::Int | ValueType::Float)
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
            (_, ValueType::Int) => (
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
            (_, ValueType::Float) => (
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
pub(super) enum Cond {
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
    /// `place.is_some()` / `place.is_none()` of an optional field; `place` is its binding.
    Presence {
        place: String,
        some: bool,
    },
    /// `body` with the values of optional fields bound, from `(place, name)`:
    /// `place.as_ref().is_some_and(|name| body)`, or `is_none_or` when `on_none` (the value
    /// when any of them is absent).
    Lift {
        binds: Vec<(String, String)>,
        body: Box<Cond>,
        on_none: bool,
    },
    All(Vec<Cond>),
    Any(Vec<Cond>),
}

impl Cond {
    fn uses_cur(&self) -> bool {
        match self {
            Cond::Const(_) | Cond::Presence { .. } => false,
            Cond::Cmp { cur, .. } | Cond::Atom { cur, .. } => *cur,
            Cond::Lift { body, .. } => body.uses_cur(),
            Cond::All(xs) | Cond::Any(xs) => xs.iter().any(Cond::uses_cur),
        }
    }

    pub(super) fn negate(self) -> Cond {
        match self {
            Cond::Const(b) => Cond::Const(!b),
            Cond::Cmp { l, op, r, cur } => Cond::Cmp {
                l,
                op: op.negated(),
                r,
                cur,
            },
            Cond::Atom {
                code,
                prec,
                neg,
                cur,
            } => Cond::Atom {
                code,
                prec,
                neg: !neg,
                cur,
            },
            Cond::Presence { place, some } => Cond::Presence { place, some: !some },
            Cond::Lift {
                binds,
                body,
                on_none,
            } => Cond::Lift {
                binds,
                body: Box::new(body.negate()),
                on_none: !on_none,
            },
            Cond::All(xs) => any(xs.into_iter().map(Cond::negate).collect()),
            Cond::Any(xs) => all(xs.into_iter().map(Cond::negate).collect()),
        }
    }

    pub(super) fn render(&self) -> (String, u8) {
        match self {
            Cond::Const(b) => (b.to_string(), P_PRIMARY),
            Cond::Cmp { l, op, r, .. } => (format!("{l} {} {r}", op.sym()), P_CMP),
            Cond::Atom {
                code,
                prec,
                neg: false,
                ..
            } => (code.clone(), *prec),
            Cond::Atom {
                code,
                prec,
                neg: true,
                ..
            } => (format!("!{}", wrap(code, *prec, P_UNARY)), P_UNARY),
            Cond::Presence { place, some } => {
                let method = if *some { "is_some" } else { "is_none" };
                (format!("{place}.{method}()"), P_PRIMARY)
            }
            Cond::Lift {
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
            Cond::All(xs) => (join(xs, " && ", P_AND), P_AND),
            // `&&` inside `||` is parenthesized for the reader, not for Rust.
            Cond::Any(xs) => (join(xs, " || ", P_CMP), P_OR),
        }
    }
}

fn join(xs: &[Cond], sep: &str, min: u8) -> String {
    let parts: Vec<String> = xs
        .iter()
        .map(|x| {
            let (code, prec) = x.render();
            wrap(&code, prec, min)
        })
        .collect();
    parts.join(sep)
}

fn all(xs: Vec<Cond>) -> Cond {
    let mut out = Vec::new();
    for x in xs {
        match x {
            Cond::Const(true) => {}
            Cond::Const(false) => return Cond::Const(false),
            Cond::All(inner) => out.extend(inner),
            x => out.push(x),
        }
    }
    match out.len() {
        0 => Cond::Const(true),
        1 => out.pop().unwrap_or(Cond::Const(true)),
        _ => Cond::All(out),
    }
}

fn any(xs: Vec<Cond>) -> Cond {
    let mut out = Vec::new();
    for x in xs {
        match x {
            Cond::Const(false) => {}
            Cond::Const(true) => return Cond::Const(true),
            Cond::Any(inner) => out.extend(inner),
            x => out.push(x),
        }
    }
    match out.len() {
        0 => Cond::Const(false),
        1 => out.pop().unwrap_or(Cond::Const(false)),
        _ => Cond::Any(out),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Cur,
    Sib(usize),
}

/// Type-checks one rule against the struct's fields and emits its code.
pub(super) struct Checker<'c, 'a> {
    fields: &'c [VdField<'a>],
    /// The index of the field the rule is on.
    cur: usize,
    /// The fields whose binding the code names (see [`field_binding`]).
    reads: RefCell<BTreeSet<usize>>,
}

impl<'c, 'a> Checker<'c, 'a> {
    pub(super) fn new(fields: &'c [VdField<'a>], cur: usize) -> Self {
        Checker {
            fields,
            cur,
            reads: RefCell::default(),
        }
    }

    /// The fields the code emitted so far reads.
    pub(super) fn reads(self) -> BTreeSet<usize> {
        self.reads.into_inner()
    }

    fn current(&self) -> &VdField<'a> {
        &self.fields[self.cur]
    }

    fn index(&self, t: Target) -> usize {
        match t {
            Target::Cur => self.cur,
            Target::Sib(i) => i,
        }
    }

    fn field(&self, t: Target) -> &VdField<'a> {
        &self.fields[self.index(t)]
    }

    /// The binding of field `i` (a reference to it), noted as read.
    fn field_ref(&self, i: usize) -> String {
        self.reads.borrow_mut().insert(i);
        field_binding(i)
    }

    /// The whole rule: when the current field is optional, it holds where the field is absent.
    pub(super) fn rule(&self, ast: &Expr) -> Result<Cond, VdError> {
        let check = self.cond(ast)?;
        if !self.current().optional {
            return Ok(check);
        }
        let place = self.field_ref(self.cur);
        Ok(if check.uses_cur() {
            Cond::Lift {
                binds: vec![(place, value_binding(self.cur))],
                body: Box::new(check),
                on_none: true,
            }
        } else {
            any(vec![Cond::Presence { place, some: false }, check])
        })
    }

    /// `(name)$`: the Thrift name, else hz's Go-style spelling of it (`UserID` for `user_id`).
    fn resolve(&self, name: &str, at: usize) -> Result<Target, VdError> {
        let norm = |s: &str| s.replace('_', "").to_ascii_lowercase();
        let target = |i: usize| {
            if i == self.cur {
                Target::Cur
            } else {
                Target::Sib(i)
            }
        };
        if name == self.current().name {
            return Ok(Target::Cur);
        }
        if let Some(i) = self.fields.iter().position(|f| f.name == name) {
            return Ok(target(i));
        }
        if norm(name) == norm(self.current().name) {
            return Ok(Target::Cur);
        }
        let close: Vec<usize> = (0..self.fields.len())
            .filter(|&i| norm(self.fields[i].name) == norm(name))
            .collect();
        match close.as_slice() {
            [i] => Ok(target(*i)),
            [] => {
                let names: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
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

    fn target_of(&self, n: &Expr) -> Result<Option<Target>, VdError> {
        match &n.kind {
            ExprKind::Cur => Ok(Some(Target::Cur)),
            ExprKind::Field(name) => self.resolve(name, n.at).map(Some),
            _ => Ok(None),
        }
    }

    /// How generated code reaches a field's value inside the rule, as a `&T`: the field's
    /// binding, or for an optional field the binding of its value where it is present.
    fn source(&self, t: Target) -> String {
        let i = self.index(t);
        if self.field(t).optional {
            value_binding(i)
        } else {
            self.field_ref(i)
        }
    }

    /// A field's value in an expression.
    fn field_val(&self, t: Target, at: usize) -> Result<Value, VdError> {
        let f = self.field(t);
        let src = self.source(t);
        let as_f64 = match &f.ty {
            VdType::Int => Some(format!("{RT}::VdNum::vd_f64({src})")),
            VdType::Enum => Some(format!("{RT}::VdNum::vd_f64(&{src}.inner())")),
            _ => None,
        };
        let (ty, code, prec) = match &f.ty {
            VdType::Bool => (ValueType::Bool, format!("*{src}"), P_UNARY),
            VdType::Int => (
                ValueType::Int,
                format!("{RT}::VdNum::vd_i64({src})"),
                P_PRIMARY,
            ),
            VdType::Float => (
                ValueType::Float,
                format!("{RT}::VdNum::vd_f64({src})"),
                P_PRIMARY,
            ),
            VdType::Enum => (
                ValueType::Int,
                format!("{RT}::VdNum::vd_i64(&{src}.inner())"),
                P_PRIMARY,
            ),
            VdType::String => (ValueType::Str, format!("{src}.as_str()"), P_PRIMARY),
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
        let mut v = Value::code(ty, code, prec, &[]);
        v.as_f64 = as_f64;
        match t {
            Target::Cur => v.cur = true,
            Target::Sib(i) if f.optional => {
                v.lifts.insert(i);
            }
            Target::Sib(_) => {}
        }
        Ok(v)
    }

    /// `n` as a condition.
    pub(super) fn cond(&self, n: &Expr) -> Result<Cond, VdError> {
        match &n.kind {
            ExprKind::Bool(b) => Ok(Cond::Const(*b)),
            ExprKind::Not(x) => Ok(self.cond(x)?.negate()),
            ExprKind::And(xs) => Ok(all(xs
                .iter()
                .map(|x| self.cond(x))
                .collect::<Result<_, _>>()?)),
            ExprKind::Or(xs) => Ok(any(xs
                .iter()
                .map(|x| self.cond(x))
                .collect::<Result<_, _>>()?)),
            ExprKind::Cmp(op, l, r) => self.compare(*op, l, r, n.at),
            ExprKind::Regexp { pattern, arg } => self.regexp(pattern, arg.as_deref(), n.at),
            ExprKind::In(args) => self.within(args),
            _ => {
                if let Some(i) = self.optional_bool_sibling(n)? {
                    return Ok(self.optional_bool(i, CmpOp::Eq, true));
                }
                let v = self.val(n)?;
                if v.ty != ValueType::Bool {
                    return Err(err(
                        n.start,
                        format!(
                            "expected a condition (a comparison, `&&`, `||`, `!`, regexp(), in()), found {}",
                            v.ty.describe()
                        ),
                    ));
                }
                if let Some(Lit::Bool(b)) = v.lit {
                    return Ok(Cond::Const(b));
                }
                let lifts = v.lifts.clone();
                let atom = Cond::Atom {
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
    fn optional_bool_sibling(&self, n: &Expr) -> Result<Option<usize>, VdError> {
        Ok(match self.target_of(n)? {
            Some(Target::Sib(i)) => {
                let f = self.field(Target::Sib(i));
                (f.optional && f.ty == VdType::Bool).then_some(i)
            }
            _ => None,
        })
    }

    /// `(Flag)$ op b` for an optional boolean sibling: absent equals nothing.
    fn optional_bool(&self, i: usize, op: CmpOp, b: bool) -> Cond {
        Cond::Cmp {
            l: format!("*{}", self.field_ref(i)),
            op,
            r: format!("Some({b})"),
            cur: false,
        }
    }

    /// Binds the optional siblings `body` reads; `on_none` is the result when one is absent.
    fn seal(&self, body: Cond, lifts: &BTreeSet<usize>, on_none: bool) -> Cond {
        if lifts.is_empty() || matches!(body, Cond::Const(_)) {
            return body;
        }
        Cond::Lift {
            binds: lifts
                .iter()
                .map(|&i| (self.field_ref(i), value_binding(i)))
                .collect(),
            body: Box::new(body),
            on_none,
        }
    }

    /// `n` as a value.
    fn val(&self, n: &Expr) -> Result<Value, VdError> {
        match &n.kind {
            ExprKind::Cur => self.field_val(Target::Cur, n.at),
            ExprKind::Field(name) => {
                let t = self.resolve(name, n.at)?;
                self.field_val(t, n.at)
            }
            ExprKind::Int(v) => Ok(Value::lit(Lit::Int(*v))),
            ExprKind::Float(v) => Ok(Value::lit(Lit::Float(*v))),
            ExprKind::Str(v) => Ok(Value::lit(Lit::Str(v.clone()))),
            ExprKind::Bool(v) => Ok(Value::lit(Lit::Bool(*v))),
            ExprKind::Nil => Err(err(n.at, "nil can only be compared with `==` or `!=`")),
            ExprKind::Neg(x) => self.negative(x, n.at),
            ExprKind::Arith(op, l, r) => self.arith(*op, l, r, n.at),
            ExprKind::Len { chars, arg } => self.length(*chars, arg.as_deref(), n.at),
            ExprKind::Not(_)
            | ExprKind::Cmp(..)
            | ExprKind::And(_)
            | ExprKind::Or(_)
            | ExprKind::Regexp { .. }
            | ExprKind::In(_) => {
                let b = self.cond(n)?;
                if let Cond::Const(c) = b {
                    return Ok(Value::lit(Lit::Bool(c)));
                }
                let (code, prec) = b.render();
                let mut v = Value::code(ValueType::Bool, code, prec, &[]);
                v.cur = b.uses_cur();
                Ok(v)
            }
        }
    }

    fn negative(&self, x: &Expr, at: usize) -> Result<Value, VdError> {
        let v = self.val(x)?;
        match (&v.lit, v.ty) {
            (Some(Lit::Int(n)), _) => Ok(Value::lit(Lit::Int(n.wrapping_neg()))),
            (Some(Lit::Float(f)), _) => Ok(Value::lit(Lit::Float(-f))),
            (_, ValueType::Int) => Ok(Value::code(
                ValueType::Int,
                format!("{}.wrapping_neg()", v.int_receiver()),
                P_PRIMARY,
                &[&v],
            )),
            // `-(-x)`: `--x` would be clippy's `double_neg`.
            (_, ValueType::Float) => Ok(Value::code(
                ValueType::Float,
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

    fn arith(&self, op: ArOp, l: &Expr, r: &Expr, at: usize) -> Result<Value, VdError> {
        let (lv, rv) = (self.val(l)?, self.val(r)?);
        if !(lv.is_num() && rv.is_num()) {
            if op == ArOp::Add && lv.ty == ValueType::Str && rv.ty == ValueType::Str {
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
                return Ok(Value::lit(Lit::Int(a.wrapping_rem(b))));
            }
            let code = format!("{RT}::rem({}, {})", lv.int().0, rv.int().0);
            return Ok(Value::code(ValueType::Int, code, P_PRIMARY, &from));
        }
        if lv.ty == ValueType::Int && rv.ty == ValueType::Int && op != ArOp::Div {
            if let (Some(Lit::Int(a)), Some(Lit::Int(b))) = (&lv.lit, &rv.lit) {
                let n = match op {
                    ArOp::Add => a.wrapping_add(*b),
                    ArOp::Sub => a.wrapping_sub(*b),
                    _ => a.wrapping_mul(*b),
                };
                return Ok(Value::lit(Lit::Int(n)));
            }
            let method = match op {
                ArOp::Add => "wrapping_add",
                ArOp::Sub => "wrapping_sub",
                _ => "wrapping_mul",
            };
            let code = format!("{}.{method}({})", lv.int_receiver(), rv.code);
            return Ok(Value::code(ValueType::Int, code, P_PRIMARY, &from));
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
            return Ok(Value::lit(Lit::Float(f)));
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
        Ok(Value::code(ValueType::Float, code, prec, &from))
    }

    fn length(&self, chars: bool, arg: Option<&Expr>, at: usize) -> Result<Value, VdError> {
        let name = if chars { "mblen" } else { "len" };
        let (t, arg_at) = match arg {
            None => (Target::Cur, at),
            Some(a) => match (&a.kind, self.target_of(a)?) {
                (ExprKind::Str(s), _) => {
                    let n = if chars { s.chars().count() } else { s.len() };
                    return Ok(Value::lit(Lit::Int(i64::try_from(n).unwrap_or(i64::MAX))));
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
            Target::Cur if f.optional => value_binding(self.cur),
            _ => self.field_ref(self.index(t)),
        };
        let mut v = Value::code(
            ValueType::Int,
            format!("{RT}::{name}({by_ref})"),
            P_PRIMARY,
            &[],
        );
        v.cur = t == Target::Cur;
        Ok(v)
    }

    fn compare(&self, op: CmpOp, l: &Expr, r: &Expr, at: usize) -> Result<Cond, VdError> {
        let (l_nil, r_nil) = (
            matches!(l.kind, ExprKind::Nil),
            matches!(r.kind, ExprKind::Nil),
        );
        if l_nil || r_nil {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(err(at, "nil can only be compared with `==` or `!=`"));
            }
            if l_nil && r_nil {
                return Ok(Cond::Const(op == CmpOp::Eq));
            }
            return self.presence(if l_nil { r } else { l }, op == CmpOp::Ne);
        }
        // `x == true` is `x`: clippy's `bool_comparison` objects to the literal form.
        let bool_lit = match (&l.kind, &r.kind) {
            (ExprKind::Bool(_), ExprKind::Bool(_)) => None,
            (ExprKind::Bool(b), _) => Some((*b, r)),
            (_, ExprKind::Bool(b)) => Some((*b, l)),
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
            if v.ty != ValueType::Bool {
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
    fn presence(&self, n: &Expr, some: bool) -> Result<Cond, VdError> {
        match self.target_of(n)? {
            Some(Target::Cur) if self.current().optional => Err(err(
                n.at,
                "`$` is never nil here: a rule on an optional field is only checked when the field is set (make it required to demand it)",
            )),
            Some(Target::Cur) => Err(err(
                n.at,
                format!("`{}` is required, so it is never nil", self.current().name),
            )),
            Some(t @ Target::Sib(_)) => {
                let f = self.field(t);
                if !f.optional {
                    return Err(err(
                        n.at,
                        format!("`{}` is required, so it is never nil", f.name),
                    ));
                }
                Ok(Cond::Presence {
                    place: self.field_ref(self.index(t)),
                    some,
                })
            }
            None => Err(err(n.start, "only a field can be compared with nil")),
        }
    }

    fn regexp(&self, pattern: &str, arg: Option<&Expr>, at: usize) -> Result<Cond, VdError> {
        let (v, arg_at) = match arg {
            Some(a) => (self.val(a)?, a.start),
            None => (self.field_val(Target::Cur, at)?, at),
        };
        if v.ty != ValueType::Str {
            return Err(err(
                arg_at,
                format!("regexp() matches a string, found {}", v.ty.describe()),
            ));
        }
        if let Some(Lit::Str(s)) = &v.lit {
            // Checked when parsed; a failure here cannot happen but must not panic either.
            return regex::Regex::new(pattern)
                .map(|re| Cond::Const(re.is_match(s)))
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
        let atom = Cond::Atom {
            code,
            prec: P_PRIMARY,
            neg: false,
            cur: v.cur,
        };
        Ok(self.seal(atom, &v.lifts, false))
    }

    /// `in(x, a, b, ...)`: `x == a || x == b || ...`.
    fn within(&self, args: &[Expr]) -> Result<Cond, VdError> {
        let Some((first, candidates)) = args.split_first() else {
            return Ok(Cond::Const(false));
        };
        let subject = self.val(first)?;
        let mut seen = BTreeSet::new();
        // Candidates that read no optional sibling share one binding of the subject's; the
        // others are bound one by one, so an absent candidate only fails its own comparison.
        let mut plain = Vec::new();
        let mut bound = Vec::new();
        for c in candidates {
            if matches!(c.kind, ExprKind::Nil) {
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
fn cmp_vals(op: CmpOp, lv: &Value, rv: &Value, at: usize) -> Result<Cond, VdError> {
    let exact = |l: &str, r: &str| Cond::Cmp {
        // Comparisons do not chain in Rust.
        l: wrap(l, lv.prec, P_ADD),
        op,
        r: wrap(r, rv.prec, P_ADD),
        cur: lv.cur || rv.cur,
    };
    match (lv.ty, rv.ty) {
        (ValueType::Int, ValueType::Int) => match (&lv.lit, &rv.lit) {
            (Some(Lit::Int(a)), Some(Lit::Int(b))) => Ok(Cond::Const(op.eval(a, b))),
            _ => Ok(exact(&lv.code, &rv.code)),
        },
        (ValueType::Str, ValueType::Str) => match (&lv.lit, &rv.lit) {
            (Some(Lit::Str(a)), Some(Lit::Str(b))) => Ok(Cond::Const(op.eval(a, b))),
            // `x == ""` is clippy's `comparison_to_empty`.
            (Some(Lit::Str(e)), None) | (None, Some(Lit::Str(e)))
                if e.is_empty() && matches!(op, CmpOp::Eq | CmpOp::Ne) =>
            {
                let other = if lv.lit.is_none() { lv } else { rv };
                Ok(Cond::Atom {
                    code: format!("{}.is_empty()", wrap(&other.code, other.prec, P_PRIMARY)),
                    prec: P_PRIMARY,
                    neg: op == CmpOp::Ne,
                    cur: other.cur,
                })
            }
            _ => Ok(exact(&lv.code, &rv.code)),
        },
        (ValueType::Bool, ValueType::Bool) => {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(err(at, "booleans can only be compared with `==` or `!=`"));
            }
            match (&lv.lit, &rv.lit) {
                (Some(Lit::Bool(a)), Some(Lit::Bool(b))) => Ok(Cond::Const(op.eval(a, b))),
                _ => Ok(exact(&lv.code, &rv.code)),
            }
        }
        (ValueType::Int | ValueType::Float, ValueType::Int | ValueType::Float) => {
            if let (Some(a), Some(b)) = (lv.float_lit(), rv.float_lit()) {
                return Ok(Cond::Const(op.eval(&a, &b)));
            }
            let code = format!("{RT}::{}({}, {})", op.helper(), lv.float().0, rv.float().0);
            Ok(Cond::Atom {
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
