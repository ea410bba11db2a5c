//! Recursive-descent parser from tokens to [`Expr`], enforcing the size limits.
//!
//! Only parentheses and `not` recurse, and both count against the depth limit before recursing, so hostile
//! input cannot exhaust the stack; `and`/`or` chains are built in loops.

use super::lexer::{Lexer, Token, TokenKind, is_reserved, snippet};
use super::{Expr, MAX_DEPTH, MAX_INPUT_BYTES, MAX_TERMS, ParseError, label};

/// The limits [`super::parse`] enforces; tests lift some of them to reach the others.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) input_bytes: usize,
    pub(super) depth: usize,
    pub(super) terms: usize,
}

impl Limits {
    pub(super) const DEFAULT: Limits = Limits {
        input_bytes: MAX_INPUT_BYTES,
        depth: MAX_DEPTH,
        terms: MAX_TERMS,
    };
}

pub(super) fn parse(input: &str, limits: Limits) -> Result<Expr, ParseError> {
    if input.len() > limits.input_bytes {
        // Point at the first character that does not fit.
        let fits = input
            .char_indices()
            .take_while(|(i, c)| i + c.len_utf8() <= limits.input_bytes)
            .count();
        return Err(ParseError::new(
            fits + 1,
            format!(
                "the expression is {} bytes long; the limit is {} bytes",
                input.len(),
                limits.input_bytes
            ),
        ));
    }
    if input.trim().is_empty() {
        return Err(ParseError::new(1, "the expression is empty"));
    }
    let mut parser = Parser {
        lexer: Lexer::new(input),
        peeked: None,
        limits,
        terms: 0,
    };
    let expr = parser.or(0)?;
    let next = parser.bump()?;
    if next.kind != TokenKind::End {
        let hint = if next.kind == TokenKind::RParen {
            " (it has no matching '(')"
        } else {
            ""
        };
        return Err(ParseError::new(
            next.column,
            format!(
                "expected 'and', 'or' or end of input, found {}{hint}",
                next.kind.describe()
            ),
        ));
    }
    // The canonical form spells `&&` as ` and `, so it can be longer than the input. Refusing expressions
    // whose canonical form would not fit keeps `parse(&e.to_string()) == Ok(e)` true for every accepted
    // expression (and a serialized expression always deserializes).
    if canonical_len_exceeds(&expr, limits.input_bytes) {
        return Err(ParseError::new(
            1,
            format!(
                "the expression is longer than {} bytes once written in canonical form \
                 ('and'/'or'/'not' with spaces around operators)",
                limits.input_bytes
            ),
        ));
    }
    Ok(expr)
}

/// Whether `expr.to_string()` is longer than `limit` bytes, without building more than `limit` bytes of it.
fn canonical_len_exceeds(expr: &Expr, limit: usize) -> bool {
    struct Counter {
        len: usize,
        limit: usize,
    }
    impl std::fmt::Write for Counter {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.len += s.len();
            if self.len > self.limit {
                Err(std::fmt::Error)
            } else {
                Ok(())
            }
        }
    }
    std::fmt::write(&mut Counter { len: 0, limit }, format_args!("{expr}")).is_err()
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token<'a>>,
    limits: Limits,
    terms: usize,
}

