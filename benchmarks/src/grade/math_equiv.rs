//! Equivalence of two parsed MATH answers. Containers compare structurally (tuples and
//! matrices in order, solution lists, sets and unions in any order); two expressions are
//! equal by exact rational arithmetic when both are rational numbers, else numerically:
//! closed forms (roots, pi, i) by their complex values, expressions with variables by their
//! values at seeded random points (numeric identity testing). A decimal literal (`0.333`)
//! is an approximation, so it is compared with a relative tolerance against a value that
//! had to be evaluated; two plain numbers never are (13536 is not 13535).

use std::collections::{BTreeMap, BTreeSet};

use num_bigint::BigInt;
use num_complex::Complex64;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::math_parse::{Answer, Expr, Func};

/// Relative tolerance when a decimal literal meets an evaluated value.
pub const DECIMAL_TOLERANCE: f64 = 1e-4;
/// Relative tolerance between two evaluated closed forms (floating-point noise only).
const EXACT_FORM_TOLERANCE: f64 = 1e-9;
/// Points at which expressions with variables are compared, and the seed that draws them.
const POINTS: usize = 8;
const POINT_SEED: u64 = 0x4d41_5448;

/// Whether two answers are equal, and the rule that decided.
pub fn compare(a: Answer, b: Answer) -> (bool, &'static str) {
    compare_expanded(&expand(a), &expand(b))
}

fn compare_expanded(a: &Answer, b: &Answer) -> (bool, &'static str) {
    use Answer::*;
    match (a, b) {
        (Expr(x), Expr(y)) => expressions(x, y),
        (Equation(l1, r1), Equation(l2, r2)) => (equations(l1, r1, l2, r2), "equation"),
        (Tuple(xs), Tuple(ys)) => (ordered(xs, ys), "tuple"),
        (
            Interval {
                left_closed: lc1,
                lo: lo1,
                hi: hi1,
                right_closed: rc1,
            },
            Interval {
                left_closed: lc2,
                lo: lo2,
                hi: hi2,
                right_closed: rc2,
            },
        ) => {
            let same =
                lc1 == lc2 && rc1 == rc2 && expressions(lo1, lo2).0 && expressions(hi1, hi2).0;
            (same, "interval")
        }
        (Union(xs), Union(ys)) => (unordered(xs, ys), "union"),
        (Unordered(xs), Unordered(ys)) => (unordered(xs, ys), "unordered"),
        (Matrix(m1), Matrix(m2)) => {
            let same = m1.len() == m2.len()
                && m1.iter().zip(m2).all(|(r1, r2)| {
                    r1.len() == r2.len() && r1.iter().zip(r2).all(|(x, y)| expressions(x, y).0)
                });
            (same, "matrix")
        }
        (Matrix(m), Tuple(t)) | (Tuple(t), Matrix(m)) => (vector(m, t), "vector"),
        (
            Based {
                digits: d1,
                base: b1,
            },
            Based {
                digits: d2,
                base: b2,
            },
        ) => (d1 == d2 && b1 == b2, "base"),
        (Based { digits, .. }, Expr(e)) | (Expr(e), Based { digits, .. }) => (
            integer_literal(e).is_some_and(|n| &n == digits),
            "base-digits",
        ),
        (Choice(x), Choice(y)) => (x == y, "choice"),
        (Text(x), Text(y)) => (x == y, "text"),
        _ => (false, "structure"),
    }
}

/// `\pm` written out: an expression with k `\pm` becomes the unordered list of its 2^k
/// values, and lists absorb their members' lists (`1\pm\sqrt2, 3` has three solutions).
fn expand(answer: Answer) -> Answer {
    match answer {
        Answer::Expr(e) if has_plus_minus(&e) => {
            Answer::Unordered(signs(&e).into_iter().map(Answer::Expr).collect())
        }
        Answer::Unordered(items) => {
            let mut flat = Vec::new();
            for item in items {
                match expand(solved_for(item)) {
                    Answer::Unordered(inner) => flat.extend(inner),
                    other => flat.push(other),
                }
            }
            Answer::Unordered(flat)
        }
        Answer::Tuple(items) => Answer::Tuple(items.into_iter().map(expand).collect()),
        Answer::Union(items) => Answer::Union(items.into_iter().map(expand).collect()),
        other => other,
    }
}

