//! Tensor element types: ONNX's `TensorProto.DataType`, with sizes and kiln's names for them.

/// An ONNX tensor element type. The discriminants are ONNX's enum values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum DataType {
    F32 = 1,
    U8 = 2,
    I8 = 3,
    U16 = 4,
    I16 = 5,
    I32 = 6,
    I64 = 7,
    String = 8,
    Bool = 9,
    F16 = 10,
    F64 = 11,
    U32 = 12,
    U64 = 13,
    Complex64 = 14,
    Complex128 = 15,
    BF16 = 16,
    F8E4M3FN = 17,
    F8E4M3FNUZ = 18,
    F8E5M2 = 19,
    F8E5M2FNUZ = 20,
    U4 = 21,
    I4 = 22,
    F4E2M1 = 23,
    F8E8M0 = 24,
    U2 = 25,
    I2 = 26,
    F6E2M3 = 27,
    F6E3M2 = 28,
}

use DataType::*;

/// Every data type, in ONNX enum order.
pub const ALL_DATA_TYPES: [DataType; 28] = [
    F32, U8, I8, U16, I16, I32, I64, String, Bool, F16, F64, U32, U64, Complex64, Complex128, BF16,
    F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, U4, I4, F4E2M1, F8E8M0, U2, I2, F6E2M3, F6E3M2,
];

impl DataType {
    /// The type for an ONNX enum value; `None` for UNDEFINED (0) and unknown values.
    pub fn from_onnx(v: i32) -> Option<DataType> {
        if (1..=28).contains(&v) {
            Some(ALL_DATA_TYPES[(v - 1) as usize])
        } else {
            None
        }
    }

    pub fn to_onnx(self) -> i32 {
        self as i32
    }

    /// Bits per element in packed storage (`raw_data`); `None` for strings.
    pub fn bits(self) -> Option<usize> {
        Some(match self {
            String => return None,
            U2 | I2 => 2,
            U4 | I4 | F4E2M1 => 4,
            F6E2M3 | F6E3M2 => 6,
            U8 | I8 | Bool | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => 8,
            U16 | I16 | F16 | BF16 => 16,
            F32 | I32 | U32 => 32,
            F64 | I64 | U64 | Complex64 => 64,
            Complex128 => 128,
        })
    }

    /// Bytes needed to store `n` elements packed as in `raw_data`.
    pub fn storage_bytes(self, n: usize) -> Option<usize> {
        let bits = self.bits()?;
        n.checked_mul(bits).map(|b| b.div_ceil(8))
    }

    /// kiln's lowercase name (numpy's where numpy has one).
    pub fn name(self) -> &'static str {
        match self {
            F32 => "float32",
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            I32 => "int32",
            I64 => "int64",
            String => "string",
            Bool => "bool",
            F16 => "float16",
            F64 => "float64",
            U32 => "uint32",
            U64 => "uint64",
            Complex64 => "complex64",
            Complex128 => "complex128",
            BF16 => "bfloat16",
            F8E4M3FN => "float8e4m3fn",
            F8E4M3FNUZ => "float8e4m3fnuz",
            F8E5M2 => "float8e5m2",
            F8E5M2FNUZ => "float8e5m2fnuz",
            U4 => "uint4",
            I4 => "int4",
            F4E2M1 => "float4e2m1",
            F8E8M0 => "float8e8m0",
            U2 => "uint2",
            I2 => "int2",
            F6E2M3 => "float6e2m3",
            F6E3M2 => "float6e3m2",
        }
    }

    pub fn from_name(s: &str) -> Option<DataType> {
        ALL_DATA_TYPES.iter().copied().find(|t| t.name() == s)
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            F32 | F16
                | F64
                | BF16
                | F8E4M3FN
                | F8E4M3FNUZ
                | F8E5M2
                | F8E5M2FNUZ
                | F4E2M1
                | F8E8M0
                | F6E2M3
                | F6E3M2
        )
    }

    pub fn is_int(self) -> bool {
        matches!(
            self,
            U8 | I8 | U16 | I16 | I32 | I64 | U32 | U64 | U4 | I4 | U2 | I2
        )
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_and_names_round_trip() {
        for (i, t) in ALL_DATA_TYPES.iter().enumerate() {
            assert_eq!(t.to_onnx(), i as i32 + 1);
            assert_eq!(DataType::from_onnx(t.to_onnx()), Some(*t));
            assert_eq!(DataType::from_name(t.name()), Some(*t));
        }
        assert_eq!(DataType::from_onnx(0), None);
        assert_eq!(DataType::from_onnx(29), None);
    }

    #[test]
    fn packed_sizes() {
        assert_eq!(U4.storage_bytes(3), Some(2));
        assert_eq!(I2.storage_bytes(5), Some(2));
        assert_eq!(F6E2M3.storage_bytes(4), Some(3));
        assert_eq!(F6E2M3.storage_bytes(5), Some(4));
        assert_eq!(Complex128.storage_bytes(2), Some(32));
        assert_eq!(String.storage_bytes(2), None);
        assert_eq!(F32.storage_bytes(usize::MAX), None);
    }
}
