//! The loop's sampling engine, pointed at one round's model at a time: the embedded
//! llama.cpp engine keeps M0 loaded and applies each LoRA round's adapter.gguf over it (a
//! fully fine-tuned round's model.gguf is loaded whole); a server is either told to load each
//! round's LoRA adapter (vLLM, `--lora-hotload`) or restarted on it by the user's
//! `--serve-hook`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use backends::{Backend, OpenAi};

use super::flags::{LoopMethod, RunArgs};
use super::setup::adapter_rounds;
use crate::engine::{make_backend, openai_config};
use crate::flags::BackendKind;
use crate::progress;
use crate::shell::run_logged;

/// A model the loop samples from.
pub struct Checkpoint<'a> {
    /// Its round (0: M0).
    pub round: u32,
    /// A name unique within the run, such as `r1` or `dpo-r2`.
    pub label: String,
    /// Its folder (model.gguf, adapter/, hf/); None for M0.
    pub folder: Option<&'a Path>,
}

impl<'a> Checkpoint<'a> {
    /// M_round of `method` in `folder` (None: M0), named `m0`, `r1` (shared by the methods)
    /// or `<method>-r<t>`.
    pub fn new(round: u32, method: LoopMethod, folder: Option<&'a Path>) -> Self {
        let label = match (round, folder) {
            (_, None) => "m0".to_string(),
            (1, Some(_)) => "r1".to_string(),
            (_, Some(_)) => format!("{}-r{round}", method.name()),
        };
        Checkpoint {
            round,
            label,
            folder,
        }
    }
}

/// How a server is switched to a round's model.
enum Switch {
    /// vLLM runtime adapters; the adapter loaded now, if any.
    Hotload { loaded: Option<String> },
    /// The user's command restarts the server on the checkpoint.
    Hook { cmd: String, timeout: Duration },
}

enum Kind {
    /// None after `release`.
    Embedded(Option<Box<dyn Backend>>),
    Server(Box<OpenAi>, Switch),
}

pub struct Engine<'a> {
    kind: Kind,
    /// The GGUF the embedded engine has loaded (M0, or a full round's model).
    loaded: Option<PathBuf>,
    /// The label of the checkpoint served now.
    current: Option<String>,
    args: &'a RunArgs,
    m0: PathBuf,
    /// Prefix of served names (the run directory's name), and where hook output goes.
    run_name: String,
    run_dir: PathBuf,
}

