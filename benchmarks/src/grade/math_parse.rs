//! Parses a normalised MATH answer (see [`super::math::normalize`]: no whitespace, `\frac`
//! with braces) into an [`Answer`]: an expression tree, or a container of them (tuple,
//! interval, union, unordered solution list or set, matrix), or a base-n numeral, a
//! multiple-choice letter, or text. Anything the grammar does not cover gives None and the
//! answer is compared as a string.

use std::sync::LazyLock;

use num_bigint::BigInt;
use num_rational::BigRational;
use regex::Regex;

/// An expression: numbers stay exact rationals; `decimal` marks a literal written with a
/// fractional part (`0.33`), which is compared with a tolerance against evaluated forms.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num {
        value: BigRational,
        decimal: bool,
    },
    Pi,
    /// The imaginary unit (`i` is always it in MATH answers).
    I,
    Infinity,
    Var(String),
    Add(Vec<Expr>),
    Mul(Vec<Expr>),
    Neg(Box<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    /// `\sqrt[index]{radicand}`.
    Root(Box<Expr>, Box<Expr>),
    Func(Func, Box<Expr>),
    /// `\pm x`: either sign; expanded into separate answers before comparison.
    PlusMinus(Box<Expr>),
}

/// The functions MATH answers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Sin,
    Cos,
    Tan,
    Sec,
    Csc,
    Cot,
    Arcsin,
    Arccos,
    Arctan,
    Ln,
    Log,
    Exp,
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Expr(Expr),
    /// `lhs = rhs` (a line, a plane): equal to another equation up to a non-zero factor.
    Equation(Expr, Expr),
    /// `(a, b, ...)`: ordered.
    Tuple(Vec<Answer>),
    /// `[a, b)` and the like (a parenthesised pair is a [`Answer::Tuple`]).
    Interval {
        left_closed: bool,
        lo: Expr,
        hi: Expr,
        right_closed: bool,
    },
    /// `A \cup B \cup ...`: unordered.
    Union(Vec<Answer>),
    /// A list of solutions (`1, -2`, `1 \pm \sqrt2`) or a set `\{...\}`: unordered.
    Unordered(Vec<Answer>),
    /// Rows of cells (`pmatrix`, `bmatrix`, `matrix`).
    Matrix(Vec<Vec<Expr>>),
    /// A numeral in base `base` (`4343_6`), digits upper-cased.
    Based {
        digits: String,
        base: u32,
    },
    /// A multiple-choice letter: `(C)`, `C`, `\text{(C)}`.
    Choice(char),
    /// Words, compared without case.
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Letter(char),
    /// A named variable (`\theta`).
    Named(String),
    Cmd(&'static str),
    Func(Func),
    Op(char),
    Open(char),
    Close(char),
    SetOpen,
    SetClose,
    RowSep,
}

/// Commands with a meaning here; the longest one that prefixes a command word wins, since
/// normalisation removed the spaces (`\pir` is `\pi r`).
const COMMANDS: &[&str] = &[
    "frac", "sqrt", "pi", "cdot", "times", "div", "pm", "mp", "infty", "cup", "begin", "end",
];
const FUNCS: &[(&str, Func)] = &[
    ("arcsin", Func::Arcsin),
    ("arccos", Func::Arccos),
    ("arctan", Func::Arctan),
    ("sin", Func::Sin),
    ("cos", Func::Cos),
    ("tan", Func::Tan),
    ("sec", Func::Sec),
    ("csc", Func::Csc),
    ("cot", Func::Cot),
    ("ln", Func::Ln),
    ("log", Func::Log),
    ("exp", Func::Exp),
];
const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "theta",
    "lambda",
    "mu",
    "rho",
    "sigma",
    "tau",
    "phi",
    "varphi",
    "psi",
    "omega",
];

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let mut tokens = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        let mut len = c.len_utf8();
        if c.is_ascii_digit() || c == '.' {
            len = rest
                .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
                .unwrap_or(rest.len());
            tokens.push(Tok::Num(rest[..len].to_string()));
        } else if let Some(tail) = rest.strip_prefix('\\') {
            let (token, used) = command(tail)?;
            tokens.push(token);
            len = 1 + used;
        } else if c.is_ascii_alphabetic() {
            tokens.push(Tok::Letter(c));
        } else {
            tokens.push(match c {
                '+' | '-' | '*' | '/' | '^' | '_' | '=' | ',' | '&' => Tok::Op(c),
                '(' | '[' | '{' => Tok::Open(c),
                ')' | ']' | '}' => Tok::Close(c),
                '−' => Tok::Op('-'),
                '×' | '·' => Tok::Op('*'),
                'π' => Tok::Cmd("pi"),
                '∞' => Tok::Cmd("infty"),
                '±' => Tok::Cmd("pm"),
                _ => return None,
            });
        }
        rest = &rest[len..];
    }
    Some(tokens)
}

