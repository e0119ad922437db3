//! `harness run --config FILE.toml`: every key of the file is a long flag of `harness run`
//! (`train-limit = 300`, or `train_limit`), so the file and the command line share one
//! definition and one `--help`. A flag given on the command line wins over the file.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;

/// The command line with the config file's settings inserted as flags after `run` (those
/// the command line sets itself are left out). Other commands pass through unchanged.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some(run_at) = args.iter().position(|a| a == "run") else {
        return Ok(args);
    };
    if args[1..run_at]
        .iter()
        .any(|a| !a.to_string_lossy().starts_with('-'))
    {
        return Ok(args);
    }
    let mut config = None;
    for (i, arg) in args.iter().enumerate().skip(run_at + 1) {
        let text = arg.to_string_lossy();
        if let Some(path) = text.strip_prefix("--config=") {
            config = Some(path.to_string());
        } else if text == "--config" {
            config = args.get(i + 1).map(|p| p.to_string_lossy().to_string());
        }
    }
    let Some(path) = config else {
        return Ok(args);
    };
    let given: Vec<String> = args[run_at + 1..]
        .iter()
        .filter_map(|a| a.to_str())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect();
    let flags = flags_of(Path::new(&path), &given)?;
    let mut out = args[..=run_at].to_vec();
    out.extend(flags.into_iter().map(OsString::from));
    out.extend(args[run_at + 1..].iter().cloned());
    Ok(out)
}

/// The file's settings as flags, skipping those in `given`.
fn flags_of(path: &Path, given: &[String]) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not TOML", path.display()))?;
    let command = crate::cli::Cli::command();
    let run = command
        .find_subcommand("run")
        .context("the run subcommand")?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        let known = run
            .get_arguments()
            .any(|a| a.get_long() == Some(flag.as_str()) && flag != "config");
        if !known {
            bail!(
                "{}: key `{key}` is not a setting of `harness run` (see harness run --help)",
                path.display()
            );
        }
        if given.contains(&flag) {
            continue;
        }
        let scalar = |v: &toml::Value| -> Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => bail!(
                    "{}: key `{key}`: expected a string, number, boolean or list, found {}",
                    path.display(),
                    other.type_str()
                ),
            })
        };
        match value {
            toml::Value::Boolean(true) => flags.push(format!("--{flag}")),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let items = items.iter().map(scalar).collect::<Result<Vec<_>>>()?;
                flags.push(format!("--{flag}={}", items.join(",")));
            }
            other => flags.push(format!("--{flag}={}", scalar(other)?)),
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_with(toml: &str, args: &[&str]) -> Result<Vec<String>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("exp.toml");
        std::fs::write(&path, toml)?;
        let mut argv: Vec<OsString> = vec!["harness".into(), "run".into()];
        argv.extend(args.iter().map(OsString::from));
        argv.push(format!("--config={}", path.display()).into());
        Ok(expand(argv)?
            .into_iter()
            .map(|a| a.to_string_lossy().to_string())
            .filter(|a| !a.starts_with("--config="))
            .collect())
    }

    #[test]
    fn file_settings_become_flags_and_the_command_line_wins() {
        let got = expand_with(
            "task = \"gsm8k\"\ntrain_limit = 300\nmethod = [\"sft\", \"dpo\"]\nfull = true\nno-semantic = false\nrounds = 5\n",
            &["--rounds", "2"],
        )
        .unwrap();
        let mut got = got[2..].to_vec();
        got.sort();
        assert_eq!(
            got,
            [
                "--full",
                "--method=sft,dpo",
                "--rounds",
                "--task=gsm8k",
                "--train-limit=300",
                "2"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = expand_with("trian_limit = 3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `trian_limit` is not a setting"), "{err}");
    }
}