impl<'a> Engine<'a> {
    /// The engine of `args`, not yet pointed at a model. A server is not contacted until a
    /// checkpoint is asked for (a hook may start it).
    pub fn new(args: &'a RunArgs, m0: PathBuf, run_dir: &Path) -> Result<Self> {
        let kind = match args.backend {
            BackendKind::Llamacpp => Kind::Embedded(None),
            BackendKind::Openai => {
                let switch = match (&args.serving.serve_hook, args.serving.lora_hotload) {
                    (Some(_), true) => bail!("give --lora-hotload or --serve-hook, not both"),
                    (Some(cmd), false) => Switch::Hook {
                        cmd: cmd.clone(),
                        timeout: Duration::from_secs_f64(args.serving.serve_timeout),
                    },
                    (None, true) => {
                        if args.training.settings.full {
                            bail!(
                                "--lora-hotload serves LoRA adapters over M0; a fully fine-tuned \
                                 model needs a restart (--serve-hook CMD)"
                            );
                        }
                        Switch::Hotload { loaded: None }
                    }
                    (None, false) => bail!(
                        "harness run --backend openai needs a way to serve each round's model: \
                         --lora-hotload (vLLM loads each round's LoRA adapter at run time) or \
                         --serve-hook CMD (your command restarts the server on the checkpoint); \
                         see the README"
                    ),
                };
                let served = served_m0(args, &m0);
                let backend = OpenAi::unchecked(openai_config(&args.openai, &served)?)?;
                Kind::Server(Box::new(backend), switch)
            }
        };
        let run_name = sanitize(
            &run_dir
                .file_name()
                .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned()),
        );
        Ok(Engine {
            kind,
            loaded: None,
            current: None,
            args,
            m0,
            run_name,
            run_dir: run_dir.to_path_buf(),
        })
    }

    /// The backend, serving `checkpoint`.
    pub fn with(&mut self, checkpoint: &Checkpoint) -> Result<&mut dyn Backend> {
        let fresh = self.current.as_deref() != Some(checkpoint.label.as_str());
        if fresh {
            progress::phase(&format!("serving {}", self.describe(checkpoint)));
            self.switch(checkpoint)?;
            self.current = Some(checkpoint.label.clone());
        }
        Ok(match &mut self.kind {
            Kind::Embedded(backend) => backend
                .as_mut()
                .context("the embedded engine has no model loaded")?
                .as_mut(),
            Kind::Server(backend, _) => backend.as_mut(),
        })
    }

    fn describe(&self, checkpoint: &Checkpoint) -> String {
        match checkpoint.folder {
            Some(folder) if matches!(self.kind, Kind::Embedded(_)) && adapter_rounds(self.args) => {
                format!("M0 + {}", folder.join("adapter.gguf").display())
            }
            Some(folder) => folder.display().to_string(),
            None => format!("M0 ({})", self.m0.display()),
        }
    }

    fn switch(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let gguf = match checkpoint.folder {
            Some(folder) => folder.join("model.gguf"),
            None => self.m0.clone(),
        };
        let served_name = format!("{}-{}", self.run_name, checkpoint.label);
        let hook_env = match &self.kind {
            Kind::Server(_, Switch::Hook { .. }) => self.hook_env(checkpoint, &gguf, &served_name),
            _ => Vec::new(),
        };
        let log = self.run_dir.join("serve-hook.log");
        let (m0_served, args) = (served_m0(self.args, &self.m0), self.args);
        match &mut self.kind {
            Kind::Embedded(slot) => {
                // A LoRA round: M0 stays loaded and the round's adapter is applied over it.
                let (base, adapter) = match checkpoint.folder {
                    Some(folder) if adapter_rounds(args) => {
                        (self.m0.clone(), Some(folder.join("adapter.gguf")))
                    }
                    _ => (gguf, None),
                };
                let backend = match slot {
                    Some(backend) if self.loaded.as_ref() == Some(&base) => backend,
                    Some(backend) => {
                        backend.load_checkpoint(&base)?;
                        backend
                    }
                    None => slot.insert(make_backend(
                        BackendKind::Llamacpp,
                        Some(&base.to_string_lossy()),
                        &args.llamacpp,
                        &args.openai,
                    )?),
                };
                self.loaded = Some(base);
                backend.set_adapter(adapter.as_deref())?;
            }
            Kind::Server(backend, Switch::Hook { cmd, timeout }) => {
                run_logged("--serve-hook", cmd, &hook_env, &log, Some(*timeout))?;
                backend.serve(&served_name, *timeout).with_context(|| {
                    format!(
                        "after --serve-hook, the server did not serve `{served_name}` (the hook \
                         must start it with that model name: llama-server --alias \
                         \"$HARNESS_SERVED_MODEL\", vLLM --served-model-name); hook output in {}",
                        log.display()
                    )
                })?;
            }
            Kind::Server(backend, Switch::Hotload { loaded }) => {
                let target = match checkpoint.folder {
                    None => m0_served,
                    Some(folder) => {
                        let adapter = std::path::absolute(folder.join("adapter"))?;
                        if !adapter.join("adapter_config.json").exists() {
                            bail!("{}: no PEFT adapter to load", adapter.display());
                        }
                        let adapter = server_path(&adapter, &self.args.serving.adapter_path_map)?;
                        backend
                            .load_lora_adapter(&served_name, &adapter)
                            .map_err(|e| refusal(e, &m0_served, args))?;
                        served_name.clone()
                    }
                };
                backend.serve(&target, Duration::from_secs(60))?;
                if let Some(previous) = loaded.take().filter(|p| *p != target)
                    && let Err(e) = backend.unload_lora_adapter(&previous)
                {
                    // vLLM before its API-only adapter registry answers 500 when its worker
                    // already evicted the adapter (max_cpu_loras defaults to max_loras, 1);
                    // the adapter is then gone, and an adapter left loaded costs memory,
                    // not correctness: sampling names its adapter on every request.
                    tracing::warn!("could not unload adapter {previous} (going on): {e}");
                }
                if checkpoint.folder.is_some() {
                    *loaded = Some(target);
                }
            }
        }
        Ok(())
    }

    /// The environment of `--serve-hook` (documented in the README).
    fn hook_env(
        &self,
        checkpoint: &Checkpoint,
        gguf: &Path,
        served: &str,
    ) -> Vec<(String, String)> {
        let part = |name: &str| {
            checkpoint
                .folder
                .map(|f| f.join(name))
                .filter(|p| p.exists())
                .and_then(|p| std::path::absolute(p).ok())
                .map_or_else(String::new, |p| p.display().to_string())
        };
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        vec![
            ("HARNESS_ROUND".into(), checkpoint.round.to_string()),
            ("HARNESS_CHECKPOINT".into(), checkpoint.label.clone()),
            ("HARNESS_SERVED_MODEL".into(), served.into()),
            ("HARNESS_GGUF".into(), abs(gguf).display().to_string()),
            ("HARNESS_ADAPTER".into(), part("adapter")),
            ("HARNESS_HF".into(), part("hf")),
            (
                "HARNESS_BASE_MODEL".into(),
                abs(&self.m0).display().to_string(),
            ),
        ]
    }

    /// M0's identity for the manifest: the embedded engine's GGUF name and sha256 (M0 is
    /// loaded for it), a server's name for M0.
    pub fn identity(&mut self) -> Result<String> {
        match self.kind {
            Kind::Embedded(_) => {
                let m0 = Checkpoint::new(0, LoopMethod::Sft, None);
                Ok(self.with(&m0)?.model_id())
            }
            Kind::Server(..) => Ok(served_m0(self.args, &self.m0)),
        }
    }

    /// Frees the embedded engine's model before training when `--low-memory` is given.
    pub fn release(&mut self) {
        if let (true, Kind::Embedded(slot)) = (self.args.low_memory, &mut self.kind) {
            *slot = None;
            self.loaded = None;
            self.current = None;
        }
    }
}

