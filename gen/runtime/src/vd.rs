//! What the Rust compiled from `api.vd` rules calls at run time (the language and its
//! semantics are documented in `idlgen::vd`).
//!
//! Every helper is total: no input makes one panic.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use pilota::{AHashMap, AHashSet, Bytes, FastStr, OrderedFloat};

pub use regex::Regex;

/// Numeric access to a field, so one emitted expression fits every Rust type a Thrift number
/// becomes (`double` is `f64` in structs but `OrderedFloat<f64>` in some positions).
pub trait VdNum {
    /// The value as an integer; a float is truncated toward zero (saturating, NaN is 0).
    fn vd_i64(&self) -> i64;
    fn vd_f64(&self) -> f64;
}

impl VdNum for i8 {
    fn vd_i64(&self) -> i64 {
        i64::from(*self)
    }
    fn vd_f64(&self) -> f64 {
        f64::from(*self)
    }
}

impl VdNum for i16 {
    fn vd_i64(&self) -> i64 {
        i64::from(*self)
    }
    fn vd_f64(&self) -> f64 {
        f64::from(*self)
    }
}

impl VdNum for i32 {
    fn vd_i64(&self) -> i64 {
        i64::from(*self)
    }
    fn vd_f64(&self) -> f64 {
        f64::from(*self)
    }
}

impl VdNum for i64 {
    fn vd_i64(&self) -> i64 {
        *self
    }
    fn vd_f64(&self) -> f64 {
        // Rounds beyond 2^53, like Go's float64 conversion.
        *self as f64
    }
}

impl VdNum for f64 {
    fn vd_i64(&self) -> i64 {
        // `as` saturates and maps NaN to 0: never panics.
        *self as i64
    }
    fn vd_f64(&self) -> f64 {
        *self
    }
}

impl VdNum for OrderedFloat<f64> {
    fn vd_i64(&self) -> i64 {
        self.0.vd_i64()
    }
    fn vd_f64(&self) -> f64 {
        self.0
    }
}

/// What `len()` measures: bytes of a string or binary, elements of a collection.
pub trait VdLen {
    fn vd_len(&self) -> usize;
}

impl VdLen for str {
    fn vd_len(&self) -> usize {
        self.len()
    }
}

impl VdLen for String {
    fn vd_len(&self) -> usize {
        self.len()
    }
}

impl VdLen for FastStr {
    fn vd_len(&self) -> usize {
        self.len()
    }
}

impl VdLen for [u8] {
    fn vd_len(&self) -> usize {
        self.len()
    }
}

impl VdLen for Bytes {
    fn vd_len(&self) -> usize {
        self.len()
    }
}

impl<T> VdLen for Vec<T> {
    fn vd_len(&self) -> usize {
        self.len()
    }
}

impl<T, S> VdLen for HashSet<T, S> {
    fn vd_len(&self) -> usize {
        self.len()
    }
}

impl<K, V, S> VdLen for HashMap<K, V, S> {
    fn vd_len(&self) -> usize {
        self.len()
    }
}

impl<T, S> VdLen for AHashSet<T, S> {
    fn vd_len(&self) -> usize {
        self.len()
    }
}

impl<K, V, S> VdLen for AHashMap<K, V, S> {
    fn vd_len(&self) -> usize {
        self.len()
    }
}

/// An absent optional field has length 0, as `len(nil)` is 0 in go-tagexpr.
impl<T: VdLen> VdLen for Option<T> {
    fn vd_len(&self) -> usize {
        self.as_ref().map_or(0, VdLen::vd_len)
    }
}

/// What `mblen()` measures: the text of a string field.
pub trait VdText {
    /// `None` for an absent optional field.
    fn vd_text(&self) -> Option<&str>;
}

impl VdText for str {
    fn vd_text(&self) -> Option<&str> {
        Some(self)
    }
}

impl VdText for String {
    fn vd_text(&self) -> Option<&str> {
        Some(self)
    }
}

impl VdText for FastStr {
    fn vd_text(&self) -> Option<&str> {
        Some(self.as_str())
    }
}

impl<T: VdText> VdText for Option<T> {
    fn vd_text(&self) -> Option<&str> {
        self.as_ref().and_then(VdText::vd_text)
    }
}

