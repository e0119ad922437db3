//! `arith`: a synthetic, GSM8K-shaped task whose difficulty is its number of steps.
//!
//! Why it exists (SPEC.md): the small default model has almost no signal on the study's
//! tasks, and a loop on noise shows nothing. A problem of level L is a word problem of L
//! arithmetic steps on small whole numbers (operands up to 20, every intermediate result
//! under 100, exact division only), phrased with varied names, objects and sentences so
//! that correct solutions can differ. Its gold solution is one sentence per step with
//! GSM8K's `<<a*b=c>>` annotations and a final `#### N`, so the GSM8K grader and the
//! Distinct-Equations metric apply unchanged.
//!
//! Generation is a pure function of (seed, [`GENERATOR_VERSION`], split, level): the
//! pseudo-random generator is written here (SplitMix64) rather than taken from `rand`,
//! whose value stability across releases is not promised. Any change to the output bumps
//! the version.

use std::collections::HashSet;

use crate::problem::{Problem, ProblemMeta};

/// Bumped whenever the generated problems change.
pub const GENERATOR_VERSION: u32 = 1;
/// The seed used unless another is asked for.
pub const DEFAULT_SEED: u64 = 2407_05013;
/// Largest second operand of a step.
const MAX_OPERAND: u64 = 20;
/// Every intermediate result stays below this.
const RESULT_BOUND: u64 = 100;

/// One arith split: which levels it holds and how many problems per level.
#[derive(Debug, Clone, Copy)]
pub struct ArithSplit {
    pub name: &'static str,
    pub levels: (u8, u8),
    pub per_level: usize,
}

/// The splits, in generation order: evaluation splits first, so that the training split
/// never repeats an evaluation question.
pub const SPLITS: [ArithSplit; 3] = [
    ArithSplit {
        name: "test",
        levels: (1, 3),
        per_level: 200,
    },
    ArithSplit {
        name: "ood",
        levels: (4, 5),
        per_level: 200,
    },
    ArithSplit {
        name: "train",
        levels: (1, 3),
        per_level: 1000,
    },
];

/// The problems of one split for a seed. Every split is generated in a fixed order with a
/// shared set of seen questions, so splits never share a question.
pub fn generate(split: &str, seed: u64) -> Option<Vec<Problem>> {
    SPLITS.iter().find(|s| s.name == split)?;
    let mut seen = HashSet::new();
    for (split_index, spec) in SPLITS.iter().enumerate() {
        let mut problems = Vec::new();
        for level in spec.levels.0..=spec.levels.1 {
            let mut rng = SplitMix64::new(
                seed ^ (u64::from(GENERATOR_VERSION) << 48)
                    ^ ((split_index as u64) << 40)
                    ^ (u64::from(level) << 32),
            );
            let mut made = 0;
            while made < spec.per_level {
                let (question, solution, answer) = compose(&mut rng, level);
                if !seen.insert(question.clone()) {
                    continue;
                }
                problems.push(Problem {
                    id: format!("{}-L{level}-{made:04}", spec.name),
                    question,
                    answer: answer.to_string(),
                    solution,
                    meta: ProblemMeta {
                        level: Some(level),
                        ..ProblemMeta::default()
                    },
                });
                made += 1;
            }
        }
        if spec.name == split {
            return Some(problems);
        }
    }
    None
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (multiply-shift; the bias is below 2^-50 for these ranges).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        let span = hi - lo + 1;
        lo + ((u128::from(self.next()) * u128::from(span)) >> 64) as u64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }

    /// The second operands this operation may take on `value`.
    fn operands(self, value: u64) -> Vec<u64> {
        (2..=MAX_OPERAND)
            .filter(|&b| match self {
                Op::Add => value + b < RESULT_BOUND,
                Op::Sub => b < value,
                Op::Mul => value * b < RESULT_BOUND,
                Op::Div => b < value && value.is_multiple_of(b),
            })
            .collect()
    }

    fn apply(self, a: u64, b: u64) -> u64 {
        match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div => a / b,
        }
    }
}

