//! `harness prompt`: prints the prompt a problem is asked with.

use anyhow::{Context, Result, bail};
use benchmarks::{prompt::template, task};

use crate::cli::PromptArgs;

pub fn run(args: PromptArgs) -> Result<()> {
    let task = task(&args.task)?;
    let source = args.data.source();
    let splits: Vec<&str> = match &args.split {
        Some(split) => vec![split.as_str()],
        None => std::iter::once(task.eval_split)
            .chain(
                task.splits
                    .iter()
                    .map(|s| s.name)
                    .filter(|s| *s != task.eval_split),
            )
            .collect(),
    };
    for split in &splits {
        let problems = task.load(split, &source, args.data.seed)?;
        if let Some(problem) = problems.iter().find(|p| p.id == args.id) {
            let template = template(args.template.as_deref().unwrap_or(task.template))?;
            let prompt = template.render(problem, args.style.into());
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&prompt).context("encoding prompt")?
                );
            } else {
                print!("{prompt}");
                if !prompt.to_string().ends_with('\n') {
                    println!();
                }
            }
            return Ok(());
        }
    }
    bail!(
        "task `{}` has no problem `{}` in split(s) {}",
        task.name,
        args.id,
        splits.join(", ")
    )
}
