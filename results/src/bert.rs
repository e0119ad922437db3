//! A CPU forward pass of a BERT encoder (the all-MiniLM-L6-v2 shape: post-norm layers,
//! GELU, absolute positions), for sentence embeddings only.
//!
//! Why not candle-transformers' BertModel: on this model it ran at 0.23 of
//! sentence-transformers' speed on CPU (fresh tensors and page faults per op, a composed
//! softmax, padded batches with a mask, small per-head matmuls). Here the tokens of a whole
//! batch are stacked without padding, so each projection is one large matrix product over
//! every real token; attention runs per (sequence, head) in parallel on exact lengths, and
//! the buffers of a batch are allocated once. The result is checked against
//! sentence-transformers (fixture) and against candle-transformers' BERT in the tests.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use safetensors::SafeTensors;
use serde::Deserialize;

/// The fields of a Hugging Face BERT config.json that the forward pass uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

/// A linear layer: weight [out, in] row-major (as stored), bias [out].
struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    out: usize,
    input: usize,
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Layer {
    /// Query, key and value stacked: [3H, H].
    qkv: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

/// BERT weights in f32.
pub struct Bert {
    config: BertConfig,
    words: Vec<f32>,
    positions: Vec<f32>,
    types: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
}

/// Activation buffers, kept between batches: fresh ones cost a page fault per 4 KiB and a
/// zero fill (about a tenth of the time in a profile).
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    wide: Vec<f32>,
}

/// Makes `buffer` exactly `len` long; the contents are overwritten by the caller.
fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len, 0.0);
    &mut buffer[..len]
}

/// A tokenised input: token ids and token type ids of equal length.
pub struct Tokens<'a> {
    pub ids: &'a [u32],
    pub types: &'a [u32],
}