struct Person {
    name: &'static str,
    /// subject, object, possessive, reflexive
    pronouns: [&'static str; 4],
}

const SHE: [&str; 4] = ["she", "her", "her", "herself"];
const HE: [&str; 4] = ["he", "him", "his", "himself"];
const THEY: [&str; 4] = ["they", "them", "their", "themselves"];

const PEOPLE: &[Person] = &[
    Person {
        name: "Mia",
        pronouns: SHE,
    },
    Person {
        name: "Noah",
        pronouns: HE,
    },
    Person {
        name: "Aisha",
        pronouns: SHE,
    },
    Person {
        name: "Liam",
        pronouns: HE,
    },
    Person {
        name: "Sofia",
        pronouns: SHE,
    },
    Person {
        name: "Mateo",
        pronouns: HE,
    },
    Person {
        name: "Chen",
        pronouns: HE,
    },
    Person {
        name: "Priya",
        pronouns: SHE,
    },
    Person {
        name: "Kofi",
        pronouns: HE,
    },
    Person {
        name: "Elena",
        pronouns: SHE,
    },
    Person {
        name: "Yuki",
        pronouns: SHE,
    },
    Person {
        name: "Omar",
        pronouns: HE,
    },
    Person {
        name: "Grace",
        pronouns: SHE,
    },
    Person {
        name: "Lucas",
        pronouns: HE,
    },
    Person {
        name: "Zara",
        pronouns: SHE,
    },
    Person {
        name: "Ivan",
        pronouns: HE,
    },
    Person {
        name: "Alex",
        pronouns: THEY,
    },
    Person {
        name: "Sam",
        pronouns: THEY,
    },
];

const OBJECTS: &[&str] = &[
    "marbles", "stickers", "apples", "pencils", "coins", "books", "cookies", "stamps", "shells",
    "cards", "toy cars", "balloons", "crayons", "beads", "eggs", "oranges", "buttons", "ribbons",
    "candles", "seeds",
];

const OPENINGS: &[&str] = &[
    "{N} has {v} {obj}.",
    "{N} starts with {v} {obj}.",
    "{N} owns {v} {obj}.",
    "At first, {N} has {v} {obj}.",
    "{N} collected {v} {obj}.",
];

const QUESTIONS: &[&str] = &[
    "How many {obj} does {N} have now?",
    "How many {obj} does {N} end up with?",
    "How many {obj} does {N} have at the end?",
    "How many {obj} are left with {N}?",
];

/// (problem sentence, solution sentence) pairs per operation; `{v}`, `{b}`, `{r}` are the
/// operands and result, `{eq}` the annotated equation `v+b=<<v+b=r>>r`.
const ADD: &[(&str, &str)] = &[
    (
        "{P} buys {b} more {obj}.",
        "After buying {b} more, {N} has {eq} {obj}.",
    ),
    (
        "Then {p} finds {b} more {obj}.",
        "Finding {b} more gives {eq} {obj}.",
    ),
    (
        "A friend gives {o} {b} more {obj}.",
        "With the gift, {N} has {eq} {obj}.",
    ),
    (
        "{P} gets {b} more {obj} as a present.",
        "{N} now has {eq} {obj}.",
    ),
];
const SUB: &[(&str, &str)] = &[
    (
        "{P} gives away {b} {obj}.",
        "After giving away {b}, {N} has {eq} {obj}.",
    ),
    (
        "Then {p} loses {b} of them.",
        "Losing {b} leaves {eq} {obj}.",
    ),
    (
        "{P} uses {b} {obj} for a project.",
        "{N} has {eq} {obj} left.",
    ),
    (
        "{P} sells {b} of {pos} {obj}.",
        "Selling {b} leaves {N} with {eq} {obj}.",
    ),
];
const MUL: &[(&str, &str)] = &[
    (
        "After a trade, {p} has {b} times as many {obj} as before.",
        "After the trade, {N} has {eq} {obj}.",
    ),
    (
        "The number of {obj} {p} has becomes {b} times as large.",
        "Multiplying by {b} gives {eq} {obj}.",
    ),
    (
        "{P} collects more until {p} has {b} times the {obj} {p} had.",
        "{N} then has {eq} {obj}.",
    ),
];
const DIV: &[(&str, &str)] = &[
    (
        "{P} splits {pos} {obj} into {b} equal groups and keeps one group.",
        "One of the {b} groups holds {eq} {obj}.",
    ),
    (
        "{P} shares the {obj} equally among {b} people, including {r_self}, and keeps {pos} share.",
        "Each share is {eq} {obj}.",
    ),
    (
        "{P} puts them into {b} equal piles and keeps just one pile.",
        "One pile has {eq} {obj}.",
    ),
];

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Makes one problem of `level` steps: (question, gold solution, answer).
fn compose(rng: &mut SplitMix64, level: u8) -> (String, String, u64) {
    let person = rng.pick(PEOPLE);
    let object = *rng.pick(OBJECTS);
    let [subject, object_pronoun, possessive, reflexive] = person.pronouns;
    let fill = |template: &str, v: u64, b: u64, eq: &str| {
        template
            .replace("{N}", person.name)
            .replace("{P}", &capitalise(subject))
            .replace("{p}", subject)
            .replace("{o}", object_pronoun)
            .replace("{pos}", possessive)
            .replace("{r_self}", reflexive)
            .replace("{obj}", object)
            .replace("{v}", &v.to_string())
            .replace("{b}", &b.to_string())
            .replace("{eq}", eq)
    };

    let mut value = rng.range(2, MAX_OPERAND);
    let opening = *rng.pick(OPENINGS);
    let mut question = vec![fill(opening, value, 0, "")];
    let mut solution = Vec::new();
    for _ in 0..level {
        let feasible: Vec<Op> = [Op::Add, Op::Sub, Op::Mul, Op::Div]
            .into_iter()
            .filter(|op| !op.operands(value).is_empty())
            .collect();
        let op = *rng.pick(&feasible);
        let b = *rng.pick(&op.operands(value));
        let result = op.apply(value, b);
        let table = match op {
            Op::Add => ADD,
            Op::Sub => SUB,
            Op::Mul => MUL,
            Op::Div => DIV,
        };
        let (ask, answer) = rng.pick(table);
        let symbol = op.symbol();
        let eq = format!("{value}{symbol}{b}=<<{value}{symbol}{b}={result}>>{result}");
        question.push(fill(ask, value, b, &eq));
        solution.push(fill(answer, value, b, &eq));
        value = result;
    }
    let ask = *rng.pick(QUESTIONS);
    question.push(fill(ask, value, 0, ""));
    solution.push(format!("#### {value}"));
    (question.join(" "), solution.join("\n"), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    #[test]
    fn same_seed_same_problems_other_seed_other_problems() {
        let a = generate("test", 7).unwrap();
        assert_eq!(a, generate("test", 7).unwrap());
        assert_ne!(a, generate("test", 8).unwrap());
    }

    #[test]
    fn splits_are_disjoint_and_levels_as_documented() {
        let test = generate("test", DEFAULT_SEED).unwrap();
        let ood = generate("ood", DEFAULT_SEED).unwrap();
        let train = generate("train", DEFAULT_SEED).unwrap();
        assert_eq!((test.len(), ood.len(), train.len()), (600, 400, 3000));
        let eval: HashSet<_> = test.iter().chain(&ood).map(|p| &p.question).collect();
        assert!(train.iter().all(|p| !eval.contains(&p.question)));
        assert!(ood.iter().all(|p| matches!(p.meta.level, Some(4 | 5))));
        assert!(train.iter().all(|p| matches!(p.meta.level, Some(1..=3))));
        assert!(generate("validation", DEFAULT_SEED).is_none());
    }

    #[test]
    fn every_step_is_small_exact_and_annotated() {
        let step = Regex::new(r"(\d+)([-+*/])(\d+)=<<(\d+)([-+*/])(\d+)=(\d+)>>(\d+)").unwrap();
        let mut ops = [0usize; 4];
        for problem in generate("ood", DEFAULT_SEED).unwrap() {
            let steps: Vec<_> = step.captures_iter(&problem.solution).collect();
            assert_eq!(steps.len(), problem.meta.level.unwrap() as usize);
            for c in steps {
                let a: u64 = c[1].parse().unwrap();
                let b: u64 = c[3].parse().unwrap();
                let r: u64 = c[7].parse().unwrap();
                assert!(b <= MAX_OPERAND && r < RESULT_BOUND && r == c[8].parse::<u64>().unwrap());
                let (i, expect) = match &c[2] {
                    "+" => (0, a + b),
                    "-" => (1, a - b),
                    "*" => (2, a * b),
                    _ => {
                        assert_eq!(a % b, 0, "inexact division in {}", problem.solution);
                        (3, a / b)
                    }
                };
                assert_eq!(r, expect);
                ops[i] += 1;
            }
            let last = problem.solution.lines().last().unwrap();
            assert_eq!(last, format!("#### {}", problem.answer));
        }
        let total: usize = ops.iter().sum();
        for count in ops {
            // Balanced proportions: every operation between 15% and 35% of all steps.
            assert!(
                count * 100 > total * 15 && count * 100 < total * 35,
                "{ops:?}"
            );
        }
    }
}
