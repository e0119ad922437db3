//! Evaluates a normalised MATH answer to a number, when it is one: decimals, `\frac`,
//! `\sqrt` (also `\sqrt[n]`), `\pi`, `+ - * / ^`, `\cdot`, `\times`, parentheses, braces and
//! implicit multiplication (`2\sqrt{3}`, `3\pi`). Anything else (variables, sets, text)
//! gives None, so the comparison stays a string comparison.

/// The value of an expression, or None when it is not a closed numeric expression.
pub fn evaluate(expr: &str) -> Option<f64> {
    let tokens = tokenize(expr)?;
    let mut parser = Parser { tokens, pos: 0 };
    let value = parser.sum()?;
    (parser.pos == parser.tokens.len() && value.is_finite()).then_some(value)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    Pi,
    Frac,
    Sqrt,
    Op(char),
    Open(char),
    Close(char),
}

fn tokenize(s: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[1..];
        } else if c.is_ascii_digit() || c == '.' {
            let end = rest
                .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
                .unwrap_or(rest.len());
            tokens.push(Token::Num(rest[..end].parse().ok()?));
            rest = &rest[end..];
        } else if let Some(tail) = rest.strip_prefix('\\') {
            let end = tail
                .find(|ch: char| !ch.is_ascii_alphabetic())
                .unwrap_or(tail.len());
            tokens.push(match &tail[..end] {
                "pi" => Token::Pi,
                "frac" => Token::Frac,
                "sqrt" => Token::Sqrt,
                "cdot" | "times" => Token::Op('*'),
                "div" => Token::Op('/'),
                _ => return None,
            });
            rest = &tail[end..];
        } else {
            tokens.push(match c {
                '+' | '-' | '*' | '/' | '^' => Token::Op(c),
                '(' | '{' | '[' => Token::Open(c),
                ')' | '}' | ']' => Token::Close(c),
                _ => return None,
            });
            rest = &rest[c.len_utf8()..];
        }
    }
    Some(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, token: &Token) -> bool {
        let hit = self.peek() == Some(token);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn sum(&mut self) -> Option<f64> {
        let mut value = self.product()?;
        loop {
            if self.eat(&Token::Op('+')) {
                value += self.product()?;
            } else if self.eat(&Token::Op('-')) {
                value -= self.product()?;
            } else {
                return Some(value);
            }
        }
    }

    fn product(&mut self) -> Option<f64> {
        let mut value = self.unary()?;
        loop {
            if self.eat(&Token::Op('*')) {
                value *= self.unary()?;
            } else if self.eat(&Token::Op('/')) {
                value /= self.unary()?;
            } else if matches!(
                self.peek(),
                Some(
                    Token::Num(_) | Token::Pi | Token::Frac | Token::Sqrt | Token::Open('(' | '{')
                )
            ) {
                value *= self.power()?;
            } else {
                return Some(value);
            }
        }
    }

    fn unary(&mut self) -> Option<f64> {
        if self.eat(&Token::Op('-')) {
            return self.unary().map(|v| -v);
        }
        if self.eat(&Token::Op('+')) {
            return self.unary();
        }
        self.power()
    }

    fn power(&mut self) -> Option<f64> {
        let base = self.atom()?;
        if self.eat(&Token::Op('^')) {
            let exponent = if self.eat(&Token::Op('-')) {
                -self.atom()?
            } else {
                self.atom()?
            };
            return Some(base.powf(exponent));
        }
        Some(base)
    }

    fn group(&mut self) -> Option<f64> {
        if self.eat(&Token::Open('{')) {
            let value = self.sum()?;
            self.eat(&Token::Close('}')).then_some(value)
        } else {
            self.atom()
        }
    }

    fn atom(&mut self) -> Option<f64> {
        let token = self.peek()?.clone();
        self.pos += 1;
        match token {
            Token::Num(v) => Some(v),
            Token::Pi => Some(std::f64::consts::PI),
            Token::Frac => {
                let numerator = self.group()?;
                Some(numerator / self.group()?)
            }
            Token::Sqrt => {
                let root = if self.eat(&Token::Open('[')) {
                    let n = self.sum()?;
                    self.eat(&Token::Close(']')).then_some(n)?
                } else {
                    2.0
                };
                let radicand = self.group()?;
                (radicand >= 0.0).then(|| radicand.powf(1.0 / root))
            }
            Token::Open(open) => {
                let value = self.sum()?;
                let close = if open == '(' { ')' } else { '}' };
                self.eat(&Token::Close(close)).then_some(value)
            }
            Token::Op(_) | Token::Close(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::evaluate;

    #[test]
    fn evaluates_closed_expressions() {
        let close = |e: &str, v: f64| (evaluate(e).unwrap() - v).abs() < 1e-12;
        assert!(close(r"\frac{1}{3}", 1.0 / 3.0));
        assert!(close(r"2\sqrt{3}", 2.0 * 3f64.sqrt()));
        assert!(close(r"\sqrt[3]{8}", 2.0));
        assert!(close(r"-\frac{\pi}{2}", -std::f64::consts::FRAC_PI_2));
        assert!(close("2^{10}", 1024.0));
        assert!(close(r"3\cdot4+1", 13.0));
        assert!(close("(1+2)(3)", 9.0));
    }

    #[test]
    fn refuses_what_is_not_a_number() {
        for e in ["x+1", r"\text{no}", "(1,2)", "", r"\sqrt{-1}", "1/0", "2^"] {
            assert_eq!(evaluate(e), None, "{e}");
        }
    }
}