impl Bert {
    /// Loads weights named as Hugging Face's BertModel names them (with or without a
    /// `bert.` prefix).
    pub fn load(config: BertConfig, weights: &Path) -> Result<Self> {
        if config.hidden_act != "gelu" {
            bail!(
                "{}: activation {} is not supported (gelu only)",
                weights.display(),
                config.hidden_act
            );
        }
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            bail!(
                "{}: hidden size not divisible by the head count",
                weights.display()
            );
        }
        let bytes =
            std::fs::read(weights).with_context(|| format!("reading {}", weights.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a safetensors file", weights.display()))?;
        let prefix = if st.names().iter().any(|n| n.starts_with("bert.")) {
            "bert."
        } else {
            ""
        };
        let get = |name: &str, len: usize| -> Result<Vec<f32>> {
            let full = format!("{prefix}{name}");
            let view = st
                .tensor(&full)
                .with_context(|| format!("{}: no tensor {full}", weights.display()))?;
            if view.dtype() != safetensors::Dtype::F32 {
                bail!(
                    "{}: {full} is {:?}, expected F32",
                    weights.display(),
                    view.dtype()
                );
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if values.len() != len {
                bail!(
                    "{}: {full} has {} values, expected {len}",
                    weights.display(),
                    values.len()
                );
            }
            Ok(values)
        };
        let h = config.hidden_size;
        let i = config.intermediate_size;
        let linear = |name: &str, out: usize, input: usize| -> Result<Linear> {
            Ok(Linear {
                weight: get(&format!("{name}.weight"), out * input)?,
                bias: get(&format!("{name}.bias"), out)?,
                out,
                input,
            })
        };
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                weight: get(&format!("{name}.weight"), h)?,
                bias: get(&format!("{name}.bias"), h)?,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let q = linear(&format!("{p}.attention.self.query"), h, h)?;
            let k = linear(&format!("{p}.attention.self.key"), h, h)?;
            let v = linear(&format!("{p}.attention.self.value"), h, h)?;
            let qkv = Linear {
                weight: [q.weight, k.weight, v.weight].concat(),
                bias: [q.bias, k.bias, v.bias].concat(),
                out: 3 * h,
                input: h,
            };
            layers.push(Layer {
                qkv,
                attention_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(&format!("{p}.intermediate.dense"), i, h)?,
                output: linear(&format!("{p}.output.dense"), h, i)?,
                output_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Bert {
            words: get("embeddings.word_embeddings.weight", config.vocab_size * h)?,
            positions: get(
                "embeddings.position_embeddings.weight",
                config.max_position_embeddings * h,
            )?,
            types: get(
                "embeddings.token_type_embeddings.weight",
                config.type_vocab_size * h,
            )?,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            config,
        })
    }

    /// The mean over tokens of the last hidden states of each input (every token counts:
    /// inputs carry no padding).
    pub fn mean_pooled(&self, inputs: &[Tokens], scratch: &mut Scratch) -> Result<Vec<Vec<f32>>> {
        let h = self.config.hidden_size;
        let mut starts = Vec::with_capacity(inputs.len());
        let mut n = 0usize;
        for input in inputs {
            if input.ids.len() > self.config.max_position_embeddings {
                bail!(
                    "an input of {} tokens exceeds {} positions",
                    input.ids.len(),
                    self.config.max_position_embeddings
                );
            }
            starts.push(n);
            n += input.ids.len();
        }
        let Scratch {
            x,
            qkv,
            context,
            attended,
            wide,
        } = scratch;
        let x = sized(x, n * h);
        for (input, &start) in inputs.iter().zip(&starts) {
            for (position, (&id, &kind)) in input.ids.iter().zip(input.types).enumerate() {
                let (id, kind) = (id as usize, kind as usize);
                if id >= self.config.vocab_size || kind >= self.config.type_vocab_size {
                    bail!("token id {id} or type {kind} out of range");
                }
                let row = &mut x[(start + position) * h..][..h];
                let word = &self.words[id * h..][..h];
                let pos = &self.positions[position * h..][..h];
                let typ = &self.types[kind * h..][..h];
                for d in 0..h {
                    row[d] = word[d] + pos[d] + typ[d];
                }
            }
        }
        let eps = self.config.layer_norm_eps as f32;
        layer_norm(x, &self.embedding_norm, h, eps);
        let spans: Vec<(usize, usize)> = inputs
            .iter()
            .zip(&starts)
            .map(|(i, &s)| (s, i.ids.len()))
            .collect();
        let qkv = sized(qkv, n * 3 * h);
        let context = sized(context, n * h);
        let attended = sized(attended, n * h);
        let wide = sized(wide, n * self.config.intermediate_size);
        for layer in &self.layers {
            linear(x, &layer.qkv, qkv, n);
            self.attention(qkv, context, &spans);
            linear(context, &layer.attention_out, attended, n);
            add_in_place(attended, x);
            layer_norm(attended, &layer.attention_norm, h, eps);
            linear(attended, &layer.intermediate, wide, n);
            wide.par_chunks_mut(4096).for_each(kernels::gelu);
            linear(wide, &layer.output, x, n);
            add_in_place(x, attended);
            layer_norm(x, &layer.output_norm, h, eps);
        }
        Ok(spans
            .iter()
            .map(|&(start, len)| {
                let mut mean = vec![0f32; h];
                for row in x[start * h..(start + len) * h].chunks_exact(h) {
                    mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
                }
                let scale = 1.0 / len.max(1) as f32;
                mean.iter_mut().for_each(|m| *m *= scale);
                mean
            })
            .collect())
    }

    /// Softmax(Q K^T / sqrt(d)) V for every (sequence, head), written into `context`
    /// [n, H] at the head's columns.
    fn attention(&self, qkv: &[f32], context: &mut [f32], spans: &[(usize, usize)]) {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let d = h / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let out = SharedOut(context.as_mut_ptr());
        let jobs: Vec<(usize, usize, usize)> = spans
            .iter()
            .flat_map(|&(start, len)| (0..heads).map(move |head| (start, len, head)))
            .collect();
        jobs.par_iter()
            .for_each_init(Vec::new, |scores: &mut Vec<f32>, &(start, len, head)| {
                let out = &out;
                scores.resize(len * len, 0.0);
                let row = 3 * h as isize;
                let q = qkv[start * 3 * h + head * d..].as_ptr();
                let k = qkv[start * 3 * h + h + head * d..].as_ptr();
                let v = qkv[start * 3 * h + 2 * h + head * d..].as_ptr();
                // SAFETY: every pointer addresses rows start..start+len of a buffer that holds
                // them with the strides given; jobs write disjoint (rows, head columns) of
                // `context`, which outlives the parallel loop.
                unsafe {
                    gemm::gemm(
                        len,
                        len,
                        d,
                        scores.as_mut_ptr(),
                        1,
                        len as isize,
                        false,
                        q,
                        1,
                        row,
                        k,
                        row,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for r in scores.chunks_exact_mut(len) {
                    kernels::softmax(r);
                }
                unsafe {
                    gemm::gemm(
                        len,
                        d,
                        len,
                        out.0.add(start * h + head * d),
                        1,
                        h as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        len as isize,
                        v,
                        1,
                        row,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            });
    }
}

/// The output buffer of the attention jobs, shared across threads that write disjoint parts.
struct SharedOut(*mut f32);
// SAFETY: see `Bert::attention`: writes through the pointer never overlap.
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}

/// out[n, layer.out] = x[n, layer.input] W^T + b.
fn linear(x: &[f32], layer: &Linear, out: &mut [f32], n: usize) {
    let (o, i) = (layer.out, layer.input);
    assert!(x.len() >= n * i && out.len() >= n * o);
    out[..n * o]
        .par_chunks_mut(o)
        .for_each(|row| row.copy_from_slice(&layer.bias));
    // SAFETY: the sizes were checked above; W is [o, i] row-major, read as W^T [i, o].
    unsafe {
        gemm::gemm(
            n,
            o,
            i,
            out.as_mut_ptr(),
            1,
            o as isize,
            true,
            x.as_ptr(),
            1,
            i as isize,
            layer.weight.as_ptr(),
            i as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        );
    }
}

fn add_in_place(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut(4096)
        .zip(b.par_chunks(4096))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(x, y)| *x += y));
}

fn layer_norm(x: &mut [f32], norm: &Norm, h: usize, eps: f32) {
    x.par_chunks_mut(h)
        .for_each(|row| kernels::layer_norm(row, &norm.weight, &norm.bias, eps));
}

/// The element-wise kernels, compiled twice: for AVX2+FMA (chosen at run time when the CPU
/// has them) and for the baseline target. Sums run over 16 lanes so that they vectorise.
mod kernels {
    use super::{fast_exp, gelu as gelu_one};

    macro_rules! dispatch {
        ($(fn $name:ident($($arg:ident: $ty:ty),*) $body:block)*) => {$(
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            pub fn $name($($arg: $ty),*) {
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn fast($($arg: $ty),*) { generic($($arg),*) }
                    if std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                    {
                        // SAFETY: the CPU has the features `fast` was compiled for.
                        return unsafe { fast($($arg),*) };
                    }
                }
                generic($($arg),*)
            }
        )*};
    }

    #[inline(always)]
    fn sum(xs: &[f32]) -> f32 {
        let mut lanes = [0f32; 16];
        let chunks = xs.chunks_exact(16);
        let rest: f32 = chunks.remainder().iter().sum();
        for c in chunks {
            for (l, v) in lanes.iter_mut().zip(c) {
                *l += v;
            }
        }
        lanes.iter().sum::<f32>() + rest
    }

    #[inline(always)]
    fn max(xs: &[f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; 16];
        let chunks = xs.chunks_exact(16);
        let rest = chunks
            .remainder()
            .iter()
            .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
        for c in chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l = if v > *l { v } else { *l };
            }
        }
        lanes.iter().fold(rest, |a, &b| if b > a { b } else { a })
    }

    mod imp_softmax {
        use super::*;
        dispatch! {
            fn softmax(row: &mut [f32]) {
                let m = max(row);
                row.iter_mut().for_each(|v| *v = fast_exp(*v - m));
                let inv = 1.0 / sum(row);
                row.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }

    mod imp_gelu {
        use super::*;
        dispatch! {
            fn gelu(xs: &mut [f32]) {
                xs.iter_mut().for_each(|v| *v = gelu_one(*v));
            }
        }
    }

    mod imp_layer_norm {
        use super::*;
        dispatch! {
            fn layer_norm(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
                let n = row.len() as f32;
                let mean = sum(row) / n;
                row.iter_mut().for_each(|v| *v -= mean);
                let mut lanes = [0f32; 16];
                let chunks = row.chunks_exact(16);
                let rest: f32 = chunks.remainder().iter().map(|v| v * v).sum();
                for c in chunks {
                    for (l, v) in lanes.iter_mut().zip(c) {
                        *l += v * v;
                    }
                }
                let var = (lanes.iter().sum::<f32>() + rest) / n;
                let inv = 1.0 / (var + eps).sqrt();
                for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
                    *v = *v * inv * w + b;
                }
            }
        }
    }

    pub use imp_gelu::gelu;
    pub use imp_layer_norm::layer_norm;
    pub use imp_softmax::softmax;
}

/// e^x in f32 without a library call or a branch, so that loops over slices vectorise:
/// x = n ln 2 + r with |r| <= ln2/2, e^r by its Taylor series to r^6 (relative error about
/// 1e-7), 2^n put into the exponent bits. Inputs are clamped to [-87, 88].
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5 * 2^23 rounds to the nearest integer in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let exponent = (shifted.to_bits() as i32 - MAGIC.to_bits() as i32 + 127) << 23;
    p * f32::from_bits(exponent as u32)
}

/// GELU with the exact erf (BERT's `gelu`), not the tanh approximation.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7), branch-free for
/// vectorisation.
// The coefficients as published.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let magnitude = 1.0 - poly * fast_exp(-z * z);
    magnitude.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_close_to_exp() {
        for i in -800..=800 {
            let x = i as f32 * 0.1;
            let relative = (fast_exp(x) - x.exp()).abs() / x.exp();
            assert!(relative < 3e-7, "exp({x}): {relative}");
        }
    }

    #[test]
    #[allow(clippy::excessive_precision)]
    fn erf_matches_known_values() {
        // erf(0.5), erf(1), erf(2) to 9 digits (Abramowitz and Stegun, table 7.1).
        for (x, expected) in [
            (0.0, 0.0),
            (0.5, 0.520_499_878),
            (1.0, 0.842_700_793),
            (2.0, 0.995_322_265),
        ] {
            assert!((erf(x) - expected).abs() < 2e-7, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + expected).abs() < 2e-7);
        }
    }

    #[test]
    fn softmax_and_layer_norm_by_hand() {
        let mut row = [0.0f32, (2.0f32).ln()];
        kernels::softmax(&mut row);
        assert!((row[0] - 1.0 / 3.0).abs() < 1e-6 && (row[1] - 2.0 / 3.0).abs() < 1e-6);
        let norm = Norm {
            weight: vec![2.0, 2.0],
            bias: vec![1.0, 1.0],
        };
        let mut x = [1.0f32, 3.0];
        layer_norm(&mut x, &norm, 2, 0.0);
        assert_eq!(x, [-1.0, 3.0]);
    }
}
