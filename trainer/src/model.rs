//! A differentiable Llama-family decoder (RMSNorm, rotary embeddings, grouped-query
//! attention, SwiGLU, tied or untied output), trainable in full or through LoRA.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use crate::checkpoint::{LoraTensors, Weights};
use crate::config::LlamaConfig;
use crate::fused::GradSink;
use crate::lora::{Lora, LoraConfig};
use crate::ops;

/// Which parameters train.
#[derive(Debug, Clone, PartialEq)]
pub enum Tuning {
    /// Nothing trains (a reference model).
    Frozen,
    /// Every weight trains.
    Full,
    /// The base stays frozen; low-rank adapters on the target modules train.
    Lora(LoraConfig),
}

/// One projection: `x W^T (+ b) (+ dropout(x) A^T B^T * alpha / r)`.
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<Lora>,
    /// Where the fused kernel leaves the weight's gradient (full fine-tuning).
    sink: Option<GradSink>,
}

impl Linear {
    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let fused = crate::fused::applies(x);
        let mut y = match &self.lora {
            Some(lora) if fused => lora.fused_with_base(x, &self.weight, train)?,
            Some(lora) => (matmul_t(x, &self.weight)? + lora.forward(x, train)?)?,
            None if fused => crate::fused::linear(x, &self.weight, self.sink.as_ref())?,
            None => matmul_t(x, &self.weight)?,
        };
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        Ok(y)
    }

    /// The weight with the LoRA update folded in.
    fn merged_weight(&self) -> candle_core::Result<Tensor> {
        match &self.lora {
            Some(lora) => self.weight.detach() + lora.delta()?,
            None => Ok(self.weight.detach()),
        }
    }
}

/// `x W^T` for `x` `[..., in]` and `W` `[out, in]`, as one 2-D product: a broadcast batched
/// product would also work but its backward pass materialises `W`'s gradient once per batch
/// row and sums them.
pub(crate) fn matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if crate::fused::applies(x) {
        return crate::fused::linear(x, w, None);
    }
    let dims = x.dims();
    let inner = dims[dims.len() - 1];
    let rows = x.elem_count() / inner;
    let y = x.reshape((rows, inner))?.matmul(&w.t()?)?;
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("at least 1-D") = w.dim(0)?;
    y.reshape(out_dims)
}

