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
//! [`Rule::check`] is one Rust expression of type `bool`, and [`Rule::violated`] its negation.
//! It reads field `i` of the struct through the binding [`field_binding`]`(i)`, a reference to
//! the field, for each `i` in [`Rule::reads`]; the code generator binds them first, with
//! pilota's names for the fields: `let Self { username: vd_f0, .. } = self;`. So a rule is
//! checked and compiled once, from the IDL alone, and the generator only renders it. Besides
//! those bindings the code names only `::std` and `::idlgen_runtime::vd`; each regex is compiled
//! once, in a block-local `static LazyLock`, and numbers are read through the runtime's `VdNum`
//! (no `as` casts). For `mblen($) >= 1 && mblen($) <= 32` on a required `username`, field 0:
//!
//! ```text
//! check:    ::idlgen_runtime::vd::mblen(vd_f0) >= 1 && ::idlgen_runtime::vd::mblen(vd_f0) <= 32
//! violated: ::idlgen_runtime::vd::mblen(vd_f0) < 1 || ::idlgen_runtime::vd::mblen(vd_f0) > 32
//! ```
//!
//! Use them as `if <violated> { return Err(..) }` or `let ok: bool = <check>;`: both are clean
//! under clippy's defaults, while `if !(<check>)` trips `nonminimal_bool`. Negations are pushed
//! inward at build time (`!($ == 1)` becomes `... != 1`) for that reason, and float comparisons
//! are helper calls because their negation is not the opposite comparison when NaN is involved.
//! Only degenerate rules trip clippy: `$ == $` (`eq_op`), `$ || !$` on a boolean
//! (`overly_complex_bool_expr`); generated code may `#[allow]` both.

mod check;
mod lex;
mod parse;
mod tag;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;

use check::Checker;
use lex::lex;
use parse::Parser;
use tag::{parse_message, split_tag};

pub(crate) use lex::CmpOp;
pub(crate) use parse::{Expr, ExprKind};

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

/// A field of the struct, as a rule sees it: `$` is the field the rule is on, `(Name)$` names
/// another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdField<'a> {
    /// The Thrift field name.
    pub name: &'a str,
    pub ty: VdType,
    /// The Rust type is `Option<T>`.
    pub optional: bool,
}

/// A compiled rule: `check` is a Rust expression of type `bool`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub check: String,
    /// `!check`, with the negation pushed inward: `if <violated> { return Err(..) }` passes
    /// clippy where `if !(<check>)` trips `nonminimal_bool`.
    pub violated: String,
    /// The `msg:'...'` of the annotation, if it has one.
    pub message: Option<String>,
    /// The fields the code reads, each through its [`field_binding`].
    pub reads: BTreeSet<usize>,
}

/// The name through which a rule's code reads field `i` of the struct: a reference to the
/// field (`&T`, or `&Option<T>` for an optional field), bound by the code generator.
pub fn field_binding(i: usize) -> String {
    format!("vd_f{i}")
}

/// The name of optional field `i`'s value (`&T`) inside the code that runs where it is present.
fn value_binding(i: usize) -> String {
    format!("vd_v{i}")
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

/// Compiles one `api.vd` annotation on `fields[current]`; `fields` are the struct's fields.
///
/// # Panics
/// If `current` is not an index of `fields`.
pub fn compile(expr: &str, fields: &[VdField<'_>], current: usize) -> Result<Rule, VdError> {
    let (rule, msg) = split_tag(expr)?;
    let ast = Parser::new(lex(rule.text, rule.at)?).parse()?;
    let message = match msg {
        Some(part) => parse_message(&part)?,
        None => None,
    };
    let checker = Checker::new(fields, current);
    let check = checker.rule(&ast)?;
    Ok(Rule {
        violated: check.clone().negate().render().0,
        check: check.render().0,
        message,
        reads: checker.reads(),
    })
}

/// The syntax tree of one annotation's rule (its message left out), not type-checked: for
/// readers of the rule's shape, such as the OpenAPI document. Offsets are into `expr`.
pub(crate) fn parse(expr: &str) -> Result<Expr, VdError> {
    let (rule, _) = split_tag(expr)?;
    Parser::new(lex(rule.text, rule.at)?).parse()
}

fn err(offset: usize, message: impl Into<String>) -> VdError {
    VdError {
        offset,
        message: message.into(),
    }
}