/// In a list of solutions, `x = 1` is the solution 1.
fn solved_for(item: Answer) -> Answer {
    match item {
        Answer::Equation(Expr::Var(name), value) if !variables(&value).contains(&name) => {
            Answer::Expr(value)
        }
        other => other,
    }
}

fn has_plus_minus(e: &Expr) -> bool {
    let mut found = false;
    visit(e, &mut |node| found |= matches!(node, Expr::PlusMinus(_)));
    found
}

/// Every choice of signs of an expression's `\pm` (at most 2^4 of them).
fn signs(e: &Expr) -> Vec<Expr> {
    let rebuild = |parts: Vec<Vec<Expr>>, make: &dyn Fn(Vec<Expr>) -> Expr| -> Vec<Expr> {
        let mut combos: Vec<Vec<Expr>> = vec![Vec::new()];
        for options in parts {
            combos = combos
                .into_iter()
                .flat_map(|prefix| {
                    options.iter().map(move |o| {
                        let mut next = prefix.clone();
                        next.push(o.clone());
                        next
                    })
                })
                .take(16)
                .collect();
        }
        combos.into_iter().map(make).collect()
    };
    match e {
        Expr::PlusMinus(x) => {
            let mut out = signs(x);
            let negated: Vec<Expr> = out.iter().map(|v| Expr::Neg(Box::new(v.clone()))).collect();
            out.extend(negated);
            out
        }
        Expr::Add(xs) => rebuild(xs.iter().map(signs).collect(), &Expr::Add),
        Expr::Mul(xs) => rebuild(xs.iter().map(signs).collect(), &Expr::Mul),
        Expr::Neg(x) => signs(x)
            .into_iter()
            .map(|v| Expr::Neg(Box::new(v)))
            .collect(),
        Expr::Div(x, y) => rebuild(vec![signs(x), signs(y)], &|v| pair(v, Expr::Div)),
        Expr::Pow(x, y) => rebuild(vec![signs(x), signs(y)], &|v| pair(v, Expr::Pow)),
        Expr::Root(x, y) => rebuild(vec![signs(x), signs(y)], &|v| pair(v, Expr::Root)),
        Expr::Func(f, x) => signs(x)
            .into_iter()
            .map(|v| Expr::Func(*f, Box::new(v)))
            .collect(),
        leaf => vec![leaf.clone()],
    }
}

fn pair(mut v: Vec<Expr>, make: fn(Box<Expr>, Box<Expr>) -> Expr) -> Expr {
    let second = v.pop().expect("two parts");
    let first = v.pop().expect("two parts");
    make(Box::new(first), Box::new(second))
}

fn visit(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Add(xs) | Expr::Mul(xs) => xs.iter().for_each(|x| visit(x, f)),
        Expr::Neg(x) | Expr::Func(_, x) | Expr::PlusMinus(x) => visit(x, f),
        Expr::Div(x, y) | Expr::Pow(x, y) | Expr::Root(x, y) => {
            visit(x, f);
            visit(y, f);
        }
        _ => {}
    }
}

fn ordered(xs: &[Answer], ys: &[Answer]) -> bool {
    xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| compare_expanded(x, y).0)
}

/// A one-to-one matching of equal items, in any order.
fn unordered(xs: &[Answer], ys: &[Answer]) -> bool {
    if xs.len() != ys.len() {
        return false;
    }
    let mut used = vec![false; ys.len()];
    xs.iter().all(|x| {
        let hit = (0..ys.len()).find(|&j| !used[j] && compare_expanded(x, &ys[j]).0);
        hit.map(|j| used[j] = true).is_some()
    })
}

/// A one-row or one-column matrix against a tuple of the same entries.
fn vector(m: &[Vec<Expr>], t: &[Answer]) -> bool {
    let entries: Vec<&Expr> = if m.len() == 1 {
        m[0].iter().collect()
    } else if m.iter().all(|row| row.len() == 1) {
        m.iter().map(|row| &row[0]).collect()
    } else {
        return false;
    };
    entries.len() == t.len()
        && entries
            .iter()
            .zip(t)
            .all(|(x, y)| matches!(y, Answer::Expr(y) if expressions(x, y).0))
}

fn integer_literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Num {
            value,
            decimal: false,
        } if value.is_integer() => Some(value.to_integer().to_string()),
        _ => None,
    }
}

