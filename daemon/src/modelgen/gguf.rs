//! A minimal streaming GGUF v3 writer (the format of `ggml/include/gguf.h`).
//!
//! Layout: magic `GGUF`, version, tensor count, KV count; the KV pairs; the tensor infos
//! (name, dims, ggml type, data offset); padding to the alignment; then each tensor's data,
//! each padded to the alignment. All integers are little-endian.
//!
//! Past 400 lines only with its tests: the writer itself is under 280, and the tests
//! read back what it wrote.

use std::io::{self, Write};

/// File magic.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Format version written.
pub const VERSION: u32 = 3;
/// Data alignment (GGUF's default; we don't write `general.alignment`).
pub const ALIGNMENT: u64 = 32;

/// GGUF metadata value type ids.
mod ty {
    pub const UINT32: u32 = 4;
    pub const INT32: u32 = 5;
    pub const FLOAT32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
}

/// A metadata value (the subset of GGUF's types we need).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `GGUF_TYPE_UINT32`.
    U32(u32),
    /// `GGUF_TYPE_INT32`.
    I32(i32),
    /// `GGUF_TYPE_FLOAT32`.
    F32(f32),
    /// `GGUF_TYPE_BOOL`.
    Bool(bool),
    /// `GGUF_TYPE_STRING`.
    Str(String),
    /// `GGUF_TYPE_ARRAY` of `GGUF_TYPE_STRING`.
    StrArray(Vec<String>),
    /// `GGUF_TYPE_ARRAY` of `GGUF_TYPE_INT32`.
    I32Array(Vec<i32>),
}

/// Tensor element types (ggml's `enum ggml_type` ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    /// `GGML_TYPE_F32`.
    F32 = 0,
    /// `GGML_TYPE_F16`.
    F16 = 1,
}

impl TensorType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            TensorType::F32 => 4,
            TensorType::F16 => 2,
        }
    }
}

/// A tensor's description; `ne[0]` is the fastest-varying (contiguous) dimension, as in ggml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_qkv.weight`.
    pub name: String,
    /// Dimensions, innermost first (at most 4).
    pub ne: Vec<u64>,
    /// Element type.
    pub ty: TensorType,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }

    /// Size of the data in bytes (without padding).
    pub fn n_bytes(&self) -> u64 {
        self.n_elements() * self.ty.size()
    }
}

/// Collects metadata and tensor descriptions, then streams a GGUF file.
#[derive(Default)]
pub struct GgufBuilder {
    kv: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
}

fn pad_to(n: u64) -> u64 {
    n.next_multiple_of(ALIGNMENT) - n
}

/// A writer that counts the bytes passed through it.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, v: &Value) -> io::Result<()> {
    let u32le = |x: u32| x.to_le_bytes();
    match v {
        Value::U32(x) => {
            w.write_all(&u32le(ty::UINT32))?;
            w.write_all(&x.to_le_bytes())
        }
        Value::I32(x) => {
            w.write_all(&u32le(ty::INT32))?;
            w.write_all(&x.to_le_bytes())
        }
        Value::F32(x) => {
            w.write_all(&u32le(ty::FLOAT32))?;
            w.write_all(&x.to_le_bytes())
        }
        Value::Bool(x) => {
            w.write_all(&u32le(ty::BOOL))?;
            w.write_all(&[u8::from(*x)])
        }
        Value::Str(s) => {
            w.write_all(&u32le(ty::STRING))?;
            write_str(w, s)
        }
        Value::StrArray(items) => {
            w.write_all(&u32le(ty::ARRAY))?;
            w.write_all(&u32le(ty::STRING))?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|s| write_str(w, s))
        }
        Value::I32Array(items) => {
            w.write_all(&u32le(ty::ARRAY))?;
            w.write_all(&u32le(ty::INT32))?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
    }
}