/// `len(x)`; saturates rather than wrap for absurd sizes.
pub fn len<T: VdLen + ?Sized>(value: &T) -> i64 {
    i64::try_from(value.vd_len()).unwrap_or(i64::MAX)
}

/// `mblen(x)`: Unicode scalar values (Go's runes), 0 when absent.
pub fn mblen<T: VdText + ?Sized>(value: &T) -> i64 {
    let n = value.vd_text().map_or(0, |s| s.chars().count());
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `regexp(...)`: a match anywhere in `text`, like Go's `MatchString`.
pub fn is_match(re: &Regex, text: &str) -> bool {
    re.is_match(text)
}

/// `a % b` on integers. Go would panic on a zero divisor; a validator must not, so it is 0.
pub fn rem(a: i64, b: i64) -> i64 {
    if b == 0 { 0 } else { a.wrapping_rem(b) }
}

// Float comparisons are functions so that the generated code can negate them (`!f64_lt(..)`)
// without clippy asking for `>=`, which differs when a side is NaN.

pub fn f64_eq(a: f64, b: f64) -> bool {
    a.partial_cmp(&b) == Some(Ordering::Equal)
}

pub fn f64_ne(a: f64, b: f64) -> bool {
    !f64_eq(a, b)
}

pub fn f64_lt(a: f64, b: f64) -> bool {
    a < b
}

pub fn f64_le(a: f64, b: f64) -> bool {
    a <= b
}

pub fn f64_gt(a: f64, b: f64) -> bool {
    a > b
}

pub fn f64_ge(a: f64, b: f64) -> bool {
    a >= b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_the_same_through_every_type() {
        assert_eq!(7i8.vd_i64(), 7);
        assert_eq!((-7i16).vd_i64(), -7);
        assert_eq!(7i32.vd_f64(), 7.0);
        assert_eq!(i64::MAX.vd_i64(), i64::MAX);
        assert_eq!(2.9f64.vd_i64(), 2);
        assert_eq!(f64::NAN.vd_i64(), 0);
        assert_eq!(f64::INFINITY.vd_i64(), i64::MAX);
        assert_eq!(OrderedFloat(1.5f64).vd_f64(), 1.5);
        assert_eq!(OrderedFloat(-1.5f64).vd_i64(), -1);
    }

    #[test]
    fn len_counts_bytes_or_elements() {
        assert_eq!(len("héllo"), 6);
        assert_eq!(len(&FastStr::from_static_str("héllo")), 6);
        assert_eq!(len(&Bytes::from_static(b"abc")), 3);
        assert_eq!(len(&vec![1, 2]), 2);
        let mut set = AHashSet::new();
        set.insert(1);
        assert_eq!(len(&set), 1);
        let mut map = AHashMap::new();
        map.insert(1, 2);
        map.insert(2, 3);
        assert_eq!(len(&map), 2);
        assert_eq!(len(&None::<FastStr>), 0);
        assert_eq!(len(&Some(FastStr::from_static_str("ab"))), 2);
    }

    #[test]
    fn mblen_counts_characters() {
        assert_eq!(mblen("héllo"), 5);
        assert_eq!(mblen(&FastStr::from_static_str("日本")), 2);
        assert_eq!(mblen(&None::<FastStr>), 0);
        assert_eq!(mblen(&Some(FastStr::from_static_str("日本"))), 2);
    }

    #[test]
    fn rem_never_panics() {
        assert_eq!(rem(7, 3), 1);
        assert_eq!(rem(-7, 3), -1);
        assert_eq!(rem(7, 0), 0);
        assert_eq!(rem(i64::MIN, -1), 0);
    }

    #[test]
    fn float_comparisons_are_false_on_nan() {
        assert!(f64_eq(1.0, 1.0));
        assert!(!f64_eq(f64::NAN, f64::NAN));
        assert!(f64_ne(f64::NAN, 1.0));
        assert!(!f64_lt(f64::NAN, 1.0) && !f64_ge(f64::NAN, 1.0));
        assert!(f64_le(1.0, 1.0) && f64_gt(2.0, 1.0));
    }
}