/// The identity of M0 in the manifest: the GGUF's short sha256 for the embedded engine
/// (through a loaded backend), the served name for a server.
pub(super) fn served_m0(args: &RunArgs, m0: &Path) -> String {
    args.serving
        .served_model
        .clone()
        .unwrap_or_else(|| m0.display().to_string())
}

/// vLLM's refusal to load an adapter, with how to start it so that it accepts.
fn refusal(error: backends::BackendError, m0: &str, args: &RunArgs) -> anyhow::Error {
    anyhow::anyhow!(
        "the server refused to load the round's LoRA adapter: {error}\n\
         --lora-hotload needs vLLM started with runtime adapter loading on, for example:\n  \
         VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve {m0} --enable-lora --max-lora-rank {}",
        args.training.settings.lora_rank.next_power_of_two().max(8)
    )
}

/// A served-model name from a directory name: letters, digits, `.`, `_` and `-`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                true => c,
                false => '_',
            },
        )
        .collect()
}

/// Where the server finds `adapter`: the path itself, or with --adapter-path-map's LOCAL
/// prefix replaced by REMOTE.
fn server_path(adapter: &Path, map: &Option<(PathBuf, String)>) -> Result<PathBuf> {
    let Some((local, remote)) = map else {
        return Ok(adapter.to_path_buf());
    };
    let rest = adapter.strip_prefix(local).map_err(|_| {
        anyhow::anyhow!(
            "--adapter-path-map: the adapter {} is not under {}",
            adapter.display(),
            local.display()
        )
    })?;
    Ok(Path::new(remote).join(rest))
}
