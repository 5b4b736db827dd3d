//! Arithmetic over every numeric element type, so element-wise kernels are written once.
//! Half-precision types compute in f32 and round back, as ONNX Runtime does.
use half::{bf16, f16};

use crate::value::Elem;

pub trait Num: Elem + PartialOrd {
    const IS_FLOAT: bool;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Division; integer division truncates, and by zero is an error.
    fn div(self, o: Self) -> Result<Self, String>;
    /// Remainder with the sign of the divisor (Python's `%`), or of the dividend with `fmod`.
    fn rem(self, o: Self, fmod: bool) -> Result<Self, String>;
    fn zero() -> Self;
    fn one() -> Self;
}

macro_rules! int_num {
    ($($t:ty, $signed:expr);*) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = false;
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn div(self, o: Self) -> Result<Self, String> {
                if o == 0 {
                    return Err("integer division by zero".into());
                }
                Ok(self.wrapping_div(o))
            }
            fn rem(self, o: Self, fmod: bool) -> Result<Self, String> {
                if o == 0 {
                    return Err("integer modulo by zero".into());
                }
                let r = self.wrapping_rem(o);
                #[allow(unused_comparisons)]
                let signs_differ = (r < 0) != (o < 0);
                Ok(if !fmod && r != 0 && signs_differ { r.wrapping_add(o) } else { r })
            }
            fn zero() -> Self { 0 }
            fn one() -> Self { 1 }
        }
    )*};
}
int_num!(i8, true; i16, true; i32, true; i64, true; u8, false; u16, false; u32, false; u64, false);

macro_rules! float_num {
    ($($t:ty);*) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = true;
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn add(self, o: Self) -> Self { self + o }
            fn sub(self, o: Self) -> Self { self - o }
            fn mul(self, o: Self) -> Self { self * o }
            fn div(self, o: Self) -> Result<Self, String> { Ok(self / o) }
            fn rem(self, o: Self, fmod: bool) -> Result<Self, String> {
                let r = self % o;
                Ok(if !fmod && r != 0.0 && (r < 0.0) != (o < 0.0) { r + o } else { r })
            }
            fn zero() -> Self { 0.0 }
            fn one() -> Self { 1.0 }
        }
    )*};
}
float_num!(f32; f64);

macro_rules! half_num {
    ($($t:ty);*) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = true;
            fn to_f64(self) -> f64 { self.to_f64() }
            fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            fn add(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() + o.to_f32()) }
            fn sub(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() - o.to_f32()) }
            fn mul(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() * o.to_f32()) }
            fn div(self, o: Self) -> Result<Self, String> { Ok(<$t>::from_f32(self.to_f32() / o.to_f32())) }
            fn rem(self, o: Self, fmod: bool) -> Result<Self, String> {
                let (a, b) = (self.to_f32(), o.to_f32());
                let r = a % b;
                let r = if !fmod && r != 0.0 && (r < 0.0) != (b < 0.0) { r + b } else { r };
                Ok(<$t>::from_f32(r))
            }
            fn zero() -> Self { <$t>::ZERO }
            fn one() -> Self { <$t>::ONE }
        }
    )*};
}
half_num!(f16; bf16);

/// Runs `$body` with `$a`, `$b` bound to the two inputs' slices when both have the same numeric
/// type; `$other` otherwise.
#[macro_export]
macro_rules! with_numeric_pair {
    ($x:expr, $y:expr, ($a:ident, $b:ident) => $body:expr, _ => $other:expr) => {
        match ($x, $y) {
            ($crate::Data::F32($a), $crate::Data::F32($b)) => $body,
            ($crate::Data::F64($a), $crate::Data::F64($b)) => $body,
            ($crate::Data::F16($a), $crate::Data::F16($b)) => $body,
            ($crate::Data::BF16($a), $crate::Data::BF16($b)) => $body,
            ($crate::Data::I8($a), $crate::Data::I8($b)) => $body,
            ($crate::Data::I16($a), $crate::Data::I16($b)) => $body,
            ($crate::Data::I32($a), $crate::Data::I32($b)) => $body,
            ($crate::Data::I64($a), $crate::Data::I64($b)) => $body,
            ($crate::Data::U8($a), $crate::Data::U8($b)) => $body,
            ($crate::Data::U16($a), $crate::Data::U16($b)) => $body,
            ($crate::Data::U32($a), $crate::Data::U32($b)) => $body,
            ($crate::Data::U64($a), $crate::Data::U64($b)) => $body,
            _ => $other,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remainders_follow_onnx_mod() {
        assert_eq!((-7i32).rem(3, false), Ok(2));
        assert_eq!((-7i32).rem(3, true), Ok(-1));
        assert_eq!(7i32.rem(-3, false), Ok(-2));
        assert_eq!(5.5f32.rem(-2.0, false), Ok(-0.5));
        assert!(1i64.div(0).is_err());
        assert!(1u8.rem(0, false).is_err());
    }
}
