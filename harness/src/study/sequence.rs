//! The round sequence, as SPEC.md's Algorithm 1 reads: M1 = SFT(M0 on the gold pairs); then
//! for t = 2..T, for each method F: M_t = F(M_{t-1} on D_t), where D_t comes from M_{t-1}'s
//! graded samples of the training questions; every model is evaluated and each method's
//! reports are rewritten after each of its rounds.

use std::time::Instant;

use anyhow::Result;

use super::serve::Engine;
use super::setup::Loop;

impl Loop<'_> {
    /// Runs (or continues) the loop to its last round.
    pub(super) fn execute(mut self, engine: &mut Engine) -> Result<()> {
        let started = Instant::now();
        let methods = self.args.method.clone();
        let first = methods[0];
        // Round 0 (--eval-base): M0 as it is.
        if self.args.eval_base {
            self.sample_round(engine, None, first, 0)?;
        }
        // Round 1, shared by the methods: M1 = SFT(M0 on the gold pairs), evaluated, and its
        // samples of the training questions graded (what D_2 is built from).
        let m1 = self.m1(engine)?;
        self.sample_round(engine, Some(&m1), first, 1)?;
        for &method in &methods {
            self.report(method, 1)?;
        }
        // Rounds t = 2..T of each method F: D_t from M_{t-1}'s graded samples,
        // M_t = F(M_{t-1} on D_t), then M_t evaluated (and, before T, sampled). A round
        // trained as an earlier method's (SFT-DPO's round 2 is DPO's) is that round, linked.
        for round in 2..=self.args.rounds {
            for &method in &methods {
                let linked = match self.settings.shared_round(method, round) {
                    Some(owner) => self.dir.link_round(owner, method, round)?,
                    None => false,
                };
                if !linked {
                    let model = self.train_round(engine, method, round)?;
                    self.sample_round(engine, Some(&model), method, round)?;
                }
                self.report(method, round)?;
            }
        }
        self.phases.print(started.elapsed().as_secs_f64());
        for &method in &methods {
            println!(
                "{}: reports in {}",
                method.name(),
                self.dir.reports(method).display()
            );
        }
        Ok(())
    }
}