struct Layer {
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The decoder. Weights are held in the Hugging Face layout and names.
pub struct Llama {
    config: LlamaConfig,
    embed: Param,
    layers: Vec<Layer>,
    norm: Tensor,
    /// `None` when the output projection is tied to the embedding.
    lm_head: Option<Param>,
    cos: Tensor,
    sin: Tensor,
    /// The same tables for the fused attention kernel.
    rope: crate::fused::RopeTables,
    /// Trainable parameters with their names (full weights or LoRA factors).
    trainable: Vec<(String, Var)>,
    /// For each trainable parameter, the sink where fused kernels leave its gradient.
    sinks: Vec<Option<GradSink>>,
    lora_config: Option<LoraConfig>,
}

const PROJECTIONS: &[&str] = &[
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

impl Llama {
    /// Builds the model over `weights`; `seed` initialises LoRA's `A` factors.
    pub fn new(weights: &Weights, tuning: &Tuning, seed: u64) -> Result<Self> {
        let config = weights.config.clone();
        config.validate()?;
        let full = matches!(tuning, Tuning::Full);
        let mut trainable = Vec::new();
        let mut base = Vec::new();
        let mut take = |name: &str| -> Result<Param> {
            let tensor = weights.get(name)?.clone();
            if full {
                let var = Var::from_tensor(&tensor)?;
                let sink = GradSink::default();
                let param = Param {
                    tensor: var.as_tensor().clone(),
                    sink: Some(sink.clone()),
                };
                base.push((name.to_string(), var, sink));
                Ok(param)
            } else {
                Ok(Param {
                    tensor: tensor.detach(),
                    sink: None,
                })
            }
        };
        let embed = take("model.embed_tokens.weight")?;
        let device = embed.tensor.device().clone();
        let dtype = embed.tensor.dtype();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        let mut lora_rng = crate::lora::init_rng(seed);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut linears = Vec::with_capacity(PROJECTIONS.len());
            for proj in PROJECTIONS {
                let module = format!("{p}.{proj}");
                let Param {
                    tensor: weight,
                    sink,
                } = take(&format!("{module}.weight"))?;
                let bias_name = format!("{module}.bias");
                let bias = if weights.tensors.contains_key(&bias_name) {
                    Some(take(&bias_name)?.tensor)
                } else {
                    None
                };
                let lora = match tuning {
                    Tuning::Lora(lc) if lc.targets(proj) => {
                        let (out, inp) = weight.dims2()?;
                        let lora = Lora::new(lc, inp, out, &mut lora_rng, dtype, &device)?;
                        trainable.push((format!("{module}.lora_A"), lora.a.clone()));
                        trainable.push((format!("{module}.lora_B"), lora.b.clone()));
                        Some(lora)
                    }
                    _ => None,
                };
                linears.push(Linear {
                    weight,
                    bias,
                    lora,
                    sink,
                });
            }
            let mut it = linears.into_iter();
            let mut next = || it.next().expect("seven projections");
            let (q, k, v, o, gate, up, down) =
                (next(), next(), next(), next(), next(), next(), next());
            layers.push(Layer {
                input_norm: take(&format!("{p}.input_layernorm.weight"))?.tensor,
                post_norm: take(&format!("{p}.post_attention_layernorm.weight"))?.tensor,
                q,
                k,
                v,
                o,
                gate,
                up,
                down,
            });
        }
        let norm = take("model.norm.weight")?.tensor;
        let lm_head =
            if config.tie_word_embeddings || !weights.tensors.contains_key("lm_head.weight") {
                None
            } else {
                Some(take("lm_head.weight")?)
            };
        let (cos, sin) = ops::rotary_tables(
            config.head_dim(),
            config.rope_theta,
            config.rope_scaling.as_ref(),
            config.max_position_embeddings,
            dtype,
            &device,
        )?;
        let rope = crate::fused::RopeTables {
            cos: std::sync::Arc::new(cos.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?),
            sin: std::sync::Arc::new(sin.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?),
        };
        let lora_config = match tuning {
            Tuning::Lora(lc) => Some(lc.clone()),
            _ => None,
        };
        let mut sinks: Vec<Option<GradSink>> = vec![None; trainable.len()];
        for (name, var, sink) in base {
            trainable.push((name, var));
            sinks.push(Some(sink));
        }
        if let Tuning::Lora(lc) = tuning
            && trainable.is_empty()
        {
            bail!(
                "LoRA target modules {:?} match no projection",
                lc.target_modules
            );
        }
        Ok(Llama {
            config,
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            rope,
            trainable,
            sinks,
            lora_config,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        self.embed.tensor.device()
    }

    pub fn dtype(&self) -> DType {
        self.embed.tensor.dtype()
    }

    /// The trainable parameters with their names.
    pub fn trainable(&self) -> &[(String, Var)] {
        &self.trainable
    }

    /// Final hidden states `[b, t, hidden]` for token ids `[b, t]` (u32). Sequences are
    /// right-padded: with causal attention a position never sees the padding after it.
    pub fn hidden_states(&self, tokens: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        if t > self.config.max_position_embeddings {
            bail!(
                "sequence of {t} tokens exceeds the model's {} positions",
                self.config.max_position_embeddings
            );
        }
        let c = &self.config;
        let (heads, kv_heads, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut x = if crate::fused::applies(&self.embed.tensor) {
            let ids = tokens.flatten_all()?.to_vec1::<u32>()?;
            crate::fused::embedding(&self.embed.tensor, ids, &[b, t], self.embed.sink.as_ref())?
        } else {
            self.embed
                .tensor
                .index_select(&tokens.flatten_all()?, 0)?
                .reshape((b, t, c.hidden_size))?
        };
        for layer in &self.layers {
            let h = ops::rms_norm(&x, &layer.input_norm, c.rms_norm_eps)?;
            let (q, k, v) = (
                layer.q.forward(&h, train)?,
                layer.k.forward(&h, train)?,
                layer.v.forward(&h, train)?,
            );
            let attn = if crate::fused::applies(&h) {
                let heads = crate::fused::Heads {
                    query: heads,
                    key_value: kv_heads,
                };
                crate::fused::attention(&q, &k, &v, &self.rope, heads)?
            } else {
                let split = |y: Tensor, n: usize| -> candle_core::Result<Tensor> {
                    y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()
                };
                let q = ops::rope(&split(q, heads)?, &cos, &sin)?;
                let k = ops::rope(&split(k, kv_heads)?, &cos, &sin)?;
                let k = ops::repeat_kv(&k, heads / kv_heads)?;
                let v = ops::repeat_kv(&split(v, kv_heads)?, heads / kv_heads)?;
                let probs = ops::causal_softmax(&(q.matmul(&k.t()?)? * scale)?)?;
                probs
                    .matmul(&v)?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((b, t, heads * hd))?
            };
            x = (x + layer.o.forward(&attn, train)?)?;
            let h = ops::rms_norm(&x, &layer.post_norm, c.rms_norm_eps)?;
            let gated = ops::swiglu(
                &layer.gate.forward(&h, train)?,
                &layer.up.forward(&h, train)?,
            )?;
            x = (x + layer.down.forward(&gated, train)?)?;
        }
        Ok(ops::rms_norm(&x, &self.norm, c.rms_norm_eps)?)
    }

    /// Output logits for hidden states `[..., hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(matmul_t(hidden, &self.head().tensor)?)
    }

    /// Logits `[b, t, vocab]` at every position.
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        self.logits(&self.hidden_states(tokens, false)?)
    }

    /// Log-probability of each next token: for `tokens` `[b, t]` returns `[b, t - 1]` where
    /// entry `(i, j)` is `log p(tokens[i, j + 1] | tokens[i, ..=j])`. Only positions where
    /// `mask` `[b, t - 1]` is 1 are computed; the others are 0.
    pub fn token_logprobs(&self, tokens: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let hidden = self.hidden_states(&tokens.narrow(1, 0, t - 1)?, train)?;
        let flat_mask = mask.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let positions: Vec<u32> = flat_mask
            .iter()
            .enumerate()
            .filter(|(_, m)| **m != 0)
            .map(|(i, _)| i as u32)
            .collect();
        let rows = b * (t - 1);
        if positions.is_empty() {
            return Ok(Tensor::zeros((b, t - 1), self.dtype(), self.device())?);
        }
        let index = Tensor::new(positions.as_slice(), self.device())?;
        let selected = hidden
            .reshape((rows, self.config.hidden_size))?
            .index_select(&index, 0)?;
        let targets = tokens
            .narrow(1, 1, t - 1)?
            .flatten_all()?
            .index_select(&index, 0)?;
        let head = self.head();
        let picked = if crate::fused::applies(&selected) {
            let targets = targets.to_vec1::<u32>()?;
            crate::fused::output_logprobs(&selected, &head.tensor, targets, head.sink.as_ref())?
        } else {
            ops::target_logprobs(&self.logits(&selected)?, &targets)?
        };
        // Scatter the picked values back to their positions (zeros elsewhere).
        let zeros = Tensor::zeros(rows, self.dtype(), self.device())?;
        let full = zeros.index_add(&index, &picked, 0)?;
        Ok(full.reshape((b, t - 1))?)
    }

    /// Current weights with Hugging Face names, LoRA merged in.
    pub fn merged_weights(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        out.insert(
            "model.embed_tokens.weight".into(),
            self.embed.tensor.detach(),
        );
        out.insert("model.norm.weight".into(), self.norm.detach());
        if let Some(head) = &self.lm_head {
            out.insert("lm_head.weight".into(), head.tensor.detach());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.insert(
                format!("{p}.input_layernorm.weight"),
                layer.input_norm.detach(),
            );
            out.insert(
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_norm.detach(),
            );
            for (proj, linear) in PROJECTIONS.iter().zip(layer.linears()) {
                out.insert(format!("{p}.{proj}.weight"), linear.merged_weight()?);
                if let Some(bias) = &linear.bias {
                    out.insert(format!("{p}.{proj}.bias"), bias.detach());
                }
            }
        }
        Ok(out)
    }

    /// The LoRA factors, for a PEFT adapter export. `None` when the model is not a LoRA.
    pub fn lora_tensors(&self) -> Option<LoraTensors> {
        let lc = self.lora_config.as_ref()?;
        let mut modules = BTreeMap::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (proj, linear) in PROJECTIONS.iter().zip(layer.linears()) {
                if let Some(lora) = &linear.lora {
                    modules.insert(
                        format!("model.layers.{i}.{proj}"),
                        (lora.a.as_tensor().detach(), lora.b_for_export()),
                    );
                }
            }
        }
        Some(LoraTensors {
            rank: lc.rank,
            alpha: lc.alpha,
            dropout: lc.dropout,
            target_modules: lc.target_modules.clone(),
            modules,
        })
    }

    /// The output projection: its own weight, or the embedding when tied.
    fn head(&self) -> &Param {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// The gradient of each trainable parameter (in [`Llama::trainable`]'s order) after a
    /// backward pass: what candle's store holds plus what the fused kernels left in their
    /// sinks, which this empties (call it once per backward pass).
    pub fn gradients(&self, store: &GradStore) -> Result<Vec<Option<Tensor>>> {
        self.trainable
            .iter()
            .zip(&self.sinks)
            .map(|((_, var), sink)| {
                let stored = store.get(var.as_tensor()).cloned();
                let sunk = match sink {
                    Some(sink) => sink.take(var.as_tensor())?,
                    None => None,
                };
                Ok(match (stored, sunk) {
                    (Some(a), Some(b)) => Some((a + b)?),
                    (a, b) => a.or(b),
                })
            })
            .collect()
    }

    /// Replaces trainable values (a checkpoint restore, or tests).
    pub fn set_trainable(&self, name: &str, value: &Tensor) -> Result<()> {
        let (_, var) = self
            .trainable
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("no trainable parameter {name}"))?;
        var.set(value)?;
        Ok(())
    }

    /// Starts the adapters from a trained LoRA (the previous round's `A_t`), so one adapter
    /// over the frozen base continues across rounds. Its rank and alpha must be this
    /// model's, and it must cover exactly the adapted modules.
    pub fn load_adapter(&self, adapter: &LoraTensors) -> Result<()> {
        let Some(lc) = &self.lora_config else {
            bail!("an adapter to continue needs LoRA tuning");
        };
        // Alpha as f32: a llama.cpp adapter GGUF stores it so.
        if adapter.rank != lc.rank || adapter.alpha as f32 != lc.alpha as f32 {
            bail!(
                "the adapter has rank {} and alpha {}, the settings rank {} and alpha {}",
                adapter.rank,
                adapter.alpha,
                lc.rank,
                lc.alpha
            );
        }
        let expected = self.trainable.len() / 2;
        if adapter.modules.len() != expected {
            bail!(
                "the adapter covers {} modules, the settings {expected}",
                adapter.modules.len()
            );
        }
        for (module, (a, b)) in &adapter.modules {
            self.set_trainable(&format!("{module}.lora_A"), a)?;
            self.set_trainable(&format!("{module}.lora_B"), b)?;
        }
        Ok(())
    }
}

/// A weight and, when it trains in full, the sink for its gradient.
struct Param {
    tensor: Tensor,
    sink: Option<GradSink>,
}

impl Layer {
    fn linears(&self) -> [&Linear; 7] {
        [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ]
    }
}