impl<'a> Parser<'a> {
    fn peek(&mut self) -> Result<Token<'a>, ParseError> {
        match self.peeked {
            Some(token) => Ok(token),
            None => {
                let token = self.lexer.next_token()?;
                self.peeked = Some(token);
                Ok(token)
            }
        }
    }

    fn bump(&mut self) -> Result<Token<'a>, ParseError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    /// The depth inside one more `(` or `not` that starts at `column`.
    fn deeper(&self, depth: usize, column: usize) -> Result<usize, ParseError> {
        if depth >= self.limits.depth {
            return Err(ParseError::new(
                column,
                format!(
                    "the expression nests more than {} levels deep (counting parentheses and 'not')",
                    self.limits.depth
                ),
            ));
        }
        Ok(depth + 1)
    }

    fn count_term(&mut self, column: usize) -> Result<(), ParseError> {
        self.terms += 1;
        if self.terms > self.limits.terms {
            return Err(ParseError::new(
                column,
                format!("the expression has more than {} terms", self.limits.terms),
            ));
        }
        Ok(())
    }

    fn or(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.and(depth)?;
        while matches!(self.peek()?.kind, TokenKind::OrOr | TokenKind::Word("or")) {
            self.bump()?;
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.unary(depth)?;
        while matches!(self.peek()?.kind, TokenKind::AndAnd | TokenKind::Word("and")) {
            self.bump()?;
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let token = self.peek()?;
        if matches!(token.kind, TokenKind::Bang | TokenKind::Word("not")) {
            let depth = self.deeper(depth, token.column)?;
            self.bump()?;
            return Ok(Expr::Not(Box::new(self.unary(depth)?)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let token = self.bump()?;
        match token.kind {
            TokenKind::LParen => {
                let inner = self.deeper(depth, token.column)?;
                let expr = self.or(inner)?;
                let close = self.bump()?;
                if close.kind != TokenKind::RParen {
                    return Err(ParseError::new(
                        close.column,
                        format!(
                            "expected 'and', 'or' or ')' to close the '(' at column {}, found {}",
                            token.column,
                            close.kind.describe()
                        ),
                    ));
                }
                Ok(expr)
            }
            TokenKind::Word("has") if self.peek()?.kind == TokenKind::LParen => {
                self.count_term(token.column)?;
                self.bump()?;
                let key_token = self.bump()?;
                let key = self.key(key_token, "a label key in 'has(...)'")?;
                let close = self.bump()?;
                if close.kind != TokenKind::RParen {
                    return Err(ParseError::new(
                        close.column,
                        format!(
                            "expected ')' after the label key in 'has(...)', found {}",
                            close.kind.describe()
                        ),
                    ));
                }
                Ok(Expr::Has(key))
            }
            TokenKind::Word(_) | TokenKind::Quoted { .. } => {
                self.count_term(token.column)?;
                let key = self.key(token, "a label key, 'has(', 'not' or '('")?;
                self.comparison(key)
            }
            _ => Err(ParseError::new(
                token.column,
                format!(
                    "expected a label key, 'has(', 'not' or '(', found {}",
                    token.kind.describe()
                ),
            )),
        }
    }

    /// Reads a key from `token`; `expected` says what the error message should ask for instead.
    fn key(&mut self, token: Token<'a>, expected: &str) -> Result<String, ParseError> {
        match token.kind {
            TokenKind::Word(word) if is_reserved(word) => Err(ParseError::new(
                token.column,
                format!(
                    "expected {expected}, found keyword '{word}' (to use it as a label key, quote it: \"{word}\")"
                ),
            )),
            TokenKind::Word(word) => label::key(word, token.column),
            TokenKind::Quoted { text, .. } => label::key(text, token.column + 1),
            _ => Err(ParseError::new(
                token.column,
                format!("expected {expected}, found {}", token.kind.describe()),
            )),
        }
    }

    /// Everything after the key of a comparison: the operator and its value(s).
    fn comparison(&mut self, key: String) -> Result<Expr, ParseError> {
        let op = self.bump()?;
        match op.kind {
            TokenKind::Eq | TokenKind::EqEq => {
                let value = self.value(&format!("a label value after {}", op.kind.describe()))?;
                Ok(Expr::Eq { key, value })
            }
            TokenKind::NotEq => {
                let value = self.value("a label value after '!='")?;
                Ok(Expr::NotEq { key, value })
            }
            TokenKind::Word("in") => Ok(Expr::In {
                key,
                values: self.set("in")?,
            }),
            TokenKind::Word("notin") => Ok(Expr::NotIn {
                key,
                values: self.set("notin")?,
            }),
            found => {
                let hint = match found {
                    TokenKind::Word("not") => " (write 'notin' to exclude a set of values)".to_owned(),
                    TokenKind::End
                    | TokenKind::RParen
                    | TokenKind::AndAnd
                    | TokenKind::OrOr
                    | TokenKind::Word("and" | "or") => {
                        format!(" (to test that the label exists, write 'has({})')", snippet(&key))
                    }
                    _ => String::new(),
                };
                Err(ParseError::new(
                    op.column,
                    format!(
                        "expected '=', '==', '!=', 'in' or 'notin' after label key '{}', found {}{hint}",
                        snippet(&key),
                        found.describe()
                    ),
                ))
            }
        }
    }

    fn value(&mut self, expected: &str) -> Result<String, ParseError> {
        let token = self.bump()?;
        match token.kind {
            // Keywords are fine here: nothing else can stand where a value is expected.
            TokenKind::Word(word) => label::value(word, token.column),
            TokenKind::Quoted { text, .. } => label::value(text, token.column + 1),
            found => Err(ParseError::new(
                token.column,
                format!("expected {expected}, found {}", found.describe()),
            )),
        }
    }

    /// The `(v1, v2, ...)` after `in` or `notin` (`op`).
    fn set(&mut self, op: &str) -> Result<Vec<String>, ParseError> {
        let open = self.bump()?;
        if open.kind != TokenKind::LParen {
            return Err(ParseError::new(
                open.column,
                format!("expected '(' after '{op}', found {}", open.kind.describe()),
            ));
        }
        let mut values = Vec::new();
        loop {
            values.push(self.value(&format!("a label value in '{op} (...)'"))?);
            let next = self.bump()?;
            match next.kind {
                TokenKind::Comma => {}
                TokenKind::RParen => return Ok(values),
                found => {
                    return Err(ParseError::new(
                        next.column,
                        format!(
                            "expected ')' or ',' after a value in '{op} (...)', found {}",
                            found.describe()
                        ),
                    ));
                }
            }
        }
    }
}