impl GgufBuilder {
    /// An empty file description.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata key/value pair (keys must be unique; written in insertion order).
    pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
        debug_assert!(self.kv.iter().all(|(k, _)| k != key), "duplicate key {key}");
        self.kv.push((key.to_owned(), value));
        self
    }

    /// Declares a tensor (names must be unique; data is written in declaration order).
    pub fn tensor(&mut self, name: &str, ne: &[u64], ty: TensorType) -> &mut Self {
        debug_assert!(!ne.is_empty() && ne.len() <= 4, "1 to 4 dims");
        debug_assert!(
            self.tensors.iter().all(|t| t.name != name),
            "duplicate tensor {name}"
        );
        self.tensors.push(TensorInfo {
            name: name.to_owned(),
            ne: ne.to_vec(),
            ty,
        });
        self
    }

    /// The declared tensors, in order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Writes the file to `w`. `fill` is called once per tensor, in declaration order, and must
    /// write exactly [`TensorInfo::n_bytes`] bytes of little-endian element data.
    /// Returns the number of bytes written.
    pub fn write<W: Write>(
        &self,
        w: W,
        mut fill: impl FnMut(&TensorInfo, &mut dyn Write) -> io::Result<()>,
    ) -> io::Result<u64> {
        let mut w = Counting { inner: w, count: 0 };
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.kv.len() as u64).to_le_bytes())?;
        for (key, value) in &self.kv {
            write_str(&mut w, key)?;
            write_value(&mut w, value)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_str(&mut w, &t.name)?;
            w.write_all(&(t.ne.len() as u32).to_le_bytes())?;
            for &d in &t.ne {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&(t.ty as u32).to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            offset += t.n_bytes() + pad_to(t.n_bytes());
        }
        let zeros = [0u8; ALIGNMENT as usize];
        if !self.tensors.is_empty() {
            w.write_all(&zeros[..pad_to(w.count) as usize])?;
        }
        for t in &self.tensors {
            let start = w.count;
            fill(t, &mut w)?;
            let written = w.count - start;
            if written != t.n_bytes() {
                return Err(io::Error::other(format!(
                    "tensor {}: wrote {written} bytes, expected {}",
                    t.name,
                    t.n_bytes()
                )));
            }
            w.write_all(&zeros[..pad_to(written) as usize])?;
        }
        w.flush()?;
        Ok(w.count)
    }
}

