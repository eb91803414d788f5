use std::collections::BTreeSet;

use super::*;

fn f(name: &str, ty: VdType, optional: bool) -> VdField<'_> {
    VdField { name, ty, optional }
}

/// A struct with one field of each kind; `o_*` are optional. The code reads field `i` as
/// `vd_f{i}` (`name` is `vd_f0`, `user_id` `vd_f14`) and its value, where optional and
/// present, as `vd_v{i}`.
fn fields() -> Vec<VdField<'static>> {
    vec![
        f("name", VdType::String, false),
        f("age", VdType::Int, false),
        f("score", VdType::Float, false),
        f("ok", VdType::Bool, false),
        f("data", VdType::Binary, false),
        f("kind", VdType::Enum, false),
        f("tags", VdType::List(Box::new(VdType::String)), false),
        f("ids", VdType::Set(Box::new(VdType::Int)), false),
        f(
            "attrs",
            VdType::Map(Box::new(VdType::String), Box::new(VdType::String)),
            false,
        ),
        f("addr", VdType::Struct, false),
        f("o_name", VdType::String, true),
        f("o_age", VdType::Int, true),
        f("o_ok", VdType::Bool, true),
        f("o_addr", VdType::Struct, true),
        f("user_id", VdType::Int, false),
    ]
}