fn infinity_sign(e: &Expr) -> Option<i8> {
    match e {
        Expr::Infinity => Some(1),
        Expr::Neg(x) => infinity_sign(x).map(|s| -s),
        _ => None,
    }
}

fn variables(e: &Expr) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    visit(e, &mut |node| {
        if let Expr::Var(name) = node {
            names.insert(name.clone());
        }
    });
    names
}

fn has_decimal(e: &Expr) -> bool {
    let mut found = false;
    visit(e, &mut |node| {
        found |= matches!(node, Expr::Num { decimal: true, .. })
    });
    found
}

fn is_literal(e: &Expr) -> bool {
    match e {
        Expr::Num { .. } => true,
        Expr::Neg(x) => is_literal(x),
        _ => false,
    }
}

/// Two expressions: exact, numeric, or by identity testing when they have variables.
fn expressions(x: &Expr, y: &Expr) -> (bool, &'static str) {
    if let (Some(sx), Some(sy)) = (infinity_sign(x), infinity_sign(y)) {
        return (sx == sy, "infinity");
    }
    let decimal = has_decimal(x) || has_decimal(y);
    let tolerance = if decimal {
        DECIMAL_TOLERANCE
    } else {
        EXACT_FORM_TOLERANCE
    };
    let names = variables(x);
    if names != variables(y) {
        return (false, "identity");
    }
    if names.is_empty() {
        if let (Some(ex), Some(ey)) = (exact(x), exact(y)) {
            if ex == ey {
                return (true, "numeric-exact");
            }
            if !decimal || is_literal(x) && is_literal(y) {
                return (false, "numeric-exact");
            }
            let close = match (ex.to_f64(), ey.to_f64()) {
                (Some(a), Some(b)) => close(a.into(), b.into(), tolerance),
                _ => false,
            };
            return (close, "numeric-tolerance");
        }
        let env = BTreeMap::new();
        let same = match (numeric(x, &env), numeric(y, &env)) {
            (Some(a), Some(b)) => close(a, b, tolerance),
            _ => false,
        };
        return (same, "numeric");
    }
    let mut agreed = 0;
    for env in points(&names) {
        match (numeric(x, &env), numeric(y, &env)) {
            (Some(a), Some(b)) if close(a, b, tolerance) => agreed += 1,
            (Some(_), Some(_)) => return (false, "identity"),
            _ => {}
        }
    }
    (agreed >= POINTS / 2, "identity")
}

/// Two equations describe the same set when lhs - rhs agree up to a non-zero factor.
fn equations(l1: &Expr, r1: &Expr, l2: &Expr, r2: &Expr) -> bool {
    let d1 = Expr::Add(vec![l1.clone(), Expr::Neg(Box::new(r1.clone()))]);
    let d2 = Expr::Add(vec![l2.clone(), Expr::Neg(Box::new(r2.clone()))]);
    let names = variables(&d1);
    if names.is_empty() || names != variables(&d2) {
        return false;
    }
    let mut factor: Option<Complex64> = None;
    let mut agreed = 0;
    for env in points(&names) {
        let (Some(a), Some(b)) = (numeric(&d1, &env), numeric(&d2, &env)) else {
            continue;
        };
        if b.norm() < 1e-12 {
            if a.norm() >= 1e-12 {
                return false;
            }
            continue;
        }
        let ratio = a / b;
        match factor {
            None if ratio.norm() > 1e-12 => factor = Some(ratio),
            None => return false,
            Some(k) if close(ratio, k, EXACT_FORM_TOLERANCE) => {}
            Some(_) => return false,
        }
        agreed += 1;
    }
    agreed >= POINTS / 2
}

fn close(a: Complex64, b: Complex64, tolerance: f64) -> bool {
    (a - b).norm() <= tolerance * a.norm().max(b.norm()) + 1e-12
}

/// Seeded points, each variable drawn from [0.5, 2.5) (positive: `\sqrt{x^2}` is x there).
fn points(names: &BTreeSet<String>) -> Vec<BTreeMap<String, f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(POINT_SEED);
    (0..POINTS)
        .map(|_| {
            names
                .iter()
                .map(|name| (name.clone(), rng.random_range(0.5..2.5)))
                .collect()
        })
        .collect()
}