/// The token of a backslash command (text after the backslash) and the bytes it used.
fn command(tail: &str) -> Option<(Tok, usize)> {
    match tail.chars().next()? {
        '\\' => return Some((Tok::RowSep, 1)),
        '{' => return Some((Tok::SetOpen, 1)),
        '}' => return Some((Tok::SetClose, 1)),
        _ => {}
    }
    let word_len = tail
        .find(|ch: char| !ch.is_ascii_alphabetic())
        .unwrap_or(tail.len());
    let word = &tail[..word_len];
    let functions = FUNCS.iter().map(|(name, f)| (*name, Tok::Func(*f)));
    let commands = COMMANDS.iter().map(|name| (*name, Tok::Cmd(name)));
    let greek = GREEK
        .iter()
        .map(|name| (*name, Tok::Named(name.to_string())));
    functions
        .chain(commands)
        .chain(greek)
        .filter(|(name, _)| word.starts_with(name))
        .max_by_key(|(name, _)| name.len())
        .map(|(name, token)| (token, name.len()))
}

static BASED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(-?[0-9A-Za-z]+)_\{?(\d+)\}?$").unwrap());
static CHOICE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\(?([A-E])\)?$").unwrap());
static ENVIRONMENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\(?:begin|end)\{[a-z]+\}").unwrap());
static WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^\\a-zA-Z])[a-zA-Z]{3,}").unwrap());