fn on(field: &str, expr: &str) -> Result<Rule, VdError> {
    let all = fields();
    let cur = all
        .iter()
        .position(|x| x.name == field)
        .expect("test field exists");
    compile(expr, &all, cur)
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

const NUM_AGE: &str = "::idlgen_runtime::vd::VdNum::vd_i64(vd_f1)";

#[test]
fn project_rules() {
    assert_eq!(
        check("name", "mblen($) >= 1 && mblen($) <= 32"),
        "::idlgen_runtime::vd::mblen(vd_f0) >= 1 && ::idlgen_runtime::vd::mblen(vd_f0) <= 32"
    );
    assert_eq!(
        check("name", "len($) >= 6 && len($) <= 64"),
        "::idlgen_runtime::vd::len(vd_f0) >= 6 && ::idlgen_runtime::vd::len(vd_f0) <= 64"
    );
    assert_eq!(
        check("user_id", "$ > 0"),
        "::idlgen_runtime::vd::VdNum::vd_i64(vd_f14) > 0"
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
        "::idlgen_runtime::vd::f64_gt(::idlgen_runtime::vd::VdNum::vd_f64(vd_f1) / 2.0, 2.0)"
    );
    assert_eq!(
        check("score", "$ * (1.5 + $) <= 2"),
        "::idlgen_runtime::vd::f64_le(::idlgen_runtime::vd::VdNum::vd_f64(vd_f2) * (1.5 + ::idlgen_runtime::vd::VdNum::vd_f64(vd_f2)), 2.0)"
    );
    assert_eq!(
        check("score", "-$ < 1"),
        "::idlgen_runtime::vd::f64_lt(-::idlgen_runtime::vd::VdNum::vd_f64(vd_f2), 1.0)"
    );
    // Integer expressions and floats meet through the runtime's conversions, not `as`.
    assert_eq!(
        check("age", "($ + 1) / 2 > (score)$ % 2"),
        format!(
            "::idlgen_runtime::vd::f64_gt(::idlgen_runtime::vd::VdNum::vd_f64(&{NUM_AGE}.wrapping_add(1)) / 2.0, ::idlgen_runtime::vd::VdNum::vd_f64(&::idlgen_runtime::vd::rem(::idlgen_runtime::vd::VdNum::vd_i64(&::idlgen_runtime::vd::VdNum::vd_f64(vd_f2)), 2)))"
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
    assert_eq!(check("name", "$ == 'bob'"), "vd_f0.as_str() == \"bob\"");
    assert_eq!(check("name", r"$ != 'it\'s'"), "vd_f0.as_str() != \"it's\"");
    assert_eq!(
        check("name", "$ < '\"q\"'"),
        "vd_f0.as_str() < \"\\\"q\\\"\""
    );
    assert_eq!(check("name", "'a;b' != $"), "\"a;b\" != vd_f0.as_str()");
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
    assert_eq!(check("ok", "!$"), "!*vd_f3");
    assert_eq!(check("ok", "!!$"), "*vd_f3");
    assert_eq!(check("ok", "$ == false"), "!*vd_f3");
    assert_eq!(check("ok", "true != $"), "!*vd_f3");
    assert_eq!(check("ok", "$ || true"), "true");
    assert_eq!(check("ok", "$ && !false"), "*vd_f3");
    assert_eq!(
        check("ok", "$ == ((Age)$ > 3)"),
        format!("*vd_f3 == ({NUM_AGE} > 3)")
    );
    assert_eq!(check("ok", "((((($)))))"), "*vd_f3");
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
        format!("::idlgen_runtime::vd::len(vd_f0) > {NUM_AGE}")
    );
    // hz's Go field names resolve too.
    assert_eq!(
        check("age", "(UserID)$ != $"),
        format!("::idlgen_runtime::vd::VdNum::vd_i64(vd_f14) != {NUM_AGE}")
    );
    assert_eq!(check("age", "( age )$ > 0"), format!("{NUM_AGE} > 0"));
    assert_eq!(
        check("age", "(kind)$ == 2"),
        "::idlgen_runtime::vd::VdNum::vd_i64(&vd_f5.inner()) == 2"
    );
    assert_eq!(
        check(
            "age",
            "len((tags)$) + len((ids)$) + len((attrs)$) + len((data)$) > 0"
        ),
        "::idlgen_runtime::vd::len(vd_f6).wrapping_add(::idlgen_runtime::vd::len(vd_f7)).wrapping_add(::idlgen_runtime::vd::len(vd_f8)).wrapping_add(::idlgen_runtime::vd::len(vd_f4)) > 0"
    );
    assert_eq!(
        check("age", "(score)$ >= $"),
        "::idlgen_runtime::vd::f64_ge(::idlgen_runtime::vd::VdNum::vd_f64(vd_f2), ::idlgen_runtime::vd::VdNum::vd_f64(vd_f1))"
    );
}

#[test]
fn optional_siblings_are_nil_when_absent() {
    assert_eq!(check("age", "(o_name)$ == nil"), "vd_f10.is_none()");
    assert_eq!(check("age", "nil != (o_addr)$"), "vd_f13.is_some()");
    assert_eq!(check("age", "!((o_addr)$ != nil)"), "vd_f13.is_none()");
    assert_eq!(check("age", "nil == nil"), "true");
    assert_eq!(
        check("age", "(o_age)$ > $"),
        format!(
            "vd_f11.as_ref().is_some_and(|vd_v11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11) > {NUM_AGE})"
        )
    );
    // `!=` holds when absent; negating `==` gives the same.
    let ne = "vd_f10.as_ref().is_none_or(|vd_v10| vd_v10.as_str() != \"x\")";
    assert_eq!(check("age", "(o_name)$ != 'x'"), ne);
    assert_eq!(check("age", "!((o_name)$ == 'x')"), ne);
    assert_eq!(
        check("age", "(o_age)$ < (o_age)$ + 1"),
        "vd_f11.as_ref().is_some_and(|vd_v11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11) < ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11).wrapping_add(1))"
    );
    // Types are checked before constants fold.
    assert_eq!(fails("age", "(o_age)$ == (o_name)$ + 0 || true").0, 22);
    assert_eq!(
        check("age", "len((o_name)$) < 3 && mblen((o_name)$) < 2"),
        "::idlgen_runtime::vd::len(vd_f10) < 3 && ::idlgen_runtime::vd::mblen(vd_f10) < 2"
    );
    assert_eq!(check("age", "(o_ok)$"), "*vd_f12 == Some(true)");
    assert_eq!(check("age", "!(o_ok)$"), "*vd_f12 != Some(true)");
    assert_eq!(check("age", "(o_ok)$ == false"), "*vd_f12 == Some(false)");
    assert_eq!(check("age", "(o_ok)$ != false"), "*vd_f12 != Some(false)");
    assert_eq!(
        check("age", "(o_ok)$ == (ok)$"),
        "vd_f12.as_ref().is_some_and(|vd_v12| *vd_v12 == *vd_f3)"
    );
    assert_eq!(
        check("age", "(o_age)$ == (o_age)$ && (o_name)$ == (name)$"),
        "vd_f11.as_ref().is_some_and(|vd_v11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11) == ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11)) && vd_f10.as_ref().is_some_and(|vd_v10| vd_v10.as_str() == vd_f0.as_str())"
    );
}

#[test]
fn two_optional_siblings_nest() {
    assert_eq!(
        check("age", "(o_age)$ != len((o_name)$) + (o_age)$"),
        "vd_f11.as_ref().is_none_or(|vd_v11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11) != ::idlgen_runtime::vd::len(vd_f10).wrapping_add(::idlgen_runtime::vd::VdNum::vd_i64(vd_v11)))"
    );
    assert_eq!(
        check("age", "regexp('^a', (o_name)$) && in((o_age)$, 1, 2)"),
        "vd_f10.as_ref().is_some_and(|vd_v10| ::idlgen_runtime::vd::is_match({ static RE: ::std::sync::LazyLock<::idlgen_runtime::vd::Regex> = ::std::sync::LazyLock::new(|| ::idlgen_runtime::vd::Regex::new(\"^a\").expect(\"checked at build time\")); &RE }, vd_v10.as_str())) && vd_f11.as_ref().is_some_and(|vd_v11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11) == 1 || ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11) == 2)"
    );
    let rule = on("o_name", "(o_age)$ > len($) + (o_age)$").expect("compiles");
    assert_eq!(rule.reads, BTreeSet::from([10, 11]));
    assert_eq!(
        rule.check,
        "vd_f10.as_ref().is_none_or(|vd_v10| vd_f11.as_ref().is_some_and(|vd_v11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11) > ::idlgen_runtime::vd::len(vd_v10).wrapping_add(::idlgen_runtime::vd::VdNum::vd_i64(vd_v11))))"
    );
}

#[test]
fn optional_current_passes_when_absent() {
    assert_eq!(
        check("o_name", "mblen($) <= 3"),
        "vd_f10.as_ref().is_none_or(|vd_v10| ::idlgen_runtime::vd::mblen(vd_v10) <= 3)"
    );
    assert_eq!(
        check("o_age", "$ > 0 && $ != (Age)$"),
        format!(
            "vd_f11.as_ref().is_none_or(|vd_v11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11) > 0 && ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11) != {NUM_AGE})"
        )
    );
    assert_eq!(
        check("o_ok", "$"),
        "vd_f12.as_ref().is_none_or(|vd_v12| *vd_v12)"
    );
    assert_eq!(
        check("o_ok", "!$"),
        "vd_f12.as_ref().is_none_or(|vd_v12| !*vd_v12)"
    );
    // A rule that does not read `$` binds nothing.
    assert_eq!(
        check("o_name", "(Age)$ > 3"),
        format!("vd_f10.is_none() || {NUM_AGE} > 3")
    );
    assert_eq!(check("o_name", "false"), "vd_f10.is_none()");
    assert_eq!(check("o_name", "true || $ == 'a'"), "true");
    // `(Name)$` naming the current field is `$`.
    assert_eq!(
        check("o_name", "(o_name)$ == 'a'"),
        "vd_f10.as_ref().is_none_or(|vd_v10| vd_v10.as_str() == \"a\")"
    );
}

#[test]
fn functions() {
    assert_eq!(
        check("name", "len() > 2"),
        "::idlgen_runtime::vd::len(vd_f0) > 2"
    );
    assert_eq!(check("name", "mblen('日本') == 2"), "true");
    assert_eq!(check("name", "len('日本') == 6"), "true");
    assert_eq!(
        check("data", "len($) < 1024"),
        "::idlgen_runtime::vd::len(vd_f4) < 1024"
    );
    assert_eq!(
        check("name", "regexp('^\\w+$')"),
        "::idlgen_runtime::vd::is_match({ static RE: ::std::sync::LazyLock<::idlgen_runtime::vd::Regex> = ::std::sync::LazyLock::new(|| ::idlgen_runtime::vd::Regex::new(\"^\\\\w+$\").expect(\"checked at build time\")); &RE }, vd_f0.as_str())"
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
        "vd_f0.as_str() == \"a\" || vd_f10.as_ref().is_some_and(|vd_v10| vd_f0.as_str() == vd_v10.as_str())"
    );
    assert_eq!(
        check("score", "in($, 1, 2.5)"),
        "::idlgen_runtime::vd::f64_eq(::idlgen_runtime::vd::VdNum::vd_f64(vd_f2), 1.0) || ::idlgen_runtime::vd::f64_eq(::idlgen_runtime::vd::VdNum::vd_f64(vd_f2), 2.5)"
    );
    assert_eq!(
        check("kind", "in($, 1, 3)"),
        "::idlgen_runtime::vd::VdNum::vd_i64(&vd_f5.inner()) == 1 || ::idlgen_runtime::vd::VdNum::vd_i64(&vd_f5.inner()) == 3"
    );
}

#[test]
fn violated_is_the_negation() {
    let rule = on("age", "$ > 1 && ($ < 9 || regexp('1', (name)$))").expect("compiles");
    assert_eq!(
        rule.violated,
        format!(
            "{NUM_AGE} <= 1 || ({NUM_AGE} >= 9 && !::idlgen_runtime::vd::is_match({{ static RE: ::std::sync::LazyLock<::idlgen_runtime::vd::Regex> = ::std::sync::LazyLock::new(|| ::idlgen_runtime::vd::Regex::new(\"1\").expect(\"checked at build time\")); &RE }}, vd_f0.as_str()))"
        )
    );
    let rule = on("o_age", "$ > 1").expect("compiles");
    assert_eq!(
        rule.violated,
        "vd_f11.as_ref().is_some_and(|vd_v11| ::idlgen_runtime::vd::VdNum::vd_i64(vd_v11) <= 1)"
    );
    assert_eq!(
        on("o_age", "(age)$ > 1").expect("compiles").violated,
        format!("vd_f11.is_some() && {NUM_AGE} <= 1")
    );
    assert_eq!(on("age", "true").expect("compiles").violated, "false");
}

#[test]
fn messages() {
    let rule = on("name", "@:len($) > 1; msg:'too short'").expect("compiles");
    assert_eq!(rule.check, "::idlgen_runtime::vd::len(vd_f0) > 1");
    assert_eq!(rule.message.as_deref(), Some("too short"));
    let rule = on("name", "  msg : 'it\\'s; bad' ;@: $ != ';' ; ").expect("compiles");
    assert_eq!(rule.message.as_deref(), Some("it's; bad"));
    assert_eq!(rule.check, "vd_f0.as_str() != \";\"");
    let rule = on("name", ":$ != ''").expect("compiles");
    assert_eq!(rule.message, None);
    assert_eq!(rule.check, "!vd_f0.as_str().is_empty()");
    assert_eq!(check("name", "'' == $"), "vd_f0.as_str().is_empty()");
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
        f("a_b", VdType::Int, false),
        f("ab", VdType::Int, false),
        f("x", VdType::Int, false),
    ];
    let err = compile("(AB_)$ > 1", &all, 2).expect_err("ambiguous");
    assert_eq!(err.offset, 1);
    // The exact name wins over the Go-style spelling.
    let rule = compile("(ab)$ > 1", &all, 2).expect("exact");
    assert_eq!(rule.check, "::idlgen_runtime::vd::VdNum::vd_i64(vd_f1) > 1");
    assert_eq!(rule.reads, BTreeSet::from([1]));
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
