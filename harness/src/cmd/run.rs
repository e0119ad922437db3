//! `harness run`: the self-improvement loop, which lives in `study`.

use anyhow::Result;

use crate::study::{self, flags::RunArgs};

pub fn run(args: RunArgs) -> Result<()> {
    study::run(args)
}
