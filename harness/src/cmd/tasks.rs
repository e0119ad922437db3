//! `harness tasks`: the tasks, their splits, sizes, default `--max-tokens` and an example id.

use anyhow::Result;
use benchmarks::TASKS;

use crate::flags::DataArgs;

pub fn run(args: DataArgs) -> Result<()> {
    let source = args.source();
    println!(
        "{:<7} {:>7} {:<11} {:>6}  {:<9} {:<8} {:>10}  example id",
        "task", "version", "split", "size", "grader", "template", "max-tokens"
    );
    for task in TASKS {
        for split in task.splits {
            let problems = task.load(split.name, &source, args.seed)?;
            let grader = format!("{:?}", task.grader).to_lowercase();
            let example = problems.first().map_or("-", |p| p.id.as_str());
            println!(
                "{:<7} {:>7} {:<11} {:>6}  {:<9} {:<8} {:>10}  {}",
                task.name,
                task.version,
                split.name,
                problems.len(),
                grader,
                task.template,
                task.max_tokens,
                example
            );
        }
    }
    Ok(())
}