/// Parses a normalised answer; None when it is outside the grammar.
pub fn parse(normalized: &str) -> Option<Answer> {
    if let Some(c) = BASED.captures(normalized) {
        let base: u32 = c[2].parse().ok().filter(|b| (2..=36).contains(b))?;
        return Some(Answer::Based {
            digits: c[1].to_ascii_uppercase(),
            base,
        });
    }
    if let Some(c) = CHOICE.captures(normalized) {
        return Some(Answer::Choice(c[1].chars().next()?));
    }
    let without_environments = ENVIRONMENT.replace_all(normalized, "");
    if WORD.is_match(&without_environments) || normalized.chars().all(|c| c.is_ascii_alphabetic()) {
        let words = normalized.trim_matches(|c: char| !c.is_alphanumeric());
        return Some(Answer::Text(words.to_lowercase()));
    }
    let tokens = tokenize(normalized)?;
    let mut parser = Parser { tokens, pos: 0 };
    let answer = parser.answer()?;
    (parser.pos == parser.tokens.len()).then_some(answer)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, offset: usize) -> Option<&Tok> {
        self.tokens.get(self.pos + offset)
    }

    fn eat(&mut self, token: &Tok) -> bool {
        let hit = self.peek() == Some(token);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// `\pm` or `\mp`: either gives both signs.
    fn eat_plus_minus(&mut self) -> bool {
        self.eat(&Tok::Cmd("pm")) || self.eat(&Tok::Cmd("mp"))
    }

    fn expect(&mut self, token: &Tok) -> Option<()> {
        self.eat(token).then_some(())
    }

    /// Items separated by top-level commas: one item, or an unordered list of solutions.
    fn answer(&mut self) -> Option<Answer> {
        let mut items = self.comma_items()?;
        Some(if items.len() == 1 {
            items.pop()?
        } else {
            Answer::Unordered(items)
        })
    }

    /// One or more items separated by commas.
    fn comma_items(&mut self) -> Option<Vec<Answer>> {
        let mut items = vec![self.item()?];
        while self.eat(&Tok::Op(',')) {
            items.push(self.item()?);
        }
        Some(items)
    }

    /// An equation, a union of intervals and sets, a container, or an expression.
    fn item(&mut self) -> Option<Answer> {
        let first = self.piece()?;
        if self.eat(&Tok::Op('=')) {
            let Answer::Expr(lhs) = first else {
                return None;
            };
            return Some(Answer::Equation(lhs, self.sum()?));
        }
        let mut pieces = vec![first];
        while self.eat(&Tok::Cmd("cup")) {
            pieces.push(self.piece()?);
        }
        Some(if pieces.len() == 1 {
            pieces.pop()?
        } else {
            Answer::Union(pieces)
        })
    }

    fn piece(&mut self) -> Option<Answer> {
        match self.peek()? {
            Tok::SetOpen => {
                self.pos += 1;
                let mut items = Vec::new();
                while !self.eat(&Tok::SetClose) {
                    if !items.is_empty() {
                        self.expect(&Tok::Op(','))?;
                    }
                    items.push(self.item()?);
                }
                Some(Answer::Unordered(items))
            }
            Tok::Cmd("begin") => self.matrix(),
            Tok::Open(open @ ('(' | '[')) if self.is_container() => {
                let left_closed = *open == '[';
                self.pos += 1;
                let items = self.comma_items()?;
                let right_closed = match self.peek()? {
                    Tok::Close(')') => false,
                    Tok::Close(']') => true,
                    _ => return None,
                };
                self.pos += 1;
                if !left_closed && !right_closed {
                    return Some(Answer::Tuple(items));
                }
                let [Answer::Expr(lo), Answer::Expr(hi)] = <[Answer; 2]>::try_from(items).ok()?
                else {
                    return None;
                };
                Some(Answer::Interval {
                    left_closed,
                    lo,
                    hi,
                    right_closed,
                })
            }
            _ => Some(Answer::Expr(self.sum()?)),
        }
    }

    /// Whether the bracket at the cursor holds a top-level comma before its match, and the
    /// match ends the piece (`(1,2)(3)` is not a container).
    fn is_container(&self) -> bool {
        let mut depth = 0;
        let mut comma = false;
        for (offset, token) in self.tokens[self.pos..].iter().enumerate() {
            match token {
                Tok::Open(_) | Tok::SetOpen => depth += 1,
                Tok::Close(_) | Tok::SetClose => {
                    depth -= 1;
                    if depth == 0 {
                        let next = self.tokens.get(self.pos + offset + 1);
                        let ends = matches!(
                            next,
                            None | Some(
                                Tok::Op(',' | '=')
                                    | Tok::Cmd("cup")
                                    | Tok::Close(_)
                                    | Tok::SetClose
                            )
                        );
                        return comma && ends;
                    }
                }
                Tok::Op(',') if depth == 1 => comma = true,
                _ => {}
            }
        }
        false
    }

    /// `\begin{pmatrix} a & b \\ c & d \end{pmatrix}` (also bmatrix, matrix).
    fn matrix(&mut self) -> Option<Answer> {
        self.expect(&Tok::Cmd("begin"))?;
        let kind = self.braced_word()?;
        if !matches!(kind.as_str(), "pmatrix" | "bmatrix" | "matrix") {
            return None;
        }
        let mut rows = vec![vec![self.sum()?]];
        loop {
            if self.eat(&Tok::Op('&')) {
                rows.last_mut()?.push(self.sum()?);
            } else if self.eat(&Tok::RowSep) {
                if self.peek() == Some(&Tok::Cmd("end")) {
                    continue;
                }
                rows.push(vec![self.sum()?]);
            } else {
                break;
            }
        }
        self.expect(&Tok::Cmd("end"))?;
        (self.braced_word()? == kind).then_some(())?;
        let width = rows[0].len();
        rows.iter()
            .all(|r| r.len() == width)
            .then_some(Answer::Matrix(rows))
    }

    fn braced_word(&mut self) -> Option<String> {
        self.expect(&Tok::Open('{'))?;
        let mut word = String::new();
        while let Some(Tok::Letter(c)) = self.peek() {
            word.push(*c);
            self.pos += 1;
        }
        self.expect(&Tok::Close('}'))?;
        Some(word)
    }

    fn sum(&mut self) -> Option<Expr> {
        let mut terms = vec![self.unary()?];
        loop {
            if self.eat(&Tok::Op('+')) {
                terms.push(self.term()?);
            } else if self.eat(&Tok::Op('-')) {
                terms.push(Expr::Neg(Box::new(self.term()?)));
            } else if self.eat_plus_minus() {
                terms.push(Expr::PlusMinus(Box::new(self.term()?)));
            } else {
                break;
            }
        }
        Some(if terms.len() == 1 {
            terms.pop()?
        } else {
            Expr::Add(terms)
        })
    }

    fn unary(&mut self) -> Option<Expr> {
        if self.eat(&Tok::Op('-')) {
            return Some(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat(&Tok::Op('+')) {
            return self.unary();
        }
        if self.eat_plus_minus() {
            return Some(Expr::PlusMinus(Box::new(self.unary()?)));
        }
        self.term()
    }

    /// Factors joined by `*`, `/`, `\cdot`, `\times`, `\div` or juxtaposition; an integer
    /// followed by a proper fraction of integers is a mixed number (`1\frac{4}{5}` = 9/5).
    fn term(&mut self) -> Option<Expr> {
        let mut value = self.power()?;
        if let Some(fraction) = self.mixed_fraction(&value) {
            value = Expr::Add(vec![value, fraction]);
        }
        loop {
            if self.eat(&Tok::Op('*'))
                || self.eat(&Tok::Cmd("cdot"))
                || self.eat(&Tok::Cmd("times"))
            {
                value = mul(value, self.power()?);
            } else if self.eat(&Tok::Op('/')) || self.eat(&Tok::Cmd("div")) {
                value = Expr::Div(Box::new(value), Box::new(self.power()?));
            } else if self.starts_atom() {
                value = mul(value, self.power()?);
            } else {
                return Some(value);
            }
        }
    }

    fn mixed_fraction(&mut self, whole: &Expr) -> Option<Expr> {
        let Expr::Num {
            value,
            decimal: false,
        } = whole
        else {
            return None;
        };
        let [
            Some(Tok::Cmd("frac")),
            Some(Tok::Open('{')),
            Some(Tok::Num(n)),
            Some(Tok::Close('}')),
            Some(Tok::Open('{')),
            Some(Tok::Num(d)),
            Some(Tok::Close('}')),
        ] = [0, 1, 2, 3, 4, 5, 6].map(|i| self.peek_at(i))
        else {
            return None;
        };
        let (n, d) = (integer(n)?, integer(d)?);
        // A proper fraction (n < d, so d > 0).
        if !value.is_integer() || n >= d {
            return None;
        }
        self.pos += 7;
        Some(number(BigRational::new(n, d), false))
    }

    fn starts_atom(&self) -> bool {
        matches!(
            self.peek(),
            Some(
                Tok::Num(_)
                    | Tok::Letter(_)
                    | Tok::Named(_)
                    | Tok::Func(_)
                    | Tok::Open('(' | '{')
                    | Tok::Cmd("frac" | "sqrt" | "pi" | "infty")
            )
        )
    }

    fn power(&mut self) -> Option<Expr> {
        let base = self.atom()?;
        if !self.eat(&Tok::Op('^')) {
            return Some(base);
        }
        let exponent = self.exponent()?;
        Some(Expr::Pow(Box::new(base), Box::new(exponent)))
    }

    /// `^{...}`, `^-1`, or one character: `x^23` is x^2 times 3, as LaTeX reads it.
    fn exponent(&mut self) -> Option<Expr> {
        if self.eat(&Tok::Op('-')) {
            return Some(Expr::Neg(Box::new(self.exponent()?)));
        }
        if let Some(Tok::Num(digits)) = self.peek().cloned()
            && digits.len() > 1
        {
            self.tokens[self.pos] = Tok::Num(digits[1..].to_string());
            return Some(number(
                BigRational::from_integer(integer(&digits[..1])?),
                false,
            ));
        }
        self.atom()
    }

    /// A number, variable, command, or bracketed sum; also the argument of `\frac` and
    /// `\sqrt` (`\frac{a}{b}`, `\frac12`).
    fn atom(&mut self) -> Option<Expr> {
        let token = self.peek()?.clone();
        self.pos += 1;
        match token {
            Tok::Num(text) => Some(number(decimal(&text)?, text.contains('.'))),
            Tok::Letter('i') => Some(Expr::I),
            Tok::Letter(c) => Some(Expr::Var(self.subscripted(c.to_string())?)),
            Tok::Named(name) => Some(Expr::Var(self.subscripted(name)?)),
            Tok::Cmd("pi") => Some(Expr::Pi),
            Tok::Cmd("infty") => Some(Expr::Infinity),
            Tok::Cmd("frac") => {
                let numerator = self.atom()?;
                Some(Expr::Div(Box::new(numerator), Box::new(self.atom()?)))
            }
            Tok::Cmd("sqrt") => {
                let index = if self.eat(&Tok::Open('[')) {
                    let n = self.sum()?;
                    self.expect(&Tok::Close(']'))?;
                    n
                } else {
                    number(BigRational::from_integer(2.into()), false)
                };
                Some(Expr::Root(Box::new(index), Box::new(self.atom()?)))
            }
            Tok::Func(func) => self.function(func),
            Tok::Open(open @ ('(' | '{' | '[')) => {
                let value = self.sum()?;
                let close = match open {
                    '(' => ')',
                    '{' => '}',
                    _ => ']',
                };
                self.expect(&Tok::Close(close))?;
                Some(value)
            }
            _ => None,
        }
    }

    /// `a_1`, `x_{n}`: the subscript becomes part of the variable's name.
    fn subscripted(&mut self, mut name: String) -> Option<String> {
        if self.eat(&Tok::Op('_')) {
            let braced = self.eat(&Tok::Open('{'));
            match self.peek()?.clone() {
                Tok::Num(s) => name.push_str(&format!("_{s}")),
                Tok::Letter(c) => name.push_str(&format!("_{c}")),
                _ => return None,
            }
            self.pos += 1;
            if braced {
                self.expect(&Tok::Close('}'))?;
            }
        }
        Some(name)
    }

    /// `\sin x`, `\sin^2 x`, `\log_2 8`, `\cos(2x)`: a bare argument is the juxtaposed
    /// factors that follow (`\sin 3x` is sin(3x)).
    fn function(&mut self, func: Func) -> Option<Expr> {
        let base = if func == Func::Log && self.eat(&Tok::Op('_')) {
            Some(self.atom()?)
        } else {
            None
        };
        let exponent = if self.eat(&Tok::Op('^')) {
            Some(self.exponent()?)
        } else {
            None
        };
        let mut argument = self.power()?;
        if !matches!(self.tokens.get(self.pos - 1), Some(Tok::Close(')'))) {
            while self.starts_atom() && !matches!(self.peek(), Some(Tok::Func(_))) {
                argument = mul(argument, self.power()?);
            }
        }
        let mut value = match base {
            Some(base) => Expr::Div(
                Box::new(Expr::Func(Func::Ln, Box::new(argument))),
                Box::new(Expr::Func(Func::Ln, Box::new(base))),
            ),
            None => Expr::Func(func, Box::new(argument)),
        };
        if let Some(exponent) = exponent {
            value = Expr::Pow(Box::new(value), Box::new(exponent));
        }
        Some(value)
    }
}

fn mul(left: Expr, right: Expr) -> Expr {
    match left {
        Expr::Mul(mut factors) => {
            factors.push(right);
            Expr::Mul(factors)
        }
        other => Expr::Mul(vec![other, right]),
    }
}

fn number(value: BigRational, decimal: bool) -> Expr {
    Expr::Num { value, decimal }
}

fn integer(digits: &str) -> Option<BigInt> {
    digits.parse().ok()
}

/// A decimal literal as an exact rational (`0.35625` = 35625/100000).
fn decimal(text: &str) -> Option<BigRational> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let scale = BigInt::from(10).pow(fraction.len() as u32);
    Some(BigRational::new(integer(&digits)?, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: i64) -> Expr {
        number(BigRational::from_integer(v.into()), false)
    }

    #[test]
    fn containers_and_expressions() {
        assert!(matches!(parse("(1,2)"), Some(Answer::Tuple(v)) if v.len() == 2));
        assert!(matches!(
            parse("[2,5)"),
            Some(Answer::Interval {
                left_closed: true,
                right_closed: false,
                ..
            })
        ));
        assert!(matches!(
            parse("(a+5)(b+2)"),
            Some(Answer::Expr(Expr::Mul(_)))
        ));
        assert!(matches!(parse("1,-2"), Some(Answer::Unordered(v)) if v.len() == 2));
        assert!(
            matches!(parse(r"\{1\pm\sqrt{5},-2\}"), Some(Answer::Unordered(v)) if v.len() == 2)
        );
        assert!(matches!(parse(r"(0,9)\cup(9,36)"), Some(Answer::Union(v)) if v.len() == 2));
        assert_eq!(
            parse(r"\begin{pmatrix}-1&0\\0&-1\end{pmatrix}"),
            Some(Answer::Matrix(vec![
                vec![Expr::Neg(Box::new(n(1))), n(0)],
                vec![n(0), Expr::Neg(Box::new(n(1)))]
            ]))
        );
        assert_eq!(
            parse("4343_{6}"),
            Some(Answer::Based {
                digits: "4343".into(),
                base: 6
            })
        );
        assert_eq!(parse("(C)"), Some(Answer::Choice('C')));
        assert_eq!(parse("Evelyn"), Some(Answer::Text("evelyn".into())));
        assert!(matches!(parse("5x-7y+11z+4=0"), Some(Answer::Equation(..))));
    }

    #[test]
    fn mixed_numbers_and_exponents() {
        let Some(Answer::Expr(Expr::Add(parts))) = parse(r"1\frac{4}{5}") else {
            panic!("mixed number")
        };
        assert_eq!(parts[0], n(1));
        // An improper fraction after an integer is a product, as written.
        assert!(matches!(
            parse(r"2\frac{3}{2}"),
            Some(Answer::Expr(Expr::Mul(_)))
        ));
        assert_eq!(
            parse("x^23"),
            Some(Answer::Expr(Expr::Mul(vec![
                Expr::Pow(Box::new(Expr::Var("x".into())), Box::new(n(2))),
                n(3)
            ])))
        );
    }

    #[test]
    fn commands_split_from_following_letters() {
        assert_eq!(
            parse(r"2\pir"),
            Some(Answer::Expr(Expr::Mul(vec![
                n(2),
                Expr::Pi,
                Expr::Var("r".into())
            ])))
        );
        assert!(matches!(
            parse(r"\cotx"),
            Some(Answer::Expr(Expr::Func(Func::Cot, _)))
        ));
        assert_eq!(parse(r"\unknown{3}"), None);
        assert_eq!(parse("f(2)<f(1)"), None);
    }
}