/// The exact value of a rational expression (no variables, pi, i or irrational roots).
fn exact(e: &Expr) -> Option<BigRational> {
    Some(match e {
        Expr::Num { value, .. } => value.clone(),
        Expr::Add(xs) => xs
            .iter()
            .try_fold(BigRational::zero(), |acc, x| Some(acc + exact(x)?))?,
        Expr::Mul(xs) => xs
            .iter()
            .try_fold(BigRational::one(), |acc, x| Some(acc * exact(x)?))?,
        Expr::Neg(x) => -exact(x)?,
        Expr::Div(x, y) => {
            let denominator = exact(y)?;
            if denominator.is_zero() {
                return None;
            }
            exact(x)? / denominator
        }
        Expr::Pow(x, y) => {
            let (base, exponent) = (exact(x)?, exact(y)?);
            let root = exponent.denom().to_u32().filter(|q| *q <= 16)?;
            let power = exponent.numer().to_i32().filter(|p| p.abs() <= 4096)?;
            let radical = nth_root(&base, root)?;
            if power < 0 && radical.is_zero() {
                return None;
            }
            num_traits::pow::Pow::pow(radical, power)
        }
        Expr::Root(index, x) => {
            let n = exact(index)?;
            let n = n.is_integer().then(|| n.to_integer().to_u32()).flatten();
            nth_root(&exact(x)?, n.filter(|n| (1..=16).contains(n))?)?
        }
        _ => return None,
    })
}

/// The exact n-th root of a rational, when numerator and denominator are perfect powers.
fn nth_root(value: &BigRational, n: u32) -> Option<BigRational> {
    if n == 1 {
        return Some(value.clone());
    }
    if value.is_negative() {
        return (n % 2 == 1)
            .then(|| nth_root(&-value, n))
            .flatten()
            .map(|r| -r);
    }
    let root = |x: &BigInt| {
        let r = x.nth_root(n);
        (r.pow(n) == *x).then_some(r)
    };
    Some(BigRational::new(root(value.numer())?, root(value.denom())?))
}

/// The complex value of an expression at a point (None where undefined or not finite).
fn numeric(e: &Expr, env: &BTreeMap<String, f64>) -> Option<Complex64> {
    let value = match e {
        Expr::Num { value, .. } => Complex64::new(value.to_f64()?, 0.0),
        Expr::Pi => std::f64::consts::PI.into(),
        Expr::I => Complex64::i(),
        Expr::Var(name) => (*env.get(name)?).into(),
        Expr::Add(xs) => xs
            .iter()
            .try_fold(Complex64::zero(), |acc, x| Some(acc + numeric(x, env)?))?,
        Expr::Mul(xs) => xs
            .iter()
            .try_fold(Complex64::one(), |acc, x| Some(acc * numeric(x, env)?))?,
        Expr::Neg(x) => -numeric(x, env)?,
        Expr::Div(x, y) => numeric(x, env)? / numeric(y, env)?,
        Expr::Pow(x, y) => {
            let (base, exponent) = (numeric(x, env)?, numeric(y, env)?);
            if exponent.im == 0.0 && exponent.re.fract() == 0.0 && exponent.re.abs() < 1e6 {
                base.powi(exponent.re as i32)
            } else {
                base.powc(exponent)
            }
        }
        Expr::Root(index, x) => {
            let (n, radicand) = (numeric(index, env)?, numeric(x, env)?);
            let odd = n.im == 0.0 && n.re.fract() == 0.0 && n.re as i64 % 2 != 0;
            if odd && radicand.im == 0.0 && radicand.re < 0.0 {
                Complex64::from(-(-radicand.re).powf(1.0 / n.re))
            } else {
                radicand.powc(n.inv())
            }
        }
        Expr::Func(f, x) => function(*f, numeric(x, env)?),
        Expr::Infinity | Expr::PlusMinus(_) => return None,
    };
    (value.re.is_finite() && value.im.is_finite()).then_some(value)
}

fn function(f: Func, x: Complex64) -> Complex64 {
    match f {
        Func::Sin => x.sin(),
        Func::Cos => x.cos(),
        Func::Tan => x.tan(),
        Func::Sec => x.cos().inv(),
        Func::Csc => x.sin().inv(),
        Func::Cot => x.tan().inv(),
        Func::Arcsin => x.asin(),
        Func::Arccos => x.acos(),
        Func::Arctan => x.atan(),
        Func::Ln | Func::Log => x.ln(),
        Func::Exp => x.exp(),
    }
}