/// Converts an `f32` to IEEE half-precision bits, rounding to nearest even.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;
    if exp == 0xff {
        // Inf or NaN (keep NaN quiet and non-zero).
        return sign | 0x7c00 | if man != 0 { 0x0200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal half (or zero): shift the full significand into place, rounding.
        if e < -10 {
            return sign;
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = u32::from(rem > mid || (rem == mid && half & 1 == 1));
        return sign | (half + round) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let round = u32::from(rem > 0x1000 || (rem == 0x1000 && half & 1 == 1));
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    sign | (half + round) as u16
}

/// A minimal GGUF reader, enough to check what [`GgufBuilder`] writes.
#[cfg(test)]
pub(crate) mod read {
    use super::*;
    use std::collections::HashMap;

    /// A parsed file: metadata, tensor infos with offsets, and the data section start.
    pub struct Parsed {
        pub version: u32,
        pub kv: Vec<(String, Value)>,
        pub tensors: Vec<(TensorInfo, u64)>,
        pub data_start: u64,
    }

    impl Parsed {
        pub fn get(&self, key: &str) -> Option<&Value> {
            self.kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
        }
        pub fn tensor_map(&self) -> HashMap<&str, &TensorInfo> {
            self.tensors
                .iter()
                .map(|(t, _)| (t.name.as_str(), t))
                .collect()
        }
    }

    struct Cursor<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl Cursor<'_> {
        fn take(&mut self, n: usize) -> &[u8] {
            let s = &self.buf[self.pos..self.pos + n];
            self.pos += n;
            s
        }
        fn u32(&mut self) -> u32 {
            u32::from_le_bytes(self.take(4).try_into().unwrap())
        }
        fn u64(&mut self) -> u64 {
            u64::from_le_bytes(self.take(8).try_into().unwrap())
        }
        fn str(&mut self) -> String {
            let n = self.u64() as usize;
            String::from_utf8(self.take(n).to_vec()).unwrap()
        }
        fn value(&mut self, t: u32) -> Value {
            match t {
                ty::UINT32 => Value::U32(self.u32()),
                ty::INT32 => Value::I32(self.u32() as i32),
                ty::FLOAT32 => Value::F32(f32::from_bits(self.u32())),
                ty::BOOL => Value::Bool(self.take(1)[0] != 0),
                ty::STRING => Value::Str(self.str()),
                ty::ARRAY => {
                    let et = self.u32();
                    let n = self.u64();
                    match et {
                        ty::STRING => Value::StrArray((0..n).map(|_| self.str()).collect()),
                        ty::INT32 => Value::I32Array((0..n).map(|_| self.u32() as i32).collect()),
                        _ => panic!("unsupported array type {et}"),
                    }
                }
                _ => panic!("unsupported type {t}"),
            }
        }
    }

    /// Parses the header, metadata and tensor infos of a GGUF file held in memory.
    pub fn parse(buf: &[u8]) -> Parsed {
        let mut c = Cursor { buf, pos: 0 };
        assert_eq!(c.take(4), MAGIC);
        let version = c.u32();
        let n_tensors = c.u64();
        let n_kv = c.u64();
        let kv = (0..n_kv)
            .map(|_| {
                let k = c.str();
                let t = c.u32();
                (k, c.value(t))
            })
            .collect();
        let tensors = (0..n_tensors)
            .map(|_| {
                let name = c.str();
                let n_dims = c.u32();
                let ne = (0..n_dims).map(|_| c.u64()).collect();
                let ty = match c.u32() {
                    0 => TensorType::F32,
                    1 => TensorType::F16,
                    t => panic!("unsupported tensor type {t}"),
                };
                let offset = c.u64();
                (TensorInfo { name, ne, ty }, offset)
            })
            .collect();
        let data_start = (c.pos as u64).next_multiple_of(ALIGNMENT);
        Parsed {
            version,
            kv,
            tensors,
            data_start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion() {
        assert_eq!(f32_to_f16_bits(0.0), 0x0000);
        assert_eq!(f32_to_f16_bits(-0.0), 0x8000);
        assert_eq!(f32_to_f16_bits(1.0), 0x3c00);
        assert_eq!(f32_to_f16_bits(-2.0), 0xc000);
        assert_eq!(f32_to_f16_bits(0.5), 0x3800);
        assert_eq!(f32_to_f16_bits(65504.0), 0x7bff);
        assert_eq!(f32_to_f16_bits(65520.0), 0x7c00); // rounds up to infinity
        assert_eq!(f32_to_f16_bits(f32::INFINITY), 0x7c00);
        assert_eq!(f32_to_f16_bits(f32::NAN) & 0x7c00, 0x7c00);
        assert_ne!(f32_to_f16_bits(f32::NAN) & 0x03ff, 0);
        assert_eq!(f32_to_f16_bits(6.103_515_6e-5), 0x0400); // smallest normal
        assert_eq!(f32_to_f16_bits(5.960_464_5e-8), 0x0001); // smallest subnormal
        assert_eq!(f32_to_f16_bits(2.0e-8), 0x0000); // below half the smallest subnormal
        assert_eq!(f32_to_f16_bits(0.1), 0x2e66);
        assert_eq!(f32_to_f16_bits(0.02), 0x251f);
        assert_eq!(f32_to_f16_bits(1.0 + 1.0 / 2048.0), 0x3c00); // tie → even
        assert_eq!(f32_to_f16_bits(1.0 + 3.0 / 2048.0), 0x3c02); // tie → even
    }

    #[test]
    fn round_trip_header_and_layout() {
        let mut b = GgufBuilder::new();
        b.kv("general.architecture", Value::Str("gpt2".into()))
            .kv("n", Value::U32(7))
            .kv("eps", Value::F32(1e-5))
            .kv("flag", Value::Bool(true))
            .kv("i", Value::I32(-3))
            .kv(
                "strs",
                Value::StrArray(vec!["a b".into(), "".into(), "é".into()]),
            )
            .kv("ints", Value::I32Array(vec![1, 3, -1]))
            .tensor("x", &[3], TensorType::F32)
            .tensor("y", &[5, 2], TensorType::F16);
        let mut out = Vec::new();
        let n = b
            .write(&mut out, |t, w| {
                w.write_all(&vec![0xAB; t.n_bytes() as usize])
            })
            .unwrap();
        assert_eq!(n, out.len() as u64);
        let p = read::parse(&out);
        assert_eq!(p.version, 3);
        assert_eq!(p.kv.len(), 7);
        assert_eq!(
            p.get("general.architecture"),
            Some(&Value::Str("gpt2".into()))
        );
        assert_eq!(p.get("n"), Some(&Value::U32(7)));
        assert_eq!(p.get("eps"), Some(&Value::F32(1e-5)));
        assert_eq!(p.get("flag"), Some(&Value::Bool(true)));
        assert_eq!(p.get("i"), Some(&Value::I32(-3)));
        assert_eq!(
            p.get("strs"),
            Some(&Value::StrArray(vec!["a b".into(), "".into(), "é".into()]))
        );
        assert_eq!(p.get("ints"), Some(&Value::I32Array(vec![1, 3, -1])));
        assert_eq!(p.tensors.len(), 2);
        assert_eq!(p.tensors[0].0.ne, [3]);
        assert_eq!(p.tensors[0].1, 0);
        assert_eq!(p.tensors[1].0.ne, [5, 2]);
        assert_eq!(p.tensors[1].0.ty, TensorType::F16);
        assert_eq!(p.tensors[1].1, 32); // 12 bytes padded to 32
        assert_eq!(p.data_start % 32, 0);
        // Data: x at data_start, y at data_start + 32, file padded to the alignment.
        let ds = p.data_start as usize;
        assert_eq!(&out[ds..ds + 12], &[0xAB; 12]);
        assert_eq!(&out[ds + 12..ds + 32], &[0; 20]);
        assert_eq!(&out[ds + 32..ds + 52], &[0xAB; 20]);
        assert_eq!(out.len(), ds + 64);
    }

    #[test]
    fn short_tensor_data_is_an_error() {
        let mut b = GgufBuilder::new();
        b.tensor("x", &[4], TensorType::F32);
        let err = b
            .write(Vec::new(), |_, w| w.write_all(&[0; 15]))
            .unwrap_err();
        assert!(err.to_string().contains("expected 16"), "{err}");
    }
}
